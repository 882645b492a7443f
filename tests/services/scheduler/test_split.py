"""Splitting long texts into ordered parts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler.split import split_text, utf16_len


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
