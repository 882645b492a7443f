"""The fallback limiter: a local share while Redis is away, and the switches both ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from shared.broker import BrokerBusy
from shared.context import dlq_keys
from shared.fallback_limiter import (
    OWED_SWEEP_AT,
    PROBE_EVERY_S,
    QUIET_SLACK_S,
    FallbackLimiter,
    FallbackMetrics,
)
from shared.keys import Keys
from shared.limiter import Grant, Limiter, Policy
from shared.redis_broker import RedisBroker, connect
from shared.redis_limiter import RedisLimiter
from tests.helpers import eventually, free_port
from tests.procs import RedisServer


@pytest.fixture
def server(private_redis: RedisServer) -> RedisServer:
    return private_redis


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[redis.Redis]:
    client = connect(server.url)
    yield client
    await client.aclose()


def _fallback(
    client: redis.Redis, keys: Keys, policy: Policy, floor: int = 1, name: str = "a"
) -> tuple[FallbackLimiter, CollectorRegistry]:
    registry = CollectorRegistry()
    shared = RedisLimiter(client, keys, policy)
    ping = RedisBroker(client, dlq_keys(keys)).ping
    metrics = FallbackMetrics(registry)
    return FallbackLimiter(shared, policy, floor, metrics, ping, name), registry


async def _send(limiter: Limiter, bot_id: int, chat_id: int) -> Grant:
    """A token taken and its call over at once."""
    grant = await limiter.acquire(bot_id, chat_id)
    if grant.granted:
        await limiter.sent(bot_id, chat_id, grant.ticket)
    return grant


async def test_nothing_goes_before_the_windows_at_the_switch_have_passed(keys: Keys) -> None:
    """The shared logs may be full up to the switch (sends of other senders): the first local
    window starts after the switch, then each bot gets its share of the senders alive."""
    dead = connect(f"redis://127.0.0.1:{free_port()}/0")
    policy = Policy(bot_rate=30, chat_rate=100, window_scale=0.2)  # 30 per 0.2 s
    limiter, registry = _fallback(dead, keys, policy, floor=2)
    limiter.observe_senders(["c", "a", "b"])  # Redis said so while it was up
    try:
        assert not any([(await _send(limiter, 1, c)).granted for c in range(5)])
        assert registry.get_sample_value("floodgate_limiter_fallback_total") == 1
        assert registry.get_sample_value("floodgate_limiter_fallback_active") == 1
        await asyncio.sleep(0.2 + QUIET_SLACK_S + 0.05)
        grants = [await _send(limiter, 1, c) for c in range(10, 100)]
        assert sum(g.granted for g in grants) == 10, "a third of the rate for three senders"
    finally:
        await dead.aclose()


async def test_each_chat_is_one_senders_while_redis_is_away(keys: Keys) -> None:
    """Messages of one chat held by several senders (different priorities): only one of them
    sends to the chat on its own."""
    dead = connect(f"redis://127.0.0.1:{free_port()}/0")
    policy = Policy(bot_rate=1000, chat_rate=1, window_scale=0.1)
    senders = [_fallback(dead, keys, policy, name=name)[0] for name in "abc"]
    try:
        for limiter in senders:
            limiter.observe_senders(["a", "b", "c"])
            await _send(limiter, 1, 0)  # the switch
        await asyncio.sleep(0.1 + QUIET_SLACK_S + 0.05)
        for chat in range(1, 60):
            grants = [await _send(limiter, 1, chat) for limiter in senders]
            assert sum(g.granted for g in grants) == 1, grants
    finally:
        await dead.aclose()


async def test_a_busy_pool_is_not_an_outage(keys: Keys, redis_url: str) -> None:
    """No connection free within the pool's wait: the caller hears so, nothing switches."""
    client = connect(redis_url, max_connections=1, pool_wait=0.2)
    limiter, registry = _fallback(client, keys, Policy())
    blocker = asyncio.create_task(client.blpop([keys.senders + ":nothing"], timeout=1))
    try:

        async def taken() -> bool:  # the pool's only connection waits in BLPOP
            return not blocker.done() and len(client.connection_pool._in_use_connections) == 1

        await eventually(taken, timeout=5, step=0.005)
        with pytest.raises(BrokerBusy):
            await limiter.acquire(1, 1)
        assert registry.get_sample_value("floodgate_limiter_fallback_total") == 0
        await blocker
        assert (await limiter.acquire(1, 1)).granted, "the pool is free again"
    finally:
        blocker.cancel()
        await client.aclose()


async def test_a_hold_that_met_a_busy_pool_reaches_redis_later(keys: Keys, redis_url: str) -> None:
    """A 429's hold that Redis could not take (no pooled connection free: nothing switches,
    so no way back would hand it over) is handed to Redis before the next shared decision,
    so the other senders hold the bot too; holds that ended meanwhile are owed no more."""
    client = connect(redis_url, max_connections=1, pool_wait=0.2)
    limiter, _ = _fallback(client, keys, Policy())
    other_client = connect(redis_url)
    other = RedisLimiter(other_client, keys, Policy())
    blocker = asyncio.create_task(client.blpop([keys.senders + ":nothing"], timeout=1))
    try:

        async def taken() -> bool:  # the pool's only connection waits in BLPOP
            return not blocker.done() and len(client.connection_pool._in_use_connections) == 1

        await eventually(taken, timeout=5, step=0.005)
        await limiter.hold(1, None, 5.0)
        assert (await other.acquire(1, 2)).granted, "Redis knows of no hold yet"
        await blocker
        assert (await limiter.acquire(1, 3)).scope == "bot_hold"
        assert (await other.acquire(1, 4)).scope == "bot_hold", "every sender holds the bot now"
        assert limiter._owed == {}
        for chat in range(2_000):  # ended at once: not kept
            limiter._owe(1, chat, 0)
        assert len(limiter._owed) <= OWED_SWEEP_AT
    finally:
        blocker.cancel()
        await other.flush()
        await other_client.aclose()
        await client.aclose()


async def test_sends_of_both_sides_are_handed_over(
    keys: Keys, server: RedisServer, client: redis.Redis
) -> None:
    """A Redis that comes back empty learns this process's sends of the window: those made on
    its own and those it made through Redis before."""
    policy = Policy(bot_rate=10, chat_rate=100, window_scale=2)  # 10 sends per 2 s
    limiter, _ = _fallback(client, keys, policy)
    assert all([(await _send(limiter, 1, c)).granted for c in range(4)])
    server.stop()
    assert not (await _send(limiter, 1, 9)).granted, "the switch: windows count as full"
    await asyncio.sleep(2 + QUIET_SLACK_S + 0.05)
    local = [(await _send(limiter, 1, c)).granted for c in range(10, 22)]
    assert sum(local) == 10
    server.start()  # empty: it kept nothing
    await asyncio.sleep(PROBE_EVERY_S + 0.1)
    assert not (await _send(limiter, 1, 30)).granted
    seconds, micros = await client.time()
    window_start = seconds * 1000 + micros / 1000 - 2000
    in_window = await client.zcount(keys.bot_window(1), window_start, "+inf")
    assert in_window == 10, "the local sends are in Redis's window now"


async def test_a_hold_learnt_meanwhile_is_kept_and_handed_over(
    keys: Keys, server: RedisServer, client: redis.Redis
) -> None:
    policy = Policy(bot_rate=30, chat_rate=100, window_scale=0.1)
    limiter, _ = _fallback(client, keys, policy)
    assert (await _send(limiter, 1, 5)).granted
    server.stop()
    await limiter.hold(1, 5, 3.0)  # a 429 answered while Redis is away
    await asyncio.sleep(0.1 + QUIET_SLACK_S + 0.05)
    refused = await _send(limiter, 1, 5)
    assert refused.scope == "chat_hold"
    assert (await _send(limiter, 1, 6)).granted, "other chats go"
    server.start()
    await asyncio.sleep(PROBE_EVERY_S + 0.1)
    await _send(limiter, 1, 7)  # the probe that goes back hands the hold over
    other = RedisLimiter(client, keys, policy)  # another sender
    assert (await other.acquire(1, 5)).scope == "chat_hold"


async def test_a_hold_seen_in_redis_is_kept_after_the_switch(
    keys: Keys, server: RedisServer, client: redis.Redis
) -> None:
    policy = Policy(bot_rate=30, chat_rate=100, window_scale=0.1)
    limiter, _ = _fallback(client, keys, policy)
    await RedisLimiter(client, keys, policy).hold(1, 5, 3.0)  # another sender's 429
    assert (await _send(limiter, 1, 5)).scope == "chat_hold"
    server.stop()
    assert not (await _send(limiter, 1, 6)).granted  # the switch
    await asyncio.sleep(0.1 + QUIET_SLACK_S + 0.05)
    assert (await _send(limiter, 1, 6)).granted
    assert (await _send(limiter, 1, 5)).scope == "chat_hold", "still held, locally"


async def test_on_the_way_back_the_local_share_holds_a_while(
    keys: Keys, server: RedisServer, client: redis.Redis
) -> None:
    """Other senders may still limit on their own, unknown to Redis: right after the way
    back a sender keeps to its share as well as to the shared logs."""
    policy = Policy(bot_rate=30, chat_rate=100, window_scale=0.2)
    limiter, _ = _fallback(client, keys, policy, floor=3)
    limiter.observe_senders(["a"])  # the only one alive; the floor says three
    server.stop()
    assert not (await _send(limiter, 1, 1)).granted
    server.start()
    await asyncio.sleep(PROBE_EVERY_S + 0.1)
    grants = [await _send(limiter, 1, c) for c in range(10, 40)]
    assert sum(g.granted for g in grants) == 10, "a third of the window, not all of it"
