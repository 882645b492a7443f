"""The stats service: queue depths, dead-letter administration, depth gauges for Prometheus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from services.stats.depths import queue_stats
from services.stats.dlq import describe, drop_letter, list_letters, replay
from services.stats.keys import KeyRoutes
from services.stats.metrics import StatsMetrics
from services.stats.recorder import GROUP as STORE_GROUP
from services.stats.recorder import Recorder, RecorderMetrics
from services.stats.settings import StatsSettings
from shared.api_models import DLQ_LIMIT_DEFAULT, DLQ_LIMIT_MAX
from shared.broker import BrokerUnavailable
from shared.context import Context, dlq_keys
from shared.keys import SCHEDULER_GROUP, SENDER_GROUP
from shared.loops import repeat, sleep_or_stop
from shared.migrations import migrated_pool

log = logging.getLogger("floodgate.stats")

DEFAULT_DLQ_LIMIT = DLQ_LIMIT_DEFAULT
STORE_RETRY_S = 2.0
MAX_DLQ_LIMIT = DLQ_LIMIT_MAX
DLQ_EXPIRE_BATCH = 1000  # dead letters dropped a call


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, dumps=lambda o: orjson.dumps(o).decode())


def _error(error: str, field: str) -> dict[str, Any]:
    """An error body naming the field at fault."""
    return {"error": error, "errors": [{"field": field, "reason": error}]}


class StatsService:
    """Read-only views of the queues, plus the DLQ's replay and drop."""

    name = "stats"

    def __init__(self, ctx: Context, settings: StatsSettings) -> None:
        self._ctx = ctx
        self._settings = settings
        self._metrics = StatsMetrics(ctx.registry)
        self._recorder_metrics = RecorderMetrics(ctx.registry)

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return [
            web.get("/queue/stats", self.get_stats),
            web.get("/v1/dlq", self.list_dlq),
            web.post("/v1/dlq/replay", self.replay_dlq),
            web.delete("/v1/dlq/{id}", self.drop_dlq),
            *KeyRoutes(self._ctx.keystore).routes(),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh the depth gauges, and record messages in the store if one is configured."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(
                repeat(
                    "stats.refresh",
                    self._refresh,
                    stop,
                    self._metrics.errors,
                    self._settings.refresh_interval,
                )
            )
            tg.create_task(
                repeat(
                    "stats.housekeeping",
                    self._housekeep,
                    stop,
                    self._metrics.errors,
                    self._settings.housekeeping_interval,
                )
            )
            if self._ctx.settings.database_url:
                tg.create_task(self._record(self._ctx.settings.database_url, stop))

    async def _record(self, url: str, stop: asyncio.Event) -> None:
        pool = await self._connect(url, stop)
        if pool is None:
            return
        try:
            recorder = Recorder(self._ctx, pool, self._recorder_metrics)
            await repeat("stats.record", recorder.step, stop, self._metrics.errors)
        finally:
            await pool.close()

    async def _connect(self, url: str, stop: asyncio.Event) -> asyncpg.Pool | None:
        """A pool with the schema migrated; retried while PostgreSQL is away."""
        while not stop.is_set():
            try:
                return await migrated_pool(url)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._metrics.errors.labels("stats.record").inc()
                log.warning("message store unreachable, retrying", extra={"reason": str(exc)})
                await sleep_or_stop(stop, STORE_RETRY_S)
        return None

    async def _housekeep(self) -> bool:
        """Trim old updates, drop dead letters past their retention, and forget the consumer
        names of replicas gone for good."""
        s, keys, broker = self._settings, self._ctx.keys, self._ctx.broker
        # with a message store, no update it has not recorded yet goes
        store = STORE_GROUP if self._ctx.settings.database_url else None
        await broker.trim_older(keys.updates, int(s.updates_retention * 1000), store)
        if s.dlq_retention > 0:
            await self._expire_dead(int(s.dlq_retention * 1000))
        idle_ms = int(s.forget_consumers_after * 1000)
        groups = [(part.ingest, SCHEDULER_GROUP) for part in keys.shards]
        groups += [(s, SENDER_GROUP) for part in keys.shards for s in part.send_streams]
        groups += [(part.events, STORE_GROUP) for part in keys.shards]
        groups += [(keys.updates, STORE_GROUP)]
        for stream, group in groups:
            gone = await broker.forget_consumers(stream, group, idle_ms)
            if gone:
                log.info(
                    "forgot idle consumers", extra={"stream": stream, "group": group, "names": gone}
                )
        return False

    async def _expire_dead(self, retention_ms: int) -> None:
        """Dead letters older than the retention leave every partition's queue, a thousand
        a call."""
        dropped = 0
        for part in self._ctx.keys.shards:
            while True:
                n = await self._ctx.broker.dlq_expire(
                    retention_ms, DLQ_EXPIRE_BATCH, dlq_keys(part)
                )
                dropped += n
                if n < DLQ_EXPIRE_BATCH:
                    break
        if dropped:
            self._metrics.dlq_expired.inc(dropped)
            log.info(
                "dead letters past their retention dropped",
                extra={"count": dropped, "retention_s": retention_ms / 1000},
            )

    async def _refresh(self) -> bool:
        doc = await queue_stats(self._ctx.broker, self._ctx.keys)
        for queue, depth in doc["stats"].items():
            self._metrics.depth.labels(queue).set(depth)
        self._metrics.total_queued.set(doc["total_queued"])
        return False

    async def get_stats(self, _: web.Request) -> web.Response:
        """``GET /queue/stats``."""
        try:
            return _json(await queue_stats(self._ctx.broker, self._ctx.keys))
        except BrokerUnavailable:
            return _json(_error("queue unavailable, retry later", "body"), 503)

    async def list_dlq(self, request: web.Request) -> web.Response:
        """``GET /v1/dlq?limit=N``: dead messages, oldest first, with their last error."""
        try:
            limit = int(request.query.get("limit", DEFAULT_DLQ_LIMIT))
        except ValueError:
            return _json(_error("limit: must be an integer", "limit"), 422)
        if not 1 <= limit <= MAX_DLQ_LIMIT:
            return _json(_error(f"limit: must be between 1 and {MAX_DLQ_LIMIT}", "limit"), 422)
        try:
            letters = await list_letters(self._ctx.broker, self._ctx.keys, limit)
        except BrokerUnavailable:
            return _json(_error("queue unavailable, retry later", "body"), 503)
        return _json({"items": [describe(letter) for letter in letters], "count": len(letters)})

    async def replay_dlq(self, request: web.Request) -> web.Response:
        """``POST /v1/dlq/replay``: all dead letters, or ``{"ids": [...]}``."""
        ids = None
        if request.can_read_body:
            try:
                doc = orjson.loads(await request.read() or b"{}")
            except orjson.JSONDecodeError as exc:
                return _json(_error(f"invalid JSON: {exc}", "body"), 422)
            if not isinstance(doc, dict):
                return _json(_error('body: must be a JSON object like {"ids": [...]}', "body"), 422)
            ids = doc.get("ids")
            if ids is not None and not (
                isinstance(ids, list) and all(isinstance(i, str) for i in ids)
            ):
                return _json(_error("ids: must be a list of message ids", "ids"), 422)
        try:
            moved = await replay(
                self._ctx.broker, self._ctx.keys, ids, self._ctx.settings.record_ttl
            )
        except BrokerUnavailable:
            return _json(_error("queue unavailable, retry later", "body"), 503)
        self._metrics.dlq_replayed.inc(moved)
        return _json({"replayed": moved})

    async def drop_dlq(self, request: web.Request) -> web.Response:
        """``DELETE /v1/dlq/{id}``."""
        message_id = request.match_info["id"]
        try:
            dropped = await drop_letter(self._ctx.broker, self._ctx.keys, message_id)
        except BrokerUnavailable:
            return _json(_error("queue unavailable, retry later", "body"), 503)
        if not dropped:
            return _json(_error(f"no dead letter with id {message_id[:64]}", "id"), 404)
        return _json({"dropped": message_id})
