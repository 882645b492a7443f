"""A read whose reply never reached the sender (its connection dropped, as in a failover) left
entries pending under its name that none of its lanes holds: they are read again as soon as
Redis answers, not a claim idle time later; and what its lanes hold is not sent twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from sandbox import SandboxConfig
from shared.keys import SENDER_GROUP
from shared.models import Envelope, Priority
from shared.redis_broker import connect
from tests.helpers import eventually
from tests.procs import RedisServer
from tests.services.sender.harness import BOT, Pipeline, reading, running, text_envelope

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def private(
    monkeypatch: pytest.MonkeyPatch, private_redis: RedisServer
) -> AsyncIterator[tuple[str, redis.Redis]]:
    """A Redis of the test's own (the test drops every connection to it); no claim within the
    test: only re-reading its own pending entries can send what a lost read left."""
    monkeypatch.setenv("FLOODGATE_SENDER_CLAIM_IDLE_MS", "600000")
    client = connect(private_redis.url)
    try:
        yield private_redis.url, client
    finally:
        await client.aclose()


async def _lose_a_read(client: redis.Redis, pipe: Pipeline, stream: str, env: Envelope) -> None:
    """In one transaction: the entry is appended and read under the sender's name, and the
    sender's connections drop, so the read's reply is lost to it."""
    async with client.pipeline(transaction=True) as tx:
        tx.xadd(stream, {"d": env.dumps()})
        tx.xreadgroup(SENDER_GROUP, pipe.ctx.consumer, {stream: ">"}, count=10)
        tx.client_kill_filter(_type="normal", skipme=True)
        await tx.execute()


def _texts(pipe: Pipeline, *chats: int) -> list[str]:
    return sorted(m.text for chat in chats for m in pipe.delivered(chat))


async def test_entries_of_a_lost_read_are_sent_once_redis_answers(
    private: tuple[str, redis.Redis],
) -> None:
    url, client = private
    async with running(url, "lostread", names=["sender"]) as pipe:
        stream = pipe.ctx.keys.of_bot(BOT).send(Priority.NORMAL)
        await reading(client, stream)
        await _lose_a_read(client, pipe, stream, text_envelope("lost-read", 5, "held up"))
        assert (await client.xpending(stream, SENDER_GROUP))["pending"] == 1

        async def sent() -> bool:
            return _texts(pipe, 5) == ["held up"]

        await eventually(sent, 10)


async def test_an_entry_in_flight_at_the_lost_read_is_sent_once(
    private: tuple[str, redis.Redis],
) -> None:
    """The re-reading after the outage finds the entry a lane holds (its call to Telegram under
    way) next to the lost one: the lost one is sent, the held one not a second time."""
    url, client = private
    # slow, but under the harness's Telegram timeout of 1 s (a timed-out call is sent again)
    slow = SandboxConfig(latency_min_ms=700, latency_max_ms=700)
    async with running(url, "lostread2", slow, names=["sender"]) as pipe:
        stream = pipe.ctx.keys.of_bot(BOT).send(Priority.NORMAL)
        await reading(client, stream)
        await client.xadd(stream, {"d": text_envelope("in-flight", 5, "under way").dumps()})

        async def read() -> bool:
            return bool((await client.xpending(stream, SENDER_GROUP))["pending"])

        await eventually(read, 10)
        await _lose_a_read(client, pipe, stream, text_envelope("lost-read", 6, "held up"))

        async def both() -> bool:
            return _texts(pipe, 5, 6) == ["held up", "under way"]

        await eventually(both, 10)
        await asyncio.sleep(2.0)  # a second copy of either would be in by now
        assert _texts(pipe, 5, 6) == ["held up", "under way"]
        assert (await client.xpending(stream, SENDER_GROUP))["pending"] == 0
