"""``floodgate db migrate``: bring the message store's schema up to date."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from shared.logs import setup_logging
from shared.migrations import available, migrate
from shared.settings import CommonSettings


async def _migrate(url: str) -> list[int]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def main(args: argparse.Namespace) -> int:
    """Apply missing migrations; print what was applied."""
    settings = CommonSettings()
    setup_logging(settings.log_level, "text")
    if not settings.database_url:
        print("floodgate db: DATABASE_URL is not set (postgresql://user@host/db)", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(_migrate(settings.database_url))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"floodgate db: cannot migrate: {exc}", file=sys.stderr)
        return 1
    latest = max((m.version for m in available()), default=0)
    print(f"applied {applied or 'nothing'}; schema at version {latest}")
    return 0
