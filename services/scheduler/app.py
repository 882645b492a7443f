"""The scheduler: assigns priority and timing, routes accepted messages into the send queues."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from aiohttp import web

from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.route import plan_batch
from services.scheduler.settings import SchedulerSettings
from shared.broker import Entry
from shared.context import Context
from shared.keys import SCHEDULER_GROUP
from shared.loops import repeat

log = logging.getLogger("floodgate.scheduler")


class SchedulerService:
    """Consumes the ingest stream in a consumer group; any number of replicas may run."""

    name = "scheduler"

    def __init__(self, ctx: Context, settings: SchedulerSettings) -> None:
        self._ctx = ctx
        self._settings = settings
        self._metrics = SchedulerMetrics(ctx.registry)
        self._recovered = False

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return []

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, promote due scheduled messages and claim a dead replica's entries until stop."""
        s, errors = self._settings, self._metrics.errors
        async with asyncio.TaskGroup() as tg:
            tg.create_task(repeat("scheduler.consume", self._consume, stop, errors))
            tg.create_task(
                repeat("scheduler.promote", self._promote, stop, errors, s.promote_interval)
            )
            tg.create_task(
                repeat("scheduler.claim", self._claim, stop, errors, s.claim_idle_ms / 2000)
            )

    async def _consume(self) -> bool:
        ctx, s = self._ctx, self._settings
        if not self._recovered:
            await ctx.broker.ensure_group(ctx.keys.ingest, SCHEDULER_GROUP)
            own = await ctx.broker.read_own_pending(
                ctx.keys.ingest, SCHEDULER_GROUP, ctx.consumer, s.batch
            )
            if own:
                log.info("re-reading own pending entries", extra={"count": len(own)})
                await self._route(own)
                return True
            self._recovered = True
        entries = await ctx.broker.read(
            [ctx.keys.ingest], SCHEDULER_GROUP, ctx.consumer, s.batch, s.block_ms
        )
        await self._route(entries)
        return bool(entries)

    async def _route(self, entries: list[Entry]) -> None:
        if not entries:
            return
        plan = plan_batch(self._ctx.keys, entries, max_deliveries=self._settings.max_deliveries)
        plan.commit.records = [(key, "", fields) for key, fields in plan.records.items()]
        ttl = plan.commit.record_ttl = self._ctx.settings.record_ttl
        plan.commit.record_ttls = {key: ttl + math.ceil(s) for key, s in plan.ahead.items()}
        await self._ctx.broker.commit(plan.commit)
        for priority, count in plan.routed.items():
            self._metrics.routed.labels(priority.value).inc(count)
        self._metrics.delayed.inc(plan.delayed)
        self._metrics.split.inc(plan.extra_parts)
        self._metrics.poison.inc(plan.poison)

    async def _promote(self) -> bool:
        keys = self._ctx.keys
        moved = await self._ctx.broker.promote_due(
            keys.delayed("scheduled"), keys.send_streams, 500
        )
        self._metrics.promoted.inc(moved)
        return moved > 0

    async def _claim(self) -> bool:
        ctx = self._ctx
        claimed = await ctx.broker.claim_stale(
            ctx.keys.ingest,
            SCHEDULER_GROUP,
            ctx.consumer,
            self._settings.claim_idle_ms,
            self._settings.batch,
        )
        if claimed:
            log.info("claimed entries of a silent scheduler", extra={"count": len(claimed)})
            await self._route(claimed)
        return False
