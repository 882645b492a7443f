"""The part of each bot's rate a sender takes while Redis is away: whole sends in the bot's own
window, so that the senders together never pass the bot's limit within any window. A share of
30/s among 8 as 3.75/s made 3 per 800 ms: one sender could send 6 within a second and 8 of them
48 against Telegram's 30."""

from __future__ import annotations

import itertools
import time
import types

import pytest
from prometheus_client import CollectorRegistry

import shared.memory_limiter as memory_limiter
from shared.fallback_limiter import FallbackLimiter, FallbackMetrics
from shared.fallback_share import Share
from shared.limiter import Policy
from shared.memory_limiter import MemoryLimiter


def _share(n: int) -> Share:
    share = Share("s0", 1)
    share.observe([f"s{i}" for i in range(n)])
    return share


@pytest.mark.parametrize("rate", [30.0, 20.0, 1000.0, 30.9, 0.5, 1.0])
def test_the_parts_fit_in_the_bots_own_window(rate: float) -> None:
    policy = Policy(bot_rate=rate, overrides={7: rate})
    whole = policy.bot_window(1)
    for n in range(1, 41):
        part = _share(n).policy(policy)
        for bot in (1, 7):
            window = part.bot_window(bot)
            assert n * window.limit <= whole.limit, (rate, n)
            assert window.limit == whole.limit // n
            if window.limit:
                assert window.ms == pytest.approx(whole.ms), (rate, n)


@pytest.mark.parametrize("n", [2, 4, 7, 8, 16])
async def test_one_sender_never_sends_more_than_its_part_within_a_second(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    """A backlog asked for every millisecond for 3 s, every call ending at once: within any
    second one sender makes at most its part, so N of them at most the bot's 30."""
    clock = [1000.0]
    monkeypatch.setattr(memory_limiter, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    limiter = MemoryLimiter(_share(n).policy(Policy()))
    sends: list[float] = []
    chats = itertools.count(1)
    for ms in range(3000):
        clock[0] = 1000.0 + ms / 1000
        while (grant := limiter.acquire_now(1, chat := next(chats))).granted:
            await limiter.sent(1, chat, grant.ticket)
            sends.append(ms / 1000)
    most = max(sum(1 for s in sends if start <= s < start + 1.0) for start in sends)
    assert most == 30 // n
    assert n * most <= 30


def test_a_sender_without_a_part_sends_nothing_of_that_bot() -> None:
    limiter = MemoryLimiter(_share(31).policy(Policy()))
    grant = limiter.acquire_now(1, 5)
    assert not grant.granted
    assert grant.scope == "bot"
    assert limiter.bot_room(1) == (0, 1000)


async def test_just_after_redis_is_back_a_sender_without_a_part_waits_not_fails() -> None:
    """The short while after Redis is back, when other senders may still limit on their own:
    a bot with fewer sends per window than senders (1/s among 2) leaves this sender no part of
    it, which must be an answer to wait, not a division by zero that dead-letters the message."""
    policy = Policy(bot_rate=30.0, overrides={7: 1.0})

    async def ping() -> None:
        return None

    limiter = FallbackLimiter(
        MemoryLimiter(policy), policy, 2, FallbackMetrics(CollectorRegistry()), ping, name="a"
    )
    limiter.observe_senders(["a", "b"])
    limiter._both_until = time.monotonic() + 60  # as on the way back from degraded mode
    grants = await limiter.acquire_many(7, [5, 6, 12345])
    assert not any(g.granted for g in grants)
    assert all(g.wait_ms >= 1 for g in grants)
