"""What every service gets at start: settings, key names, backends, bots and the registry."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from shared import redis_broker
from shared.bots import parse_bots
from shared.broker import Broker, DlqKeys
from shared.keys import Keys
from shared.limiter import Limiter, Policy
from shared.memory_broker import MemoryBroker
from shared.memory_limiter import MemoryLimiter
from shared.redis_limiter import RedisLimiter
from shared.settings import CommonSettings

log = logging.getLogger("floodgate")


class ConfigError(Exception):
    """The configuration cannot work; the message says what to change."""


@dataclass
class Context:
    """Built once per process in ``main()`` and passed to every service in it."""

    settings: CommonSettings
    keys: Keys
    broker: Broker
    limiter: Limiter
    bots: dict[int, str]
    backend: str
    consumer: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    async def close(self) -> None:
        """Finish the limiter's moves, then release backend connections."""
        await self.limiter.flush()
        await self.broker.close()


IN_FLIGHT_SLACK_S = 10.0  # past the longest wait for a token and the longest call


def policy_from(settings: CommonSettings) -> Policy:
    """The limiter's policy from the environment."""
    return Policy(
        bot_rate=settings.bot_rate,
        chat_rate=settings.chat_rate,
        group_rate=settings.group_rate,
        margin_s=settings.limit_margin,
        overrides=settings.rate_overrides(),
        window_scale=settings.window_scale,
        in_flight_s=settings.telegram_timeout
        + settings.telegram_rate_limit_wait
        + IN_FLIGHT_SLACK_S,
    )


def dlq_keys(keys: Keys) -> DlqKeys:
    """The dead-letter queue's keys."""
    return DlqKeys(keys.dlq_index, keys.dlq_payloads, keys.dlq_meta)


def consumer_name() -> str:
    """This process's consumer name: ``FLOODGATE_CONSUMER``, else host and pid.

    A stable name (a StatefulSet pod name, say) lets a restarted process re-read its own pending
    entries; any name works, because other consumers claim what a dead one left behind.
    """
    return os.environ.get("FLOODGATE_CONSUMER") or f"{socket.gethostname()}-{os.getpid()}"


def build_context(settings: CommonSettings, *, allow_memory: bool) -> Context:
    """Connect to Redis, or build the embedded backend when allowed and no REDIS_URL is set."""
    keys = Keys(settings.namespace)
    try:
        bots = parse_bots(settings.bots)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    policy = policy_from(settings)
    if settings.redis_url:
        client = redis_broker.connect(
            settings.redis_url,
            max_connections=settings.redis_pool_size,
            pool_wait=settings.redis_pool_wait,
        )
        broker: Broker = redis_broker.RedisBroker(client, dlq_keys(keys))
        limiter: Limiter = RedisLimiter(client, keys, policy)
        backend = "redis"
    elif allow_memory:
        broker, limiter, backend = MemoryBroker(dlq_keys(keys)), MemoryLimiter(policy), "memory"
    else:
        raise ConfigError(
            "REDIS_URL is not set: a single service needs Redis "
            "(e.g. REDIS_URL=redis://127.0.0.1:6379/0); only 'floodgate run all' can run "
            "on the embedded in-memory backend"
        )
    return Context(settings, keys, broker, limiter, bots, backend, consumer_name())
