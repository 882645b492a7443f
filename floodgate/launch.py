"""Starting services in this process: one, or all four on one port."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Sequence

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.scheduler.app import SchedulerService
from services.scheduler.settings import SchedulerSettings
from services.sender.app import SenderService
from services.sender.settings import SenderSettings
from services.stats.app import StatsService
from services.stats.settings import StatsSettings
from shared.context import ConfigError, Context, build_context
from shared.logs import setup_logging
from shared.runtime import Service, serve
from shared.settings import CommonSettings

SERVICE_NAMES = ("ingest", "scheduler", "sender", "stats")
# A young collection once this many more container objects are alive than at the last one
# (Python's default is 700); the older generations keep their default ratios. Garbage in
# reference cycles (a failed call's frame, say) waits for that long: 20,000 bounds it to a few
# megabytes, at 2% of the sender's CPU (50,000 took 0.5%, 10,000 3.7%).
YOUNG_COLLECTION_OBJECTS = 20_000
DEFAULT_PORTS = {"ingest": 8080, "scheduler": 8081, "sender": 8082, "stats": 8083, "all": 8080}

log = logging.getLogger("floodgate")


def build_services(ctx: Context, names: Sequence[str]) -> list[Service]:
    """Instances of the named services, each with its own settings from the environment."""
    made: list[Service] = []
    for name in names:
        match name:
            case "ingest":
                made.append(IngestService(ctx, IngestSettings()))
            case "scheduler":
                made.append(SchedulerService(ctx, SchedulerSettings()))
            case "sender":
                made.append(SenderService(ctx, SenderSettings()))
            case "stats":
                made.append(StatsService(ctx, StatsSettings()))
            case _:
                raise ConfigError(
                    f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}"
                )
    return made


def tune_collector() -> None:
    """Set the cycle collector for a long-running service. What the process has built by now
    (modules, classes, settings) lives as long as it does; frozen, it is no longer walked by
    every full collection. Nearly everything made per message is freed by reference counting,
    so young collections are needed far less often than Python's default of every 700 new
    objects. In bench/pipeline_throughput.py (20,000 messages) the collector took 1.86 s of
    the sender's 10.2 s of CPU before, 0.12 s of 7.3 s after."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_OBJECTS, middle, old)


def resolve_port(target: str, port: int | None, settings: CommonSettings) -> int:
    """``--port``, else ``PORT``, else the service's default."""
    if port is not None:
        return port
    return settings.port or DEFAULT_PORTS[target]


async def _main(target: str, host: str, port: int) -> int:
    settings = CommonSettings()
    names = SERVICE_NAMES if target == "all" else (target,)
    ctx = build_context(settings, allow_memory=target == "all")
    if ctx.backend == "memory":
        log.info(
            "no REDIS_URL: running on the embedded in-memory backend (nothing survives a restart)"
        )
    if ctx.backend == "memory" and settings.auth == "on" and ctx.admin_key is None:
        log.warning(
            "no FLOODGATE_ADMIN_KEY on the embedded backend: no key can call the API"
            " (set one, or FLOODGATE_AUTH=off on a laptop)"
        )
    if not ctx.bots and "ingest" in names:
        log.warning("FLOODGATE_BOTS is empty: every send request will answer 404 unknown bot")
    return await serve(ctx, build_services(ctx, names), host, port)


def run(target: str, host: str | None = None, port: int | None = None) -> int:
    """Run ``target`` (a service name or ``all``) until SIGTERM; return the exit code."""
    settings = CommonSettings()
    setup_logging(settings.log_level, settings.log_format)
    tune_collector()
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms

        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(
            _main(
                target,
                host or settings.host,
                resolve_port(target, port, settings),
            )
        )
    except ConfigError as exc:
        print(f"floodgate: {exc}", file=sys.stderr)
        return 2
