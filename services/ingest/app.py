"""The ingest service: the public send API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from services.ingest.botapi import BotApi
from services.ingest.handlers import Handlers
from services.ingest.lookup import StoreLookup
from services.ingest.metrics import IngestMetrics
from services.ingest.poller import Poller
from services.ingest.settings import IngestSettings
from services.ingest.webhook import WebhookHandler, WebhookMetrics
from services.ingest.webhook_site import WEBHOOK_ROUTE, webhook_listener
from shared.context import ConfigError, Context
from shared.runtime import HTTP_SHUTDOWN_SECONDS
from shared.telegram import TelegramClient, new_session
from shared.webhooks import parse_pairs, secrets_for


class IngestService:
    """Validates send requests and queues them on the ingest stream."""

    name = "ingest"

    def __init__(self, ctx: Context, settings: IngestSettings) -> None:
        self._ctx = ctx
        url = ctx.settings.database_url
        self._lookup = StoreLookup(url) if url else None
        metrics = IngestMetrics(ctx.registry)
        self._handlers = Handlers(ctx, settings, metrics, self._lookup)
        try:
            configured = parse_pairs(settings.webhook_secrets, "FLOODGATE_WEBHOOK_SECRETS")
            usernames = parse_pairs(settings.bot_usernames, "FLOODGATE_BOT_USERNAMES")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self._settings = settings
        self._usernames = {bot: name.lstrip("@") for bot, name in usernames.items()}
        self._updates = WebhookMetrics(ctx.registry)
        self._webhook = WebhookHandler(
            ctx,
            secrets_for(ctx.bots, configured),
            self._usernames,
            settings.max_update_bytes,
            self._updates,
        )
        self._polled = self._polling_bots(settings.polling_bots)
        # a bot with a webhook secret of its own, or polled, gets its updates through floodgate
        takes_updates = frozenset(self._polled) | frozenset(configured)
        self._botapi = BotApi(ctx, settings, metrics, self._lookup, takes_updates)

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        h = self._handlers
        routes = [
            web.post("/v1/messages", h.post_message),
            web.post("/v1/messages/batch", h.post_batch),
            web.get("/v1/messages/{id}", h.get_message),
            *self._botapi.routes(),
        ]
        if self._settings.webhook_port is None:
            routes.append(web.post(WEBHOOK_ROUTE, self._webhook.receive))
        return routes

    def _polling_bots(self, spec: str) -> list[int]:
        if spec.strip() == "all":
            return sorted(self._ctx.bots)
        try:
            wanted = [int(part) for part in spec.split(",") if part.strip()]
        except ValueError as exc:
            raise ConfigError("FLOODGATE_POLLING_BOTS: 'all' or bot ids, comma-separated") from exc
        unknown = [bot for bot in wanted if bot not in self._ctx.bots]
        if unknown:
            raise ConfigError(f"FLOODGATE_POLLING_BOTS: bots not in FLOODGATE_BOTS: {unknown}")
        return wanted

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the webhook's own port if it has one, poll the bots that get their updates by
        getUpdates, and wake drop-in requests whose messages were delivered, until stop."""
        s = self._settings
        try:
            async with (
                webhook_listener(
                    self._webhook.receive,
                    s.max_update_bytes,
                    s.webhook_host,
                    s.webhook_port,
                    self._ctx.settings.http_header_timeout,
                    self._ctx.settings.http_max_connections,
                ),
                asyncio.TaskGroup() as tg,
            ):
                tg.create_task(self._botapi.waiters.run(stop))
                await self._poll(stop)
        finally:
            await self._botapi.passthrough.close(HTTP_SHUTDOWN_SECONDS)
            if self._lookup is not None:
                await self._lookup.close()

    async def _poll(self, stop: asyncio.Event) -> None:
        if not self._polled:
            await stop.wait()
            return
        s = self._settings
        async with new_session(len(self._polled) + 2) as session:
            client = TelegramClient(
                session, self._ctx.settings.telegram_api_base, s.poll_timeout + 10
            )
            async with asyncio.TaskGroup() as tg:
                for bot in self._polled:
                    poller = Poller(
                        self._ctx,
                        bot,
                        client,
                        self._usernames.get(bot),
                        s.poll_timeout,
                        s.poll_lease_ms,
                        self._updates,
                    )
                    tg.create_task(poller.run(stop))
