"""What the scheduler does to a status record's lifetime: a message routed at once keeps the
one ingest gave it (no second EXPIRE per message), one due later lives until then and a
lifetime more, one dead here a lifetime from now."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import redis.asyncio as redis

from services.ingest.submit import submit
from services.scheduler.app import SchedulerService
from services.scheduler.settings import SchedulerSettings
from shared.context import build_context
from shared.keys import SCHEDULER_GROUP
from shared.models import SendRequest
from shared.settings import CommonSettings
from tests.helpers import TOKENS

LIFETIME = 1000


async def test_routing_keeps_or_sets_the_record_lifetime(
    redis_client: redis.Redis, redis_url: str, namespace: str
) -> None:
    settings = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_RECORD_TTL=LIFETIME,
    )
    ctx = replace(build_context(settings, allow_memory=False), consumer="sched")
    scheduler = SchedulerService(ctx, SchedulerSettings(FLOODGATE_MAX_DELIVERIES=2))
    later = datetime.fromtimestamp(time.time() + 300, UTC)
    try:
        now, ahead, dead = await submit(
            ctx,
            [
                SendRequest(bot_id=111, chat_id=5, text="now"),
                SendRequest(bot_id=111, chat_id=6, text="later", send_at=later),
                SendRequest(bot_id=111, chat_id=7, text="dies"),
            ],
        )
        keys = ctx.keys.of_bot(111)
        for accepted in (now, ahead, dead):  # ingest gave them a lifetime; shorten it
            await redis_client.expire(keys.record(accepted.id), 50)
        await ctx.broker.ensure_group(keys.ingest, SCHEDULER_GROUP)
        entries = await ctx.broker.read([keys.ingest], SCHEDULER_GROUP, "sched", 10, None)
        assert len(entries) == 3
        # the third was delivered to schedulers that died: more times than allowed
        entries[2] = replace(entries[2], deliveries=3)
        await scheduler._route(entries)
        statuses = [await redis_client.hget(keys.record(a.id), "status") for a in (now, ahead)]
        assert statuses == [b"scheduled", b"scheduled"]
        assert await redis_client.ttl(keys.record(now.id)) <= 50, "not renewed"
        assert LIFETIME + 250 < await redis_client.ttl(keys.record(ahead.id)) <= LIFETIME + 300
        assert await redis_client.hget(keys.record(dead.id), "status") == b"dead"
        assert LIFETIME - 10 < await redis_client.ttl(keys.record(dead.id)) <= LIFETIME
    finally:
        await ctx.close()
