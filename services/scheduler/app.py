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
from shared.broker import BrokerBusy, BrokerUnavailable, Entry
from shared.context import Context, dlq_keys
from shared.keys import SCHEDULER_GROUP, Keys
from shared.loops import repeat
from shared.presence import BEAT_EVERY_S, Presence, share
from shared.redis_broker import RedisBroker

log = logging.getLogger("floodgate.scheduler")


class SchedulerService:
    """Consumes the ingest stream in a consumer group; any number of replicas may run."""

    name = "scheduler"

    def __init__(self, ctx: Context, settings: SchedulerSettings) -> None:
        self._ctx = ctx
        self._settings = settings
        self._metrics = SchedulerMetrics(ctx.registry)
        self._recovered = False
        self._recount = True  # a re-reading counts as a delivery after a restart only
        self._presence = (
            Presence(ctx.broker.client, ctx.keys.schedulers, ctx.consumer)
            if isinstance(ctx.broker, RedisBroker)
            else None
        )
        self._share = ctx.keys.shards  # the partitions this replica reads
        self._turn = 0
        # held while entries read before (own pending, claimed) are routed: the re-reading
        # after an outage and the claim loop never route the same entry at once
        self._rerouting = asyncio.Lock()

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return []

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, promote due scheduled messages and claim a dead replica's entries until stop."""
        s, errors = self._settings, self._metrics.errors
        async with asyncio.TaskGroup() as tg:
            if self._presence is not None:
                tg.create_task(repeat("scheduler.presence", self._beat, stop, errors, BEAT_EVERY_S))
            tg.create_task(repeat("scheduler.consume", self._consume, stop, errors))
            tg.create_task(
                repeat("scheduler.promote", self._promote, stop, errors, s.promote_interval)
            )
            tg.create_task(
                repeat("scheduler.claim", self._claim, stop, errors, s.claim_idle_ms / 2000)
            )
        if self._presence is not None:
            # at once, not when the beat lapses: until then the others leave its share unread
            await self._presence.leave()

    async def _beat(self) -> bool:
        """Say this replica is alive and take its share of the partitions."""
        assert self._presence is not None
        alive = await self._presence.beat()
        shards = self._ctx.keys.shards
        self._share = tuple(shards[p] for p in share(len(shards), alive, self._ctx.consumer))
        return False

    def _streams(self) -> list[str]:
        """The ingest streams of this replica's partitions, starting at a different one each
        time so no partition waits behind a busy one."""
        share_ = self._share
        self._turn = (self._turn + 1) % len(share_)
        return [k.ingest for k in (*share_[self._turn :], *share_[: self._turn])]

    async def _consume(self) -> bool:
        try:
            if not self._recovered:
                return await self._recover()
            ctx, s = self._ctx, self._settings
            entries = await ctx.broker.read(
                self._streams(), SCHEDULER_GROUP, ctx.consumer, s.batch, s.block_ms
            )
            await self._route(entries)
        except BrokerUnavailable as exc:
            # a read whose reply was lost (a failover, a dropped connection) or a route that
            # failed left entries pending under this consumer: they are read again once Redis
            # answers, not a claim idle time later (a full connection pool sent nothing)
            if not isinstance(exc, BrokerBusy):
                self._recovered, self._recount = False, False
            raise
        except Exception:
            # an error of the entries' own, not an outage: every re-reading of them counts a
            # delivery from here on, so a batch that keeps failing is dead-lettered as poison
            # (route.py) instead of holding up this scheduler for good
            self._recount = True
            raise
        return bool(entries)

    async def _recover(self) -> bool:
        """Route this consumer's own pending entries (after a restart or an outage) before any
        new one."""
        ctx, s = self._ctx, self._settings
        async with self._rerouting:
            own: list[Entry] = []
            for keys in ctx.keys.shards:  # pending of any partition: the share may have moved
                await ctx.broker.ensure_group(keys.ingest, SCHEDULER_GROUP)
                own += await ctx.broker.read_own_pending(
                    keys.ingest, SCHEDULER_GROUP, ctx.consumer, s.batch, self._recount
                )
            if own:
                log.info("re-reading own pending entries", extra={"count": len(own)})
                await self._route(own)
                return True
        self._recovered = True
        return True

    async def _route(self, entries: list[Entry]) -> None:
        if not entries:
            return
        parts: dict[Keys, list[Entry]] = {}
        for entry in entries:
            parts.setdefault(self._ctx.keys.of_stream(entry.stream), []).append(entry)
        # every partition is tried: one whose primary is away (a failover on a Redis Cluster)
        # leaves its entries pending, to be routed again, without holding up the others
        failed: BrokerUnavailable | None = None
        for keys, part in parts.items():
            try:
                await self._route_part(keys, part)
            except BrokerUnavailable as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    async def _route_part(self, keys: Keys, entries: list[Entry]) -> None:
        """Route one partition's entries in one atomic commit (one Redis Cluster slot)."""
        plan = plan_batch(keys, entries, max_deliveries=self._settings.max_deliveries)
        plan.commit.dlq = dlq_keys(keys)
        plan.commit.records = [(key, "", fields) for key, fields in plan.records.items()]
        # A routed message's record keeps the lifetime ingest gave it moments ago (one EXPIRE
        # less per message); one due later lives until then and a lifetime more, one dead here
        # a lifetime from now.
        ttl = self._ctx.settings.record_ttl
        plan.commit.record_ttl = None
        plan.commit.record_ttls = {key: ttl + math.ceil(s) for key, s in plan.ahead.items()}
        plan.commit.record_ttls |= dict.fromkeys(plan.dead, ttl)
        await self._ctx.broker.commit(plan.commit)
        for priority, count in plan.routed.items():
            self._metrics.routed.labels(priority.value).inc(count)
        self._metrics.delayed.inc(plan.delayed)
        self._metrics.split.inc(plan.extra_parts)
        self._metrics.poison.inc(plan.poison)

    async def _promote(self) -> bool:
        moved = 0
        for keys in self._share:
            moved += await self._ctx.broker.promote_due(
                keys.delayed("scheduled"), keys.send_streams, 500
            )
        self._metrics.promoted.inc(moved)
        return moved > 0

    async def _claim(self) -> bool:
        ctx, s = self._ctx, self._settings
        for keys in self._share:
            async with self._rerouting:
                claimed = await ctx.broker.claim_stale(
                    keys.ingest, SCHEDULER_GROUP, ctx.consumer, s.claim_idle_ms, s.batch
                )
                if claimed:
                    log.info("claimed entries of a silent scheduler", extra={"count": len(claimed)})
                    await self._route(claimed)
        return False
