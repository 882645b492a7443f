"""The sliding-window limiter on its own, on a synthetic clock: exact and complete."""

from __future__ import annotations

import random
from collections import defaultdict

from sandbox.config import SandboxConfig
from sandbox.limits import Limiter, Rules, retry_seconds


def rules(**changes) -> Rules:
    return Rules.from_config(SandboxConfig(**changes))


def test_retry_seconds_round_up_to_at_least_one() -> None:
    assert retry_seconds(0.0001) == 1
    assert retry_seconds(1.0) == 1
    assert retry_seconds(1.0001) == 2
    assert retry_seconds(59.2) == 60


def test_window_frees_exactly_one_window_after_the_oldest_send() -> None:
    limiter, r = Limiter(), rules(bot_rate=3, chat_rate=100)
    for t in (0.0, 0.1, 0.2):
        assert limiter.refusal(r, 1, 10 + int(t * 10), t) is None
        limiter.record(r, 1, 10 + int(t * 10), t)
    refused = limiter.refusal(r, 1, 99, 0.5)
    assert refused is not None
    assert (refused.retry_after, refused.scope, refused.during_hold) == (1, "bot", False)


def test_refusal_starts_a_hold_of_whole_seconds() -> None:
    limiter, r = Limiter(), rules(group_rate=1, window_scale=0.01)  # group window 0.6 s
    limiter.record(r, 1, -5, 0.0)
    first = limiter.refusal(r, 1, -5, 0.1)
    assert first is not None
    assert (first.retry_after, first.scope, first.during_hold) == (1, "chat", False)
    # The window is free at 0.6, but the hold lasts until 0.1 + 1.
    during = limiter.refusal(r, 1, -5, 0.8)
    assert during is not None
    assert during.during_hold
    assert during.retry_after == 1
    assert limiter.refusal(r, 1, -5, 1.1) is None
    # Another chat of the same bot is not held.
    assert limiter.refusal(r, 1, -6, 0.2) is None


def test_refusals_do_not_consume_quota() -> None:
    limiter, r = Limiter(), rules(chat_rate=2, chat_window=1.0)
    limiter.record(r, 1, 5, 0.0)
    limiter.record(r, 1, 5, 0.5)
    for t in (0.6, 0.7, 0.9):
        assert limiter.refusal(r, 1, 5, t) is not None
    # Hold from 0.6 ends at 1.6; a send then fits because the refusals left no trace.
    assert limiter.refusal(r, 1, 5, 1.6) is None


def test_record_reports_broken_windows() -> None:
    limiter, r = Limiter(), rules(chat_rate=1)
    assert limiter.record(r, 1, 5, 0.0) is False
    assert limiter.record(r, 1, 5, 0.5) is True
    assert limiter.record(r, 1, 5, 1.5) is False  # 0.5 is exactly one window back


def _max_in_window(stamps: list[float], window: float) -> int:
    most, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_random_traffic_never_exceeds_and_reaches_every_limit() -> None:
    """Against brute force: every admitted send keeps all windows within their rate."""
    rng = random.Random(7)
    limiter = Limiter()
    r = rules(bot_rate=8, chat_rate=2, group_rate=4, window_scale=0.05)  # 0.05/0.05/3 s
    chats = [1, 2, 3, -10, -20]
    sent: dict[tuple[str, int], list[float]] = defaultdict(list)
    now = 0.0
    for _ in range(20_000):
        now += rng.expovariate(400.0)
        chat = rng.choice(chats)
        if limiter.refusal(r, 1, chat, now) is None:
            assert limiter.record(r, 1, chat, now) is False
            sent["bot", 1].append(now)
            sent["chat", chat].append(now)
    assert _max_in_window(sent["bot", 1], r.bot_window) == r.bot_rate
    for chat in chats:
        rate, window = r.for_chat(chat)
        assert _max_in_window(sent["chat", chat], window) == rate


def test_sweep_forgets_idle_chats_but_not_live_windows() -> None:
    limiter, r = Limiter(), rules(bot_rate=10**9, chat_rate=1)
    for chat in range(1, 10_000):
        limiter.record(r, 1, chat, chat * 0.001)
    assert len(limiter._chats) < 9_000  # swept on the way
    assert limiter.refusal(r, 1, 9_999, 10.0) is not None  # still inside its window
