"""Versioned SQL migrations of the message store, applied in order, each once.

Files ``shared/migrations/NNN_name.sql`` are applied in one transaction each, under an advisory
lock so several processes starting at once do not race; ``schema_migrations`` records them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger("floodgate.store")

LOCK_KEY = 0x466C6F6F64  # "Flood": one advisory lock for every floodgate migrator


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with floodgate, oldest first."""
    found = []
    for item in resources.files("shared").joinpath("migrations").iterdir():
        if item.name.endswith(".sql"):
            number, _, rest = item.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), item.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply what is missing; return the versions applied now."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in available():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info(
                "migration applied",
                extra={"version": migration.version, "migration": migration.name},
            )
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return applied_now


async def migrated_pool(url: str, max_size: int = 4) -> asyncpg.Pool:
    """A small pool on ``url`` with the schema migrated. A pool whose migration fails (a
    read-only standby, a role without CREATE) is closed before the error goes on: a caller
    that retries every few seconds would otherwise hold one more pool's connections each
    time, until PostgreSQL has none left."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, timeout=10)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
    except BaseException:
        await pool.close()
        raise
    return pool
