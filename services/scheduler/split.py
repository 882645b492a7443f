"""Splitting texts longer than Telegram's limit into ordered parts on natural boundaries."""

from __future__ import annotations

import bisect
import re

from shared.models import TELEGRAM_TEXT_LIMIT

BOUNDARIES = ("\n\n", "\n", " ")
MIN_FILL = 0.5


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _fitting_prefix(text: str, limit: int) -> int:
    """How many code points of ``text`` fit in ``limit`` UTF-16 units."""
    units = 0
    for index, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_text(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Parts of at most ``limit`` UTF-16 units, cut at a paragraph, a line or a word if one lies
    in the second half of the part, else exactly at the limit. Joined, they give back the text
    except for the whitespace at the cuts."""
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut = _fitting_prefix(rest, limit)
        head = rest[:cut]
        for boundary in BOUNDARIES:
            at = head.rfind(boundary)
            if at >= cut * MIN_FILL:
                head = rest[:at]
                cut = at + len(boundary)
                break
        if head.strip():
            parts.append(head.rstrip())
        rest = rest[cut:].lstrip("\n ") if rest[cut:].strip() else ""
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


# Telegram's HTML: tags, character references, and text; a cut never falls inside the first two
_HTML_TOKEN = re.compile(r"<[^<>]*>|&#?[A-Za-z0-9]{1,32};")
_TAG_NAME = re.compile(r"</?\s*([A-Za-z][A-Za-z0-9-]*)")
_TAGS = re.compile(r"<[^<>]*>")


def _open_tags(text: str) -> tuple[list[int], list[tuple[str, ...]], set[int]]:
    """Where each tag or reference ends, the tags open from there on (their opening tags as
    written, outermost first), and every position inside a tag or a reference."""
    ends: list[int] = [0]
    stacks: list[tuple[str, ...]] = [()]
    inside: set[int] = set()
    stack: list[tuple[str, str]] = []
    for match in _HTML_TOKEN.finditer(text):
        inside.update(range(match.start() + 1, match.end()))
        token = match.group()
        name = _TAG_NAME.match(token)
        if token.startswith("<") and name:
            tag = name.group(1).lower()
            if token.startswith("</"):
                for depth in range(len(stack) - 1, -1, -1):
                    if stack[depth][0] == tag:
                        del stack[depth:]
                        break
            elif not token.endswith("/>"):
                stack.append((tag, token))
        ends.append(match.end())
        stacks.append(tuple(opening for _, opening in stack))
    return ends, stacks, inside


def _closing(opened: tuple[str, ...]) -> str:
    names = [_TAG_NAME.match(tag) for tag in opened]
    return "".join(f"</{n.group(1)}>" for n in reversed(names) if n)


def split_html(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """``split_text`` for a text with ``parse_mode`` HTML: a cut never falls inside a tag or a
    character reference (``&amp;``), and the tags open at a cut are closed at the end of the
    part and opened again, as written, at the start of the next, so every part is HTML that
    Telegram parses. The limit is counted on the markup, which is never shorter than the text
    Telegram counts."""
    if utf16_len(text) <= limit:
        return [text]
    ends, stacks, inside = _open_tags(text)

    def opened_at(position: int) -> tuple[str, ...]:
        return stacks[bisect.bisect_right(ends, position) - 1]

    parts: list[str] = []
    start = 0
    while start < len(text):
        prefix = "".join(opened_at(start))
        rest = text[start:]
        budget = limit - utf16_len(prefix)
        if utf16_len(rest) + utf16_len(_closing(opened_at(len(text)))) <= budget:
            cut, resume = len(text), len(text)
        else:
            cut = start + _fitting_prefix(rest, budget)
            while True:
                while cut > start and cut in inside:
                    cut -= 1
                excess = utf16_len(text[start:cut] + _closing(opened_at(cut))) - budget
                if excess <= 0 or cut <= start:
                    break
                cut -= excess
            if cut <= start:  # a tag longer than a part: no markup survives such a cut
                return split_text(text, limit)
            resume = cut
            head = text[start:cut]
            for boundary in BOUNDARIES:
                at = head.rfind(boundary)
                while at > 0 and start + at in inside:
                    at = head.rfind(boundary, 0, at)
                if at >= len(head) * MIN_FILL:
                    cut, resume = start + at, start + at + len(boundary)
                    break
        body = text[start:cut].rstrip()
        if _TAGS.sub("", body).strip():
            parts.append(prefix + body + _closing(opened_at(cut)))
        while resume < len(text) and text[resume] in "\n " and resume not in inside:
            resume += 1
        start = resume
    return parts or [text]
