"""Process lifecycle shared by every service: HTTP site, background loops, graceful stop.

Stop order on SIGTERM or SIGINT: readiness goes false at once (so a load balancer stops sending
work), every service's loop stops reading and drains what it holds (a sender parks the messages
still waiting for a token and waits only for the Bot API calls already made) within
TELEGRAM_TIMEOUT + ``DRAIN_SLACK_SECONDS``, whatever is left is cancelled (and claimed later by
another replica), then the HTTP site closes (requests under way get ``HTTP_SHUTDOWN_SECONDS``)
and only then are the backend pools closed. With the default 20 s timeout the whole stop takes
at most about 30 s; the manifests give pods 40 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from shared.access import Authenticator
from shared.broker import BrokerUnavailable
from shared.context import Context
from shared.http_errors import json_errors
from shared.http_guard import GuardedSite
from shared.layout import LayoutMismatch, agree_on_layout
from shared.openapi import document
from shared.redis_broker import RedisBroker
from shared.web_auth import auth_middleware

log = logging.getLogger("floodgate.runtime")

DRAIN_SLACK_SECONDS = 5.0  # past the longest Bot API call, for the last commits
HTTP_SHUTDOWN_SECONDS = 3.0
MAX_BODY_BYTES = 16 * 1024 * 1024
LAYOUT_RETRY_S = 1.0
LAYOUT_CHECK_S = 5.0  # how often a running process checks the stored layout is still its own


class Service(Protocol):
    """One floodgate service inside a process."""

    name: str

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        """HTTP routes the service serves besides /healthz, /readyz and /metrics."""

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then drain and return."""


def build_app(
    ctx: Context,
    services: Sequence[Service],
    stopping: asyncio.Event,
    agreed: asyncio.Event | None = None,
) -> web.Application:
    """One aiohttp app with the common routes and every service's own, behind the key check."""
    auth = Authenticator(ctx.keystore, ctx.admin_key, enabled=ctx.settings.auth == "on")
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[json_errors, auth_middleware(auth, ctx.registry)],
    )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "services": [s.name for s in services]})

    async def readyz(_: web.Request) -> web.Response:
        if stopping.is_set():
            return web.json_response({"ready": False, "reason": "shutting down"}, status=503)
        if agreed is not None and not agreed.is_set():
            reason = "the pipeline's stored layout is not checked yet"
            return web.json_response({"ready": False, "reason": reason}, status=503)
        try:
            await ctx.broker.ping()
        except BrokerUnavailable as exc:
            return web.json_response({"ready": False, "reason": str(exc)}, status=503)
        return web.json_response({"ready": True, "backend": ctx.backend})

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(ctx.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    description = document([s.name for s in services])

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(description)

    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/openapi.json", openapi),
        ]
    )
    for service in services:
        app.add_routes(service.routes())
    return app


async def serve(
    ctx: Context,
    services: Sequence[Service],
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve until ``stop`` is set (by default: until SIGTERM or SIGINT), then stop in order."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    s = ctx.settings
    runner = web.AppRunner(
        build_app(ctx, services, stop, agreed := asyncio.Event()),
        access_log=None,
        shutdown_timeout=HTTP_SHUTDOWN_SECONDS,
        keepalive_timeout=s.http_header_timeout,  # also bounds the wait for headers
    )
    await runner.setup()
    changed = False
    try:
        await GuardedSite(runner, host, port, s.http_max_connections).start()
        log.info(
            "serving",
            extra={"services": [s.name for s in services], "port": port, "backend": ctx.backend},
        )
        if ctx.settings.auth == "off":
            log.warning(
                "FLOODGATE_AUTH=off: every route is served without a key (development only)"
            )
        if not await _layout_agreed(ctx, stop):
            return 2
        agreed.set()  # ready from here: no request is served under another layout
        async with asyncio.TaskGroup() as tg:
            watch = tg.create_task(_watch_layout(ctx, stop))
            await _run_services(services, stop, ctx.settings.telegram_timeout + DRAIN_SLACK_SECONDS)
            changed = watch.done() and watch.result()
            watch.cancel()
    finally:
        await runner.cleanup()
        await ctx.close()
        log.info("stopped")
    return 2 if changed else 0


async def _layout_agreed(ctx: Context, stop: asyncio.Event) -> bool:
    """Whether this process splits the pipeline as the layout stored in Redis does (storing
    it on a first start); waits while Redis is away, since no work can start before."""
    broker = ctx.broker
    if not isinstance(broker, RedisBroker):
        return True
    warned = False
    while not stop.is_set():
        try:
            await agree_on_layout(broker.client, ctx.keys)
            return True
        except LayoutMismatch as exc:
            log.error("refusing to start: %s", exc)
            return False
        except (BrokerUnavailable, RedisError) as exc:
            if not warned:
                log.warning(
                    "cannot read the pipeline's layout yet, waiting", extra={"reason": str(exc)}
                )
                warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LAYOUT_RETRY_S)
    return True


async def _watch_layout(ctx: Context, stop: asyncio.Event) -> bool:
    """Stop this process (True) once the stored layout is no longer its own: after
    ``floodgate partitions set``, a process left running (an ingest, say) would go on using
    partitions that no longer are read. A layout lost with Redis's data is stored again."""
    broker = ctx.broker
    if not isinstance(broker, RedisBroker):
        return False
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LAYOUT_CHECK_S)
        if stop.is_set():
            break
        try:
            await agree_on_layout(broker.client, ctx.keys)
        except LayoutMismatch as exc:
            log.error("stopping: the layout changed under this process: %s", exc)
            stop.set()
            return True
        except (BrokerUnavailable, RedisError) as exc:
            log.debug("layout not checked", extra={"reason": str(exc)})
    return False


async def _run_services(
    services: Sequence[Service], stop: asyncio.Event, drain_seconds: float
) -> None:
    async def watchdog() -> None:
        await stop.wait()
        log.info("stopping: draining", extra={"deadline_s": drain_seconds})
        await asyncio.sleep(drain_seconds)
        raise TimeoutError("drain deadline passed")

    try:
        async with asyncio.TaskGroup() as tg:
            guard = tg.create_task(watchdog())
            loops = [tg.create_task(s.run(stop)) for s in services]
            await asyncio.gather(*loops)
            guard.cancel()
    except* TimeoutError:
        log.warning("drain deadline passed; in-flight work is left to be claimed")
