"""The store behind the Redis marks: was an older message answered a mention of the bot?

Ingest marks mentions and replies to a bot in Redis for 24 h, which covers nearly every answer.
For an answer to an older message it asks the message store (the reply-lookup index). The store
is optional and never blocks ingest: while it is away the answer keeps its normal priority.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from shared import store

log = logging.getLogger("floodgate.ingest")

LOOKUP_TIMEOUT_S = 0.5


class StoreLookup:
    """Reply lookups in PostgreSQL over a small pool opened on first use."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: asyncpg.Pool | None = None

    async def urgent(self, asks: list[tuple[int, int, int]]) -> list[bool]:
        """For each (bot, chat, Telegram message id): did that message mention or reply to the
        bot? False for what the store does not know or cannot tell now."""
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                pool = await self._connect()
                async with pool.acquire() as conn:
                    found = [await store.reply_target(conn, *ask) for ask in asks]
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("reply lookup in the store failed", extra={"reason": str(exc)})
            return [False] * len(asks)
        return [target is not None and target.urgent for target in found]

    async def _connect(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self._url, min_size=1, max_size=4)
        return self._pool

    async def close(self) -> None:
        """Close the pool, if one was opened."""
        if self._pool is not None:
            await self._pool.close()
