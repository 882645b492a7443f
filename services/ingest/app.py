"""The ingest service: the public send API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from services.ingest.handlers import Handlers
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings
from shared.context import Context


class IngestService:
    """Validates send requests and queues them on the ingest stream."""

    name = "ingest"

    def __init__(self, ctx: Context, settings: IngestSettings) -> None:
        self._ctx = ctx
        self._handlers = Handlers(ctx, settings, IngestMetrics(ctx.registry))

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        h = self._handlers
        return [
            web.post("/v1/messages", h.post_message),
            web.post("/v1/messages/batch", h.post_batch),
            web.get("/v1/messages/{id}", h.get_message),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest has no loop of its own: it stops with the HTTP site."""
        await self._ctx.broker.ensure_group(self._ctx.keys.ingest, "scheduler")
        await stop.wait()
