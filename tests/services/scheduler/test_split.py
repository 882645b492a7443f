"""Splitting long texts into ordered parts."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler.split import split_html, split_text, utf16_len


def test_short_text_is_one_part() -> None:
    assert split_text("hello") == ["hello"]


def test_prefers_paragraphs_then_lines_then_words() -> None:
    para = "a" * 3000 + "\n\n" + "b" * 3000
    assert split_text(para) == ["a" * 3000, "b" * 3000]
    lines = "a" * 3000 + "\n" + "b" * 3000
    assert split_text(lines) == ["a" * 3000, "b" * 3000]
    words = ("word " * 2000).strip()
    parts = split_text(words)
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in parts)
    assert " ".join(parts) == words


def test_hard_cut_without_boundaries() -> None:
    parts = split_text("x" * 10_000)
    assert [len(p) for p in parts] == [4096, 4096, 1808]


def test_counts_utf16_units() -> None:
    emoji = "\U0001f600" * 3000
    parts = split_text(emoji)
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert "".join(parts) == emoji


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n\U0001f600"), min_size=1, max_size=12_000))
def test_parts_fit_and_keep_every_nonspace_char(text: str) -> None:
    parts = split_text(text, limit=500)
    assert all(utf16_len(p) <= 500 for p in parts)
    strip = lambda s: s.replace(" ", "").replace("\n", "")  # noqa: E731
    assert strip("".join(parts)) == strip(text)


_PIECES = st.sampled_from(
    ["word", "a", "\U0001f600", " ", " ", "\n", "\n\n", "&amp;", "&lt;", "&#128512;"]
)
_OPENERS = ["<b>", "<i>", '<a href="https://x.y/a b">', "<code>", '<span class="tg-spoiler">']


@st.composite
def _html(draw: st.DrawFn) -> str:
    """Well-formed HTML as Telegram takes it: nested tags, references and text."""
    out: list[str] = []
    stack: list[str] = []
    for _ in range(draw(st.integers(1, 400))):
        action = draw(st.integers(0, 9))
        if action == 0 and len(stack) < 4:
            tag = draw(st.sampled_from(_OPENERS))
            out.append(tag)
            stack.append(tag[1:].split(" ")[0].rstrip(">"))
        elif action == 1 and stack:
            out.append(f"</{stack.pop()}>")
        else:
            out.append(draw(_PIECES) * draw(st.integers(1, 30)))
    out.extend(f"</{name}>" for name in reversed(stack))
    return "".join(out)


def _balanced(part: str) -> bool:
    stack: list[str] = []
    for tag in re.findall(r"<[^<>]*>", part):
        name = tag.strip("</>").split(" ")[0]
        if tag.startswith("</"):
            if not stack or stack.pop() != name:
                return False
        else:
            stack.append(name)
    return not stack


def _visible(html: str) -> str:
    return re.sub(r"<[^<>]*>", "", html).replace(" ", "").replace("\n", "")


@settings(max_examples=80, deadline=None)
@given(_html())
def test_html_parts_fit_are_well_formed_and_keep_the_text(text: str) -> None:
    parts = split_html(text, limit=300)
    assert all(utf16_len(p) <= 300 for p in parts)
    for part in parts:
        assert _balanced(part), part
        # no cut inside a tag or a reference: what is left once they are gone has no piece
        assert not re.search(r"[<>&]", re.sub(r"<[^<>]*>|&#?[A-Za-z0-9]+;", "", part)), part
    assert "".join(_visible(p) for p in parts) == _visible(text)


def test_html_tags_open_at_a_cut_close_and_open_again() -> None:
    text = '<b>bold <a href="https://x.y/a b">' + "link " * 1500 + "</a></b> after"
    parts = split_html(text)
    assert len(parts) == 2
    assert parts[0].startswith('<b>bold <a href="https://x.y/a b">link')
    assert parts[0].endswith("link</a></b>")
    assert parts[1].startswith('<b><a href="https://x.y/a b">link')
    assert parts[1].endswith("</a></b> after")


def test_plain_split_of_the_same_text_breaks_its_markup() -> None:
    """Why HTML has a splitter of its own: the plain one leaves tags open across parts."""
    text = "<b>" + "word " * 1500 + "</b>"
    assert not all(_balanced(p) for p in split_text(text))
    assert all(_balanced(p) for p in split_html(text))


def test_a_tag_longer_than_a_part_falls_back_to_the_plain_split() -> None:
    text = f'<a href="{"x" * 5000}">link</a>'
    assert split_html(text) == split_text(text)
