"""What every service gets at start: settings, key names, backends, bots and the registry."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field

import redis.asyncio as redis
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from shared import redis_broker
from shared.api_keys import MIN_ADMIN_KEY_CHARS, KeyStore
from shared.bots import parse_bots
from shared.broker import Broker, DlqKeys
from shared.key_rate import KeyRate
from shared.keys import Keys
from shared.limiter import Limiter, Policy
from shared.memory_broker import MemoryBroker
from shared.memory_key_rate import MemoryKeyRate
from shared.memory_keystore import MemoryKeyStore
from shared.memory_limiter import MemoryLimiter
from shared.postgres_keystore import PostgresKeyStore
from shared.redis_key_rate import RedisKeyRate
from shared.redis_keystore import RedisKeyStore
from shared.redis_limiter import RedisLimiter
from shared.settings import CommonSettings

log = logging.getLogger("floodgate")


def process_registry() -> CollectorRegistry:
    """A registry that already holds the process's own series: CPU seconds, resident memory
    and open files (``process_*``), the Python version, and the cycle collector's passes by
    generation (``python_gc_*``), which say whether the collector costs CPU."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


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
    registry: CollectorRegistry = field(default_factory=process_registry)
    keystore: KeyStore = field(default_factory=MemoryKeyStore)
    key_rate: KeyRate = field(default_factory=MemoryKeyRate)

    async def close(self) -> None:
        """Finish the limiter's moves, then release backend connections."""
        await self.limiter.flush()
        await self.keystore.close()
        await self.broker.close()

    @property
    def admin_key(self) -> str | None:
        """``FLOODGATE_ADMIN_KEY``, if set."""
        secret = self.settings.admin_key
        return secret.get_secret_value() if secret is not None else None


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
    """The dead-letter queue's keys (of one partition, or of the only one)."""
    if keys.partition is None:
        keys = keys.of_partition(0)
    return DlqKeys(keys.dlq_index, keys.dlq_payloads, keys.dlq_meta)


def consumer_name(settings: CommonSettings) -> str:
    """This process's consumer name: ``FLOODGATE_CONSUMER``, else host and pid.

    A stable name (a StatefulSet pod name, say) lets a restarted process re-read its own pending
    entries; any name works, because other consumers claim what a dead one left behind.
    """
    return settings.consumer or f"{socket.gethostname()}-{os.getpid()}"


def build_keystore(settings: CommonSettings, client: redis.Redis | None) -> KeyStore:
    """Where API keys live: PostgreSQL with DATABASE_URL, else Redis, else this process."""
    if settings.database_url:
        return PostgresKeyStore(settings.database_url)
    if client is not None:
        return RedisKeyStore(client, Keys(settings.namespace))
    return MemoryKeyStore()


def check_admin_key(settings: CommonSettings) -> None:
    """Refuse an admin key too short to be a secret (without repeating it)."""
    key = settings.admin_key
    if key is not None and len(key.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
        raise ConfigError(
            f"FLOODGATE_ADMIN_KEY must be at least {MIN_ADMIN_KEY_CHARS} characters"
            " (e.g. from: openssl rand -hex 32)"
        )


def build_context(settings: CommonSettings, *, allow_memory: bool) -> Context:
    """Connect to Redis, or build the embedded backend when allowed and no REDIS_URL is set."""
    # the embedded backend is one process: partitions would only add work
    partitions = settings.pipeline_partitions if settings.redis_url else 1
    keys = Keys(settings.namespace, partitions)
    try:
        bots = parse_bots(settings.bots)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    check_admin_key(settings)
    policy = policy_from(settings)
    client: redis.Redis | None = None
    if settings.redis_url:
        client = redis_broker.connect(
            settings.redis_url,
            max_connections=settings.redis_pool_size,
            pool_wait=settings.redis_pool_wait,
        )
        broker: Broker = redis_broker.RedisBroker(
            client, dlq_keys(keys), settings.replication_timeout_ms
        )
        limiter: Limiter = RedisLimiter(client, keys, policy)
        key_rate: KeyRate = RedisKeyRate(client, keys)
        backend = "redis"
    elif settings.durability == "replicated":
        raise ConfigError("FLOODGATE_DURABILITY=replicated needs REDIS_URL (a Redis with replicas)")
    elif allow_memory:
        broker, limiter, backend = MemoryBroker(dlq_keys(keys)), MemoryLimiter(policy), "memory"
        key_rate = MemoryKeyRate()
    else:
        raise ConfigError(
            "REDIS_URL is not set: a single service needs Redis "
            "(e.g. REDIS_URL=redis://127.0.0.1:6379/0); only 'floodgate run all' can run "
            "on the embedded in-memory backend"
        )
    return Context(
        settings,
        keys,
        broker,
        limiter,
        bots,
        backend,
        consumer_name(settings),
        keystore=build_keystore(settings, client),
        key_rate=key_rate,
    )
