"""Keys kept in PostgreSQL, as rows of ``api_sessions`` (with ``DATABASE_URL``).

The lookup is the store's session query (``token_id``, ``is_active``, ``expires_at``, served by
``ix_sessions_token_active_expires``); a key that never expires has ``expires_at = 'infinity'``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from shared.api_keys import ApiKey, Role
from shared.broker import BrokerUnavailable
from shared.migrations import migrated_pool
from shared.models import Priority

FIND = """
SELECT token_id, secret_hash, role, name, bots, rate, max_priority, is_active,
       CASE WHEN expires_at = 'infinity' THEN NULL ELSE expires_at END AS expires_at,
       created_at, last_used_at
FROM api_sessions
WHERE token_id = $1 AND is_active AND expires_at > to_timestamp($2)
LIMIT 1
"""
INSERT = """
INSERT INTO api_sessions (token_id, secret_hash, role, name, bots, rate, max_priority,
                          is_active, expires_at, created_at, last_used_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9::timestamptz, 'infinity'), $10, $11)
"""
LIST = """
SELECT token_id, secret_hash, role, name, bots, rate, max_priority, is_active,
       CASE WHEN expires_at = 'infinity' THEN NULL ELSE expires_at END AS expires_at,
       created_at, last_used_at
FROM api_sessions WHERE secret_hash <> '' ORDER BY created_at, id
"""
REVOKE = "UPDATE api_sessions SET is_active = false WHERE token_id = $1 AND secret_hash <> ''"
TOUCH = "UPDATE api_sessions SET last_used_at = to_timestamp($2) WHERE token_id = $1"
ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _seconds(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _row(row: Any) -> ApiKey:
    return ApiKey(
        id=row["token_id"],
        role=Role(row["role"]),
        secret_hash=row["secret_hash"],
        name=row["name"],
        bots=tuple(row["bots"]),
        rate=row["rate"],
        expires_at=_seconds(row["expires_at"]),
        max_priority=Priority(row["max_priority"]) if row["max_priority"] else None,
        created_at=_seconds(row["created_at"]) or 0.0,
        last_used_at=_seconds(row["last_used_at"]),
        revoked=not row["is_active"],
    )


class PostgresKeyStore:
    """Keys as rows of ``api_sessions``, over a small pool opened (and migrated) on first use."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await migrated_pool(self._url)
        return self._pool

    async def _run(self, query: str, *args: Any) -> list[Any]:
        try:
            pool = await self._connect()
            async with pool.acquire() as conn:
                rows: list[Any] = await conn.fetch(query, *args)
                return rows
        except ERRORS as exc:
            raise BrokerUnavailable(f"key store: {type(exc).__name__}") from exc

    async def add(self, key: ApiKey) -> None:
        """Store a new key."""
        await self._run(
            INSERT,
            key.id,
            key.secret_hash,
            key.role.value,
            key.name,
            list(key.bots),
            key.rate,
            key.max_priority.value if key.max_priority else None,
            not key.revoked,
            _time(key.expires_at),
            _time(key.created_at),
            _time(key.last_used_at),
        )

    async def find(self, key_id: str, now: float) -> ApiKey | None:
        """The key with this id, if usable at ``now``."""
        rows = await self._run(FIND, key_id, now)
        return _row(rows[0]) if rows else None

    async def list(self) -> Sequence[ApiKey]:
        """Every key, oldest first."""
        return [_row(r) for r in await self._run(LIST)]

    async def revoke(self, key_id: str) -> bool:
        """Mark the key inactive; False if there is no such key."""
        try:
            pool = await self._connect()
            async with pool.acquire() as conn:
                status: str = await conn.execute(REVOKE, key_id)
        except ERRORS as exc:
            raise BrokerUnavailable(f"key store: {type(exc).__name__}") from exc
        return not status.endswith(" 0")

    async def touch(self, key_id: str, when: float) -> None:
        """Record the key's last use."""
        await self._run(TOUCH, key_id, when)

    async def close(self) -> None:
        """Close the pool, if one was opened."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
