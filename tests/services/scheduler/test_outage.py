"""Entries a scheduler read but could not route (Redis refused the commit, or the read's reply
was lost in a failover) are routed again as soon as Redis answers, not a claim idle time later:
a Sentinel failover held 49 messages for 40 s that way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as redis

from services.ingest.submit import submit
from services.scheduler import route
from services.scheduler.app import SchedulerService
from services.scheduler.settings import SchedulerSettings
from shared.context import Context, build_context, dlq_keys
from shared.keys import SCHEDULER_GROUP
from shared.models import Priority, SendRequest
from shared.redis_broker import connect
from shared.settings import CommonSettings
from tests.helpers import TOKENS, eventually
from tests.procs import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def private(private_redis: RedisServer) -> AsyncIterator[tuple[Context, redis.Redis]]:
    """A context on a Redis of the test's own (it makes that Redis refuse writes)."""
    settings = CommonSettings(
        REDIS_URL=private_redis.url, FLOODGATE_NAMESPACE="outage", FLOODGATE_BOTS=TOKENS[111]
    )
    ctx = replace(build_context(settings, allow_memory=False), consumer="sched")
    client = connect(private_redis.url)
    try:
        yield ctx, client
    finally:
        await client.aclose()
        await ctx.close()


async def test_entries_a_refused_route_left_pending_are_routed_once_redis_answers(
    private: tuple[Context, redis.Redis],
) -> None:
    ctx, client = private
    keys = ctx.keys.of_bot(111)
    # a message accepted by ingest, taken out of the stream for now, to be put back at the
    # moment Redis begins to refuse writes
    (held,) = await submit(ctx, [SendRequest(bot_id=111, chat_id=5, text="held up")])
    found: Any = await client.xrange(keys.ingest)
    ((entry_id, fields),) = found
    await client.xdel(keys.ingest, entry_id)
    # no claim within the test: only re-reading its own pending entries can route it
    settings = SchedulerSettings(
        FLOODGATE_SCHEDULER_BLOCK_MS=50, FLOODGATE_SCHEDULER_CLAIM_IDLE_MS=600_000
    )
    scheduler = SchedulerService(ctx, settings)
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))

    async def status(message_id: str) -> Any:
        return await client.hget(keys.record(message_id), "status")

    def scheduled(message_id: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return bool(await status(message_id) == b"scheduled")

        return check

    try:
        (first,) = await submit(ctx, [SendRequest(bot_id=111, chat_id=6, text="routed")])
        await eventually(scheduled(first.id), 10)
        async with client.pipeline(transaction=True) as tx:
            tx.xadd(keys.ingest, fields)
            tx.config_set("maxmemory", 1)
            await tx.execute()

        async def read_not_routed() -> bool:
            pending = await client.xpending(keys.ingest, SCHEDULER_GROUP)
            return bool(pending["pending"])

        await eventually(read_not_routed, 10)
        await asyncio.sleep(1.0)  # refused again meanwhile
        assert await status(held.id) is None  # still queued: not routed
        # no delivery counted meanwhile (five dead-letter a message as poison)
        (row,) = await client.xpending_range(keys.ingest, SCHEDULER_GROUP, "-", "+", 10)
        assert row["times_delivered"] == 1
        await client.config_set("maxmemory", 0)
        await eventually(scheduled(held.id), 10)
        assert (await client.xpending(keys.ingest, SCHEDULER_GROUP))["pending"] == 0
        assert await client.xlen(keys.send(Priority.NORMAL)) == 2  # both, once each
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_batch_that_keeps_failing_ends_in_the_dead_letter_queue(
    private: tuple[Context, redis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route that fails for a reason of the entries' own (a fault in the scheduler, not an
    outage) is re-read and tried again, each time counted as a delivery, so the message ends
    dead-lettered as poison instead of holding up its partition until a claim (not within this
    test: the claim idle time is 10 minutes)."""
    ctx, _ = private
    real_split = route.split_text

    def failing_split(text: str) -> list[str]:
        if text == "boom":
            raise RuntimeError("a fault of the splitter's own")
        return real_split(text)

    monkeypatch.setattr(route, "split_text", failing_split)
    settings = SchedulerSettings(
        FLOODGATE_SCHEDULER_BLOCK_MS=50,
        FLOODGATE_SCHEDULER_CLAIM_IDLE_MS=600_000,
        FLOODGATE_MAX_DELIVERIES=2,
    )
    scheduler = SchedulerService(ctx, settings)
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    keys = dlq_keys(ctx.keys.of_bot(111))
    try:
        (bad,) = await submit(ctx, [SendRequest(bot_id=111, chat_id=7, text="boom")])

        async def dead() -> bool:
            return any(d.message_id == bad.id for d in await ctx.broker.dlq_list(10, keys))

        await eventually(dead, 15)
        (letter,) = [d for d in await ctx.broker.dlq_list(10, keys) if d.message_id == bad.id]
        assert b"delivered" in letter.meta  # dead-lettered as poison, with the reason
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
