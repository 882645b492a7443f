"""Property: whatever the arrival pattern, no window of any scope holds more than its limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.keys import Keys
from shared.limiter import Grant, Limiter, Policy, is_private
from shared.memory_limiter import MemoryLimiter
from shared.redis_broker import connect
from shared.redis_limiter import RedisLimiter
from tests.conftest import REDIS_URL

SCALE = 0.05  # bot: 4 per 50 ms; private chat: 2 per 50 ms; group: 3 per 3 s
POLICY = Policy(bot_rate=4, chat_rate=2, group_rate=3, window_scale=SCALE)
SLACK_S = 0.004  # grants are observed a little after Redis decides them

CHATS = st.sampled_from([11, 12, -21])  # two private chats and a group
TOGETHER = st.lists(CHATS, min_size=1, max_size=3)  # requests fired together
arrivals = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),  # ms to wait before the next request
        st.integers(min_value=1, max_value=2),  # bot
        TOGETHER,
        st.booleans(),  # asked in one acquire_many call, else as concurrent acquire calls
    ),
    min_size=5,
    max_size=30,
)


def _violations(grants: list[tuple[float, int, int]], slack_s: float = SLACK_S) -> list[str]:
    found = []
    scopes: dict[tuple, list[float]] = {}
    for at, bot, chat in grants:
        scopes.setdefault(("bot", bot), []).append(at)
        scopes.setdefault(("chat", bot, chat), []).append(at)
    for scope, times in scopes.items():
        window = POLICY.bot_window(scope[1]) if scope[0] == "bot" else POLICY.chat_window(scope[2])
        span = window.ms / 1000 - slack_s
        times.sort()
        for i, start in enumerate(times):
            inside = sum(1 for t in times[i:] if t - start < span)
            if inside > window.limit:
                found.append(f"{scope}: {inside} in {span:.3f}s (limit {window.limit})")
    return found


async def _asked(
    limiter: Limiter, bot: int, chats: list[int], in_one_call: bool
) -> list[tuple[int, Grant]]:
    """Tokens for ``chats`` asked for together: in one call, or in concurrent single calls."""
    if in_one_call:
        grants = await limiter.acquire_many(bot, chats)
    else:
        grants = await asyncio.gather(*(limiter.acquire(bot, chat) for chat in chats))
    return list(zip(chats, grants, strict=True))


async def _drive(
    limiter: Limiter, pattern: list[tuple[int, int, list[int], bool]]
) -> list[tuple[float, int, int]]:
    grants: list[tuple[float, int, int]] = []
    for pause, bot, chats, in_one_call in pattern:
        await asyncio.sleep(pause / 1000)
        for chat, grant in await _asked(limiter, bot, chats, in_one_call):
            if grant.granted:
                grants.append((time.monotonic(), bot, chat))
    return grants


def _run(
    backend: str,
    drive: Callable[[Limiter], Awaitable[list[tuple[float, int, int]]]],
    namespace: str,
    slack_s: float = SLACK_S,
) -> list[str]:
    """Windows over their limit among the times ``drive`` reports, on one backend."""

    async def main() -> list[str]:
        client: redis.Redis | None = None
        if backend == "redis":
            client = connect(REDIS_URL)
            limiter: Limiter = RedisLimiter(client, Keys(namespace), POLICY)
        else:
            limiter = MemoryLimiter(POLICY)
        try:
            return _violations(await drive(limiter), slack_s)
        finally:
            if client is not None:
                async for key in client.scan_iter(match=f"{namespace}:*"):
                    await client.delete(key)
                await client.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("backend", ["redis", "memory"])
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pattern=arrivals)
def test_no_window_exceeds_its_limit(backend: str, pattern, namespace: str) -> None:
    assert _run(backend, lambda limiter: _drive(limiter, pattern), namespace) == []


def test_group_and_private_windows_differ() -> None:
    assert is_private(11)
    assert not is_private(-21)
    assert POLICY.chat_window(-21).ms > POLICY.chat_window(11).ms


calls = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),  # ms to wait before the next request
        st.integers(min_value=1, max_value=2),  # bot
        TOGETHER,
        st.booleans(),  # asked in one acquire_many call
        st.integers(min_value=0, max_value=80),  # ms the calls take: some outlast a window
        st.floats(min_value=0.0, max_value=1.0),  # where in its call Telegram sees it
    ),
    min_size=5,
    max_size=20,
)


async def _drive_calls(
    limiter: Limiter, pattern: list[tuple[int, int, list[int], bool, int, float]]
) -> list[tuple[float, int, int]]:
    """Arrivals as Telegram would log them: anywhere between a grant and the end of its call."""
    arrivals: list[tuple[float, int, int]] = []
    under_way: list[asyncio.Task[None]] = []

    async def call(bot: int, chat: int, ticket: str, took_ms: int, seen: float) -> None:
        granted_at = time.monotonic()
        await asyncio.sleep(took_ms / 1000)
        ended_at = time.monotonic()
        arrivals.append((granted_at + seen * (ended_at - granted_at), bot, chat))
        await limiter.sent(bot, chat, ticket)

    for pause, bot, chats, in_one_call, took_ms, seen in pattern:
        await asyncio.sleep(pause / 1000)
        for chat, grant in await _asked(limiter, bot, chats, in_one_call):
            if grant.granted:
                task = call(bot, chat, grant.ticket, took_ms, seen)
                under_way.append(asyncio.create_task(task))
    await asyncio.gather(*under_way)
    return arrivals


@pytest.mark.parametrize("backend", ["redis", "memory"])
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pattern=calls)
def test_no_window_exceeds_its_limit_where_telegram_counts(
    backend: str, pattern, namespace: str
) -> None:
    """With no margin, calls of any length, and Telegram seeing each request at any moment
    between its grant and the end of its call: no window of arrivals exceeds its limit."""
    found = _run(backend, lambda limiter: _drive_calls(limiter, pattern), namespace, slack_s=0.0)
    assert found == []
