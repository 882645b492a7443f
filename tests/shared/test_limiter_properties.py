"""Property: whatever the arrival pattern, no window of any scope holds more than its limit.

The runs last several windows and report every token's call as over, so windows slide and the
limiter must let old tokens go at the right moment: a limiter that keeps every token proves
only "never more than the limit in total"; one that forgets tokens too early is caught
(``test_the_check_catches_a_limiter_that_forgets_too_early``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.keys import Keys
from shared.limiter import Grant, Limiter, Policy, Window, is_private
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
        st.integers(min_value=0, max_value=12),  # ms to wait before the next request
        st.integers(min_value=1, max_value=2),  # bot
        TOGETHER,
        st.booleans(),  # asked in one acquire_many call, else as concurrent acquire calls
        st.integers(min_value=0, max_value=10),  # ms the call takes before it is reported sent
    ),
    min_size=5,
    max_size=30,
)
RUN_S = 0.3  # a pattern is repeated for six bot windows at least
GROUP_POLICY = Policy(bot_rate=1000, chat_rate=2, group_rate=3, window_scale=0.005)
GROUPS = st.lists(st.sampled_from([-21, -22]), min_size=1, max_size=3)
GROUP_RUN_S = 1.0  # three group windows of 0.3 s


def _scopes(grants: list[tuple[float, int, int]]) -> dict[tuple, list[float]]:
    scopes: dict[tuple, list[float]] = {}
    for at, bot, chat in grants:
        scopes.setdefault(("bot", bot), []).append(at)
        scopes.setdefault(("chat", bot, chat), []).append(at)
    return scopes


def _window(scope: tuple, policy: Policy) -> Window:
    return policy.bot_window(scope[1]) if scope[0] == "bot" else policy.chat_window(scope[2])


def _violations(
    grants: list[tuple[float, int, int]], slack_s: float = SLACK_S, policy: Policy = POLICY
) -> list[str]:
    found = []
    for scope, times in _scopes(grants).items():
        window = _window(scope, policy)
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
    limiter: Limiter, pattern: list[tuple[int, int, list[int], bool, int]], run_s: float = RUN_S
) -> list[tuple[float, int, int]]:
    """The pattern, repeated for ``run_s`` at least; each granted token's call reported over
    after its length, so the token leaves the windows when it should. The grant times."""
    grants: list[tuple[float, int, int]] = []
    calls: list[asyncio.Task[None]] = []

    async def call(bot: int, chat: int, ticket: str, took_ms: int) -> None:
        await asyncio.sleep(took_ms / 1000)
        await limiter.sent(bot, chat, ticket)

    began = time.monotonic()
    while time.monotonic() - began < run_s:
        for pause, bot, chats, in_one_call, took_ms in pattern:
            await asyncio.sleep(pause / 1000)
            for chat, grant in await _asked(limiter, bot, chats, in_one_call):
                if grant.granted:
                    grants.append((time.monotonic(), bot, chat))
                    calls.append(asyncio.create_task(call(bot, chat, grant.ticket, took_ms)))
    await asyncio.gather(*calls)
    await limiter.flush()
    return grants


def _slid(grants: list[tuple[float, int, int]], policy: Policy) -> bool:
    """True when some scope was granted more than its limit over the run: its window slid."""
    return any(len(t) > _window(s, policy).limit for s, t in _scopes(grants).items())


def _run(
    backend: str,
    drive: Callable[[Limiter], Awaitable[list[tuple[float, int, int]]]],
    namespace: str,
    slack_s: float = SLACK_S,
    policy: Policy = POLICY,
    limiter_policy: Policy | None = None,
    must_slide: bool = True,
) -> list[str]:
    """Windows over ``policy``'s limits among the times ``drive`` reports, on one backend whose
    limiter runs ``limiter_policy`` (the same policy, unless a test breaks it on purpose)."""

    async def main() -> list[str]:
        client: redis.Redis | None = None
        used = limiter_policy or policy
        if backend == "redis":
            client = connect(REDIS_URL)
            limiter: Limiter = RedisLimiter(client, Keys(namespace), used)
        else:
            limiter = MemoryLimiter(used)
        try:
            grants = await drive(limiter)
            if must_slide:
                assert _slid(grants, policy), "no window slid: the run proves only a total"
            return _violations(grants, slack_s, policy)
        finally:
            if client is not None:
                # a thousand keys a SCAN step: the shared Redis holds the keys of every process
                # test run so far (deleted at the session's end), and ten a step made this
                # cleanup, run after every example, take most of the test's time (with 200,000 keys
                # there: 202 s, now 12.5 s)
                async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
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


@pytest.mark.parametrize("backend", ["redis", "memory"])
@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pattern=st.lists(
        st.tuples(st.integers(0, 40), st.just(1), GROUPS, st.booleans(), st.integers(0, 10)),
        min_size=3,
        max_size=10,
    )
)
def test_no_group_window_exceeds_its_limit(backend: str, pattern, namespace: str) -> None:
    """The same for groups, whose windows are 60 times a bot's: here 3 per 0.3 s."""
    found = _run(
        backend,
        lambda limiter: _drive(limiter, pattern, GROUP_RUN_S),
        namespace,
        policy=GROUP_POLICY,
    )
    assert found == []


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_the_check_catches_a_limiter_that_forgets_too_early(backend: str, namespace: str) -> None:
    """A limiter whose windows are 40% short lets old tokens go too early: the check finds
    windows over their limit (and finds none when the limiter keeps the right windows)."""
    pattern = [(2, 1, [11, 12, -21], True, 1), (2, 1, [12, 11], False, 0)]
    short = dataclasses.replace(POLICY, window_scale=SCALE * 0.6)

    def drive(limiter: Limiter) -> Awaitable[list[tuple[float, int, int]]]:
        return _drive(limiter, pattern)

    assert _run(backend, drive, namespace, limiter_policy=short) != []
    assert _run(backend, drive, namespace) == []


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
    found = _run(
        backend,
        lambda limiter: _drive_calls(limiter, pattern),
        namespace,
        slack_s=0.0,
        must_slide=False,
    )
    assert found == []
