"""Fixtures shared by the whole suite: real Redis, both broker backends, a private namespace."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import redis as sync_redis
import redis.asyncio as redis

from shared.broker import Broker
from shared.context import dlq_keys
from shared.keys import Keys
from shared.memory_broker import MemoryBroker
from shared.redis_broker import RedisBroker, connect
from tests.cluster import RedisCluster, SentinelSetup
from tests.helpers import collect_dead_sockets
from tests.procs import NAMESPACES, RedisServer

REDIS_URL = os.environ.get("FLOODGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get(
    "FLOODGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session", autouse=True)
def _forget_process_namespaces() -> Iterator[None]:
    """After the session, delete the keys of every namespace a test process used."""
    yield
    for url, namespace in sorted(NAMESPACES):
        if not url.startswith(("redis://", "rediss://")):
            continue  # a private cluster or Sentinel setup, gone with its keys
        client = sync_redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        except sync_redis.exceptions.ConnectionError:
            pass  # a private redis-server that is gone took its keys with it
        finally:
            client.close()


@pytest.fixture
def dead_sockets() -> Iterator[None]:
    """For a test that kills a Redis Cluster primary, first among its fixtures so this runs
    after all of theirs: the connections redis-py kept to the dead node are collected quietly
    once nothing holds them (see tests.helpers.collect_dead_sockets)."""
    yield
    collect_dead_sockets()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own (no AOF), for a test that stops, fills or cuts off
    its Redis; removed with its keys afterwards."""
    server = RedisServer(appendonly=False)
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url() -> str:
    """The shared test Redis (``make test`` starts it if it is not running)."""
    return REDIS_URL


@pytest.fixture(scope="session")
def database_url() -> str:
    """The test PostgreSQL (``make test`` starts it and creates the database). A test that
    needs it fails, never skips, when it is not there."""
    parts = urlsplit(DATABASE_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2).close()
    except OSError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {parts.hostname}:{parts.port} ({exc}): run"
            " scripts/ensure-services.sh (make test does), which starts it, creates the"
            " database, or names the command that installs it",
            pytrace=False,
        )
    return DATABASE_URL


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own, so tests never see each other's keys."""
    return f"t{secrets.token_hex(6)}"


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


@pytest.fixture
async def redis_client(namespace: str) -> AsyncIterator[redis.Redis]:
    client = connect(REDIS_URL)
    yield client
    async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A private Redis Cluster (3 primaries, 3 replicas), started once for the session."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelSetup]:
    """A private Sentinel setup (1 primary, 1 replica, 3 sentinels), started once."""
    with SentinelSetup() as setup:
        yield setup


@pytest.fixture
async def cluster_client(redis_cluster: RedisCluster) -> AsyncIterator[redis.Redis]:
    """A cluster client (typed as the plain one it stands in for) on the session's cluster."""
    client = connect(redis_cluster.url)
    yield client
    await client.aclose()


@pytest.fixture(params=["redis", "memory", "cluster"])
async def broker(
    request: pytest.FixtureRequest, keys: Keys, redis_client: redis.Redis
) -> AsyncIterator[Broker]:
    """The same contract, run against Redis, the embedded backend and a Redis Cluster."""
    if request.param == "redis":
        yield RedisBroker(redis_client, dlq_keys(keys))
    elif request.param == "cluster":
        client = connect(request.getfixturevalue("redis_cluster").url)
        yield RedisBroker(client, dlq_keys(keys))
        await client.aclose()
    else:
        yield MemoryBroker(dlq_keys(keys))
