"""The key stores (Redis, PostgreSQL's api_sessions, memory) against one contract, and the
per-key quota (Redis, memory)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
import redis.asyncio as redis

from shared.api_keys import ApiKey, KeyStore, Role, hash_secret, new_key, secret_matches, split_key
from shared.key_rate import KeyRate
from shared.keys import Keys
from shared.memory_key_rate import MemoryKeyRate
from shared.memory_keystore import MemoryKeyStore
from shared.migrations import migrate
from shared.models import Priority
from shared.postgres_keystore import PostgresKeyStore
from shared.redis_key_rate import RedisKeyRate
from shared.redis_keystore import RedisKeyStore
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def private_database() -> AsyncIterator[str]:
    """A PostgreSQL database of its own, migrated, dropped afterwards."""
    name = f"fg_keys_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(DATABASE_URL)
    await admin.execute(f"CREATE DATABASE {name}")
    url = DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        await conn.close()
        yield url
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture(params=["redis", "postgres", "memory"])
async def store(
    request: pytest.FixtureRequest, keys: Keys, redis_client: redis.Redis
) -> AsyncIterator[KeyStore]:
    """One contract, every backend."""
    if request.param == "postgres":
        async with private_database() as url:
            made = PostgresKeyStore(url)
            yield made
            await made.close()
        return
    yield RedisKeyStore(redis_client, keys) if request.param == "redis" else MemoryKeyStore()


def test_a_key_is_its_id_and_a_secret_of_which_only_the_hash_is_kept() -> None:
    token, key = new_key(Role.PRODUCER, name="shop", bots=[2, 1, 2], rate=5)
    key_id, secret = split_key(token) or ("", "")
    assert token.startswith(f"fg_{key.id}_")
    assert (key_id, key.bots) == (key.id, (1, 2))
    assert key.secret_hash == hash_secret(secret)
    assert secret not in repr(key)
    assert secret not in str(key.describe())
    assert secret_matches(key, secret)
    assert not secret_matches(key, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert split_key("Bearer-nonsense") is None
    assert split_key("fg__x") is None


async def test_add_find_list_revoke_touch(store: KeyStore) -> None:
    now = time.time()
    _, viewer = new_key(Role.VIEWER, name="dash")
    _, producer = new_key(
        Role.PRODUCER,
        name="shop",
        bots=[111, 222],
        rate=10,
        expires_at=now + 3600,
        max_priority=Priority.NORMAL,
    )
    await store.add(viewer)
    await store.add(producer)
    found = await store.find(producer.id, now)
    assert found is not None
    assert (found.role, found.bots, found.rate, found.name) == (
        Role.PRODUCER,
        (111, 222),
        10,
        "shop",
    )
    assert found.max_priority is Priority.NORMAL
    assert found.expires_at == pytest.approx(now + 3600, abs=0.01)
    assert found.secret_hash == producer.secret_hash
    never = await store.find(viewer.id, now)
    assert never is not None
    assert never.expires_at is None
    assert await store.find("nosuchid", now) is None

    await store.touch(producer.id, now + 1)
    assert [k.id for k in await store.list()] == [viewer.id, producer.id]
    listed = {k.id: k for k in await store.list()}
    assert listed[producer.id].last_used_at == pytest.approx(now + 1, abs=0.01)
    assert listed[viewer.id].last_used_at is None

    assert await store.revoke(producer.id)
    assert not await store.revoke("nosuchid")
    assert await store.find(producer.id, now) is None
    assert [k.revoked for k in await store.list()] == [False, True]


async def test_an_expired_key_is_not_found(store: KeyStore) -> None:
    now = time.time()
    _, key = new_key(Role.PRODUCER, expires_at=now + 60)
    await store.add(key)
    assert await store.find(key.id, now) is not None
    assert await store.find(key.id, now + 61) is None
    assert [k.id for k in await store.list()] == [key.id]


@pytest.fixture(params=["redis", "memory"])
def key_rate(request: pytest.FixtureRequest, keys: Keys, redis_client: redis.Redis) -> KeyRate:
    if request.param == "redis":
        return RedisKeyRate(redis_client, keys)
    return MemoryKeyRate()


async def test_quota_takes_what_fits_and_refusals_cost_nothing(key_rate: KeyRate) -> None:
    first = await key_rate.take("k1", 10, 4)
    assert (first.taken, first.wait_ms) == (4, 0)
    second = await key_rate.take("k1", 10, 10)
    assert second.taken == 6
    assert 0 < second.wait_ms <= 1000
    assert second.retry_after == 1
    refused = [await key_rate.take("k1", 10, 1) for _ in range(20)]
    assert [g.taken for g in refused] == [0] * 20
    assert (await key_rate.take("k2", 10, 3)).taken == 3  # another key, another quota
    await key_rate.give_back("k1", second)
    assert (await key_rate.take("k1", 10, 10)).taken == 6


async def test_quota_frees_a_place_when_it_leaves_the_window(key_rate: KeyRate) -> None:
    assert (await key_rate.take("k", 3, 3)).taken == 3
    full = await key_rate.take("k", 3, 1)
    assert full.taken == 0
    await asyncio.sleep(full.wait_ms / 1000 + 0.05)  # the wait the quota itself announced
    assert (await key_rate.take("k", 3, 3)).taken == 3


def test_describe_never_shows_the_hash() -> None:
    _, key = new_key(Role.ADMIN)
    assert "secret_hash" not in key.describe()
    assert isinstance(key, ApiKey)
