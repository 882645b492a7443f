"""The webhook's own listener (``FLOODGATE_WEBHOOK_PORT``): Telegram's route and nothing else,
so this port can face the internet while the send API stays inside."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.typedefs import Handler

from shared.http_errors import json_errors
from shared.http_guard import GuardedSite
from shared.runtime import HTTP_SHUTDOWN_SECONDS

log = logging.getLogger("floodgate.ingest")

WEBHOOK_ROUTE = "/webhook/telegram/{bot_id}"


def webhook_app(receive: Handler, max_bytes: int) -> web.Application:
    """An app serving only ``POST /webhook/telegram/{bot_id}``; anything else is a JSON 404."""
    app = web.Application(client_max_size=max_bytes + 1, middlewares=[json_errors])
    app.add_routes([web.post(WEBHOOK_ROUTE, receive)])
    return app


@asynccontextmanager
async def webhook_listener(
    receive: Handler,
    max_bytes: int,
    host: str,
    port: int | None,
    header_timeout: float,
    max_connections: int,
) -> AsyncIterator[None]:
    """Serve the webhook on ``host:port`` while the block runs (nothing when port is None).

    This is the port that faces the internet, so it is guarded as the API's is: a connection
    that sends no complete headers within ``header_timeout`` (or idles that long between
    requests) is closed, and connections over ``max_connections`` are turned away at once.
    """
    if port is None:
        yield
        return
    runner = web.AppRunner(
        webhook_app(receive, max_bytes),
        access_log=None,
        shutdown_timeout=HTTP_SHUTDOWN_SECONDS,
        keepalive_timeout=header_timeout,  # also bounds the wait for headers
    )
    await runner.setup()
    try:
        await GuardedSite(runner, host, port, max_connections).start()
        log.info("serving the webhook alone", extra={"port": port})
        yield
    finally:
        await runner.cleanup()
