"""Property: whatever the arrival pattern, no window of any scope holds more than its limit."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.keys import Keys
from shared.limiter import Limiter, Policy, is_private
from shared.memory_limiter import MemoryLimiter
from shared.redis_broker import connect
from shared.redis_limiter import RedisLimiter
from tests.conftest import REDIS_URL

SCALE = 0.05  # bot: 4 per 50 ms; private chat: 2 per 50 ms; group: 3 per 3 s
POLICY = Policy(bot_rate=4, chat_rate=2, group_rate=3, window_scale=SCALE)
SLACK_S = 0.004  # grants are observed a little after Redis decides them

arrivals = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),  # ms to wait before the next request
        st.integers(min_value=1, max_value=2),  # bot
        st.sampled_from([11, 12, -21]),  # two private chats and a group
        st.integers(min_value=1, max_value=3),  # requests fired together
    ),
    min_size=5,
    max_size=30,
)


def _violations(grants: list[tuple[float, int, int]]) -> list[str]:
    found = []
    scopes: dict[tuple, list[float]] = {}
    for at, bot, chat in grants:
        scopes.setdefault(("bot", bot), []).append(at)
        scopes.setdefault(("chat", bot, chat), []).append(at)
    for scope, times in scopes.items():
        window = POLICY.bot_window(scope[1]) if scope[0] == "bot" else POLICY.chat_window(scope[2])
        span = window.ms / 1000 - SLACK_S
        times.sort()
        for i, start in enumerate(times):
            inside = sum(1 for t in times[i:] if t - start < span)
            if inside > window.limit:
                found.append(f"{scope}: {inside} in {span:.3f}s (limit {window.limit})")
    return found


async def _drive(
    limiter: Limiter, pattern: list[tuple[int, int, int, int]]
) -> list[tuple[float, int, int]]:
    grants: list[tuple[float, int, int]] = []

    async def one(bot: int, chat: int) -> None:
        grant = await limiter.acquire(bot, chat)
        if grant.granted:
            grants.append((time.monotonic(), bot, chat))

    for pause, bot, chat, burst in pattern:
        await asyncio.sleep(pause / 1000)
        await asyncio.gather(*(one(bot, chat) for _ in range(burst)))
    return grants


def _run(backend: str, pattern: list[tuple[int, int, int, int]], namespace: str) -> list[str]:
    async def main() -> list[str]:
        client: redis.Redis | None = None
        if backend == "redis":
            client = connect(REDIS_URL)
            limiter: Limiter = RedisLimiter(client, Keys(namespace), POLICY)
        else:
            limiter = MemoryLimiter(POLICY)
        try:
            return _violations(await _drive(limiter, pattern))
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
    assert _run(backend, pattern, namespace) == []


def test_group_and_private_windows_differ() -> None:
    assert is_private(11)
    assert not is_private(-21)
    assert POLICY.chat_window(-21).ms > POLICY.chat_window(11).ms
