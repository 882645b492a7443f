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
from shared.broker import BrokerUnavailable, Entry
from shared.context import Context, dlq_keys
from shared.keys import SCHEDULER_GROUP, Keys
from shared.loops import EachTried, repeat
from shared.presence import BEAT_EVERY_S, Presence, share
from shared.redis_broker import RedisBroker
from shared.rereading import RETRY_S as REREAD_RETRY_S
from shared.rereading import Rereading, RereadPass

log = logging.getLogger("floodgate.scheduler")


class SchedulerService:
    """Consumes the ingest stream in a consumer group; any number of replicas may run."""

    name = "scheduler"

    def __init__(self, ctx: Context, settings: SchedulerSettings) -> None:
        self._ctx = ctx
        self._settings = settings
        self._metrics = SchedulerMetrics(ctx.registry)
        # the ingest stream of every partition first (a restart), not only of this replica's
        # share: what it held before may be of any
        self._unread = Rereading(keys.ingest for keys in ctx.keys.shards)
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
            tg.create_task(repeat("scheduler.reread", self._reread, stop, errors, REREAD_RETRY_S))
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
        ctx, s, unread = self._ctx, self._settings, self._unread
        # a stream waiting to be re-read is not read anew
        streams = [stream for stream in self._streams() if stream not in unread]
        if not streams:
            await unread.wait_done()
            return True
        try:
            entries = await ctx.broker.read(
                streams, SCHEDULER_GROUP, ctx.consumer, s.batch, s.block_ms
            )
        except BrokerUnavailable as exc:
            # what the partitions that answered gave is routed now; the streams whose reply
            # may have been lost (entries pending under this consumer) wait for their
            # re-reading
            self._left_pending(await self._route(unread.read_failed(exc)))
            raise
        failures = await self._route(entries)
        self._left_pending(failures)
        for failure in failures.values():
            raise failure
        return bool(entries)

    def _left_pending(self, failures: dict[str, Exception]) -> None:
        """Partitions whose route failed left their entries pending under this consumer: they
        are re-read and routed again soon, without holding up the others. Counted as a delivery
        when the error was the entries' own, not an outage, so a batch that keeps failing is
        dead-lettered as poison (route.py) instead of holding up this scheduler for good."""
        for stream, exc in failures.items():
            if isinstance(exc, BrokerUnavailable):
                self._unread.lost([stream])
            else:
                self._unread.failed(stream, recount=True)

    async def _reread(self) -> bool:
        """Route this consumer's own pending entries of the streams that wait for it (after a
        restart, a failed read or a failed route) before they are read anew. A stream whose
        partition does not answer is tried again a second later; the others go on."""
        ctx, s, unread = self._ctx, self._settings, self._unread
        if not unread:
            return False
        async with self._rerouting, RereadPass(log) as attempt:
            for stream, recount in unread.waiting():
                async with attempt.of(stream, recount, unread):
                    while own := await ctx.broker.read_own_pending(
                        stream, SCHEDULER_GROUP, ctx.consumer, s.batch, recount
                    ):
                        log.info("re-reading own pending entries", extra={"count": len(own)})
                        for failure in (await self._route(own)).values():
                            raise failure
                if attempt.over:
                    break
        return False

    async def _route(self, entries: list[Entry]) -> dict[str, Exception]:
        """Route entries partition by partition (each in one atomic commit): one whose primary
        is away (a failover on a Redis Cluster) holds up none of the others. Returns the ingest
        streams whose route failed, with why; their entries are left pending."""
        parts: dict[Keys, list[Entry]] = {}
        for entry in entries:
            parts.setdefault(self._ctx.keys.of_stream(entry.stream), []).append(entry)
        failures: dict[str, Exception] = {}
        for keys, part in parts.items():
            try:
                await self._route_part(keys, part)
            except Exception as exc:
                failures[keys.ingest] = exc
        return failures

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
        moved, each = 0, EachTried()
        for keys in self._share:
            with each.step():
                moved += await self._ctx.broker.promote_due(
                    keys.delayed("scheduled"), keys.send_streams, 500
                )
        self._metrics.promoted.inc(moved)
        each.done()
        return moved > 0

    async def _claim(self) -> bool:
        ctx, s, each = self._ctx, self._settings, EachTried()
        for keys in self._share:
            if keys.ingest in self._unread:  # its own pending entries are re-read first
                continue
            async with self._rerouting:
                with each.step():
                    claimed = await ctx.broker.claim_stale(
                        keys.ingest, SCHEDULER_GROUP, ctx.consumer, s.claim_idle_ms, s.batch
                    )
                    if claimed:
                        log.info(
                            "claimed entries of a silent scheduler", extra={"count": len(claimed)}
                        )
                        # one that fails is claimed again later: not re-read meanwhile, which
                        # could hand the re-reading entries the consume loop is routing now
                        for failure in (await self._route(claimed)).values():
                            raise failure
        each.done()
        return False
