"""Who is calling: API keys checked against the key store, cached per process for at most 5 s.

A key's record is read from the store at most once per ``CACHE_SECONDS`` per process, so the
check adds no round trip to a request on a cache hit, and a revoked key stops working on every
replica within ``CACHE_SECONDS``. Expiry is checked against the cached record on every request,
so an expired key is refused at once.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from shared.api_keys import ADMIN_KEY_ID, ApiKey, KeyStore, Role, secret_matches, split_key
from shared.models import Priority

CACHE_SECONDS = 5.0
MAX_CACHED = 10_000
BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, as its key describes it."""

    key_id: str | None
    role: Role
    bots: frozenset[int] = frozenset()
    rate: int | None = None
    max_priority: Priority | None = None

    def may_send_as(self, bot_id: int) -> bool:
        """A key that lists bots may send only as them; one that lists none, as any."""
        return not self.bots or bot_id in self.bots

    def owns(self, record_key: str | None) -> bool:
        """May read a message recorded under ``record_key``: producers only their own."""
        return self.role is not Role.PRODUCER or record_key == self.key_id


# Every request when FLOODGATE_AUTH=off: no key, admin rights, nothing scoped.
UNCHECKED = Principal(key_id=None, role=Role.ADMIN)
ADMIN = Principal(key_id=ADMIN_KEY_ID, role=Role.ADMIN)


class Unauthenticated(Exception):
    """No key, or one that is not (or no longer) valid: answered 401."""


def principal_for(key: ApiKey) -> Principal:
    """What a stored key may do."""
    return Principal(key.id, key.role, frozenset(key.bots), key.rate, key.max_priority)


class Authenticator:
    """Checks ``Authorization: Bearer <key>`` against the admin key and the key store."""

    def __init__(self, store: KeyStore, admin_key: str | None, *, enabled: bool = True) -> None:
        self._store = store
        self._admin = admin_key.encode() if admin_key else None
        self.enabled = enabled
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def check(self, header: str | None) -> Principal:
        """The caller named by an Authorization header; raises ``Unauthenticated``.

        May raise ``BrokerUnavailable`` when the key is not cached and the store is away.
        """
        if not self.enabled:
            return UNCHECKED
        if not header or header[: len(BEARER)].lower() != BEARER:
            raise Unauthenticated("missing Authorization: Bearer <key>")
        token = header[len(BEARER) :].strip()
        # a header may carry any bytes (read as surrogate escapes): never an error, just no match
        given = token.encode("utf-8", "surrogateescape")
        if self._admin is not None and hmac.compare_digest(given, self._admin):
            return ADMIN
        parts = split_key(token)
        if parts is None:
            raise Unauthenticated("unknown, expired or revoked key")
        key_id, secret = parts
        key = await self._lookup(key_id)
        if key is None or not secret_matches(key, secret) or not key.usable(time.time()):
            raise Unauthenticated("unknown, expired or revoked key")
        return principal_for(key)

    async def _lookup(self, key_id: str) -> ApiKey | None:
        cached = self._cache.get(key_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        wall = time.time()
        key = await self._store.find(key_id, wall)
        if len(self._cache) >= MAX_CACHED:
            self._forget_stale(now)
        self._cache[key_id] = (now, key)
        if key is not None:
            # written at most once per CACHE_SECONDS per process: last use is that precise
            await self._store.touch(key_id, wall)
        return key

    def _forget_stale(self, now: float) -> None:
        self._cache = {k: v for k, v in self._cache.items() if now - v[0] < CACHE_SECONDS}
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
