"""A Redis that is there but refuses writes (out of memory under noeviction, as the shipped
configuration runs it; a replica; loading) is an outage to every caller, never a fault of the
message at hand: a sender that took a refused order gate or limiter write for the message's
own error dead-lettered it as an internal error after three tries, and its out-of-turn settle
then let the gate take earlier messages of its chat for done."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from shared.broker import BrokerUnavailable, Commit
from shared.context import dlq_keys
from shared.keys import SENDER_GROUP, Keys
from shared.limiter import Policy
from shared.models import Priority
from shared.redis_broker import RedisBroker, connect
from shared.redis_limiter import RedisLimiter
from tests.procs import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def full_redis(private_redis: RedisServer) -> AsyncIterator[tuple[redis.Redis, Keys]]:
    """A private Redis; the test sets its memory limit below what it holds to make it refuse."""
    client = connect(private_redis.url)
    try:
        yield client, Keys("refusing")
    finally:
        await client.aclose()


async def test_the_gate_and_the_limiter_see_a_full_redis_as_an_outage(full_redis) -> None:
    client, keys = full_redis
    broker = RedisBroker(client, dlq_keys(keys))
    stream = keys.send(Priority.NORMAL)
    chat, parked = keys.order(1, 5, Priority.NORMAL)
    await broker.ensure_group(stream, SENDER_GROUP)
    adds = [(stream, f"m{i}", f"p{i}".encode(), chat) for i in range(2)]
    await broker.commit(Commit(adds=adds))
    first, second = await broker.read([stream], SENDER_GROUP, "c", 10, None)
    record = keys.record("m0")
    await broker.put_records({record: {"status": "scheduled"}}, 60)
    limiter = RedisLimiter(client, keys, Policy())
    # below what it holds: a script's first write that may grow memory is refused (acquire.lua
    # trims before it adds, and a script that has written may go on: Redis cannot stop it
    # halfway)
    await client.config_set("maxmemory", 1)
    try:
        with pytest.raises(BrokerUnavailable, match="OutOfMemoryError"):  # parking writes
            await broker.gate(chat, parked, second, SENDER_GROUP, 2, keys.parked_count)
        with pytest.raises(
            BrokerUnavailable, match="OutOfMemoryError"
        ):  # marking the record sending writes
            await broker.gate(chat, parked, first, SENDER_GROUP, 1, keys.parked_count, record)
        with pytest.raises(BrokerUnavailable, match="OutOfMemoryError"):
            await limiter.hold(1, 5, 1.0)
    finally:
        await client.config_set("maxmemory", 0)
    assert await broker.gate(chat, parked, first, SENDER_GROUP, 1, keys.parked_count, record) >= 0
    assert (await broker.get_record(record) or {}).get("status") == "sending"
