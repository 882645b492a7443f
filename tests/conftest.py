"""Fixtures shared by the whole suite: real Redis, both broker backends, a private namespace."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from shared.broker import Broker
from shared.context import dlq_keys
from shared.keys import Keys
from shared.memory_broker import MemoryBroker
from shared.redis_broker import RedisBroker, connect

REDIS_URL = os.environ.get("FLOODGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    """The shared test Redis (``make test`` starts it if it is not running)."""
    return REDIS_URL


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


@pytest.fixture(params=["redis", "memory"])
async def broker(request: pytest.FixtureRequest, keys: Keys, redis_client: redis.Redis) -> Broker:
    """The same contract, run against Redis and against the embedded backend."""
    if request.param == "redis":
        return RedisBroker(redis_client, dlq_keys(keys))
    return MemoryBroker(dlq_keys(keys))
