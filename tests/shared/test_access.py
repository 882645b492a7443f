"""The key check: the admin key, stored keys, the per-process cache and its bounds."""

from __future__ import annotations

import time

import pytest

from shared import access
from shared.access import ADMIN, UNCHECKED, Authenticator, Unauthenticated
from shared.api_keys import ApiKey, Role, new_key
from shared.memory_keystore import MemoryKeyStore

ADMIN_KEY = "a" * 40


class CountingStore(MemoryKeyStore):
    """The memory store, counting its lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.finds = 0

    async def find(self, key_id: str, now: float) -> ApiKey | None:
        self.finds += 1
        return await super().find(key_id, now)


async def test_a_cached_key_costs_no_lookup_until_the_cache_lapses(monkeypatch) -> None:
    store = CountingStore()
    token, record = new_key(Role.PRODUCER, bots=[1])
    await store.add(record)
    auth = Authenticator(store, ADMIN_KEY)
    for _ in range(100):
        principal = await auth.check(f"Bearer {token}")
    assert (principal.key_id, principal.role, principal.bots) == (record.id, Role.PRODUCER, {1})
    assert store.finds == 1
    later = time.monotonic() + access.CACHE_SECONDS
    monkeypatch.setattr(access.time, "monotonic", lambda: later)
    await auth.check(f"bearer {token}")
    assert store.finds == 2
    assert (await store.list())[0].last_used_at is not None


async def test_refusals() -> None:
    store = MemoryKeyStore()
    token, record = new_key(Role.VIEWER, expires_at=time.time() - 1)
    await store.add(record)
    auth = Authenticator(store, ADMIN_KEY)
    for header in (
        None,
        "",
        "Basic abc",
        f"Bearer {token}",
        "Bearer fg_x_y",
        f"Bearer {ADMIN_KEY}b",
    ):
        with pytest.raises(Unauthenticated):
            await auth.check(header)
    assert await auth.check(f"Bearer {ADMIN_KEY}") is ADMIN
    assert await Authenticator(store, None, enabled=False).check(None) is UNCHECKED
    with pytest.raises(Unauthenticated):
        await Authenticator(store, None).check("Bearer ")  # no admin key: an empty one is no key


async def test_the_cache_stays_bounded(monkeypatch) -> None:
    monkeypatch.setattr(access, "MAX_CACHED", 50)
    auth = Authenticator(MemoryKeyStore(), None)
    for i in range(500):
        with pytest.raises(Unauthenticated):
            await auth.check(f"Bearer fg_{i:012x}_{'s' * 43}")
    assert len(auth._cache) <= 50


async def test_a_string_that_cannot_be_a_key_costs_no_lookup() -> None:
    store = CountingStore()
    token, record = new_key(Role.PRODUCER)
    await store.add(record)
    auth = Authenticator(store, ADMIN_KEY)
    key_id = record.id
    for header in (
        "Bearer fg_x_y",
        f"Bearer fg_{key_id.upper()}_{'s' * 43}",
        f"Bearer fg_{key_id}_{'s' * 42}",
        f"Bearer fg_{key_id}_{'s' * 43}!",
        f"Bearer fg_{key_id}_{'s' * 10_000}",
    ):
        with pytest.raises(Unauthenticated):
            await auth.check(header)
    assert store.finds == 0
    assert (await auth.check(f"Bearer {token}")).key_id == key_id
    assert store.finds == 1
