"""Splitting texts longer than Telegram's limit into ordered parts on natural boundaries."""

from __future__ import annotations

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
