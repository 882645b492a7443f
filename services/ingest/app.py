"""The ingest service: the public send API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from services.ingest.handlers import Handlers
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings
from services.ingest.webhook import WebhookHandler, WebhookMetrics
from shared.context import ConfigError, Context
from shared.webhooks import parse_pairs, secrets_for


class IngestService:
    """Validates send requests and queues them on the ingest stream."""

    name = "ingest"

    def __init__(self, ctx: Context, settings: IngestSettings) -> None:
        self._ctx = ctx
        self._handlers = Handlers(ctx, settings, IngestMetrics(ctx.registry))
        try:
            configured = parse_pairs(settings.webhook_secrets, "FLOODGATE_WEBHOOK_SECRETS")
            usernames = parse_pairs(settings.bot_usernames, "FLOODGATE_BOT_USERNAMES")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self._webhook = WebhookHandler(
            ctx,
            secrets_for(ctx.bots, configured),
            {bot: name.lstrip("@") for bot, name in usernames.items()},
            settings.max_update_bytes,
            WebhookMetrics(ctx.registry),
        )

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        h = self._handlers
        return [
            web.post("/v1/messages", h.post_message),
            web.post("/v1/messages/batch", h.post_batch),
            web.get("/v1/messages/{id}", h.get_message),
            web.post("/webhook/telegram/{bot_id}", self._webhook.receive),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest has no loop of its own: it stops with the HTTP site."""
        await self._ctx.broker.ensure_group(self._ctx.keys.ingest, "scheduler")
        await stop.wait()
