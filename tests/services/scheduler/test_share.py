"""Schedulers share the pipeline's partitions out by their beats in Redis."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import redis.asyncio as redis

from services.scheduler.app import SchedulerService
from services.scheduler.settings import SchedulerSettings
from shared.context import build_context
from shared.settings import CommonSettings
from tests.helpers import eventually


async def test_a_stopped_scheduler_leaves_its_partitions_to_the_others(
    redis_client: redis.Redis, redis_url: str, namespace: str
) -> None:
    """Counted alive after it stopped, a scheduler keeps its share of the partitions from the
    others until its beat lapses: their ingest entries and due messages wait meanwhile."""
    settings = CommonSettings(
        REDIS_URL=redis_url, FLOODGATE_NAMESPACE=namespace, FLOODGATE_PARTITIONS=4
    )
    ctx = replace(build_context(settings, allow_memory=False), consumer="scheduler-a")
    scheduler = SchedulerService(ctx, SchedulerSettings(FLOODGATE_SCHEDULER_BLOCK_MS=50))
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))
    try:

        async def counted() -> bool:
            return await redis_client.zscore(ctx.keys.schedulers, "scheduler-a") is not None

        await eventually(counted, 10)
        stop.set()
        await running
        assert await redis_client.zscore(ctx.keys.schedulers, "scheduler-a") is None
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
        await ctx.close()
