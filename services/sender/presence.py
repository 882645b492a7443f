"""Which senders are alive: each beats in Redis every second, and learns how many others do.

While Redis is up this costs one small script call a second per sender. What it buys: when
Redis goes away, every sender knows how many were sending just before, and keeps to that share
of each bot's rate on its own (``shared.fallback_limiter``), without a setting that must be kept
equal to the number of replicas by hand.
"""

from __future__ import annotations

import contextlib

import redis.asyncio as redis

from shared.redis_batch import UNREACHABLE, unavailable
from shared.scripts import lua

BEAT_EVERY_S = 1.0
ALIVE_FOR_MS = 5000  # a sender that has not beaten for this long counts as gone


class Presence:
    """This sender's beat in the senders' set."""

    def __init__(self, client: redis.Redis, key: str, name: str) -> None:
        self._client = client
        self._script = client.register_script(lua("presence"))
        self._key = key
        self._name = name

    async def beat(self) -> list[str]:
        """Say this sender is alive; the names of the senders alive, this one included."""
        return await self._call("beat")

    async def leave(self) -> None:
        """This sender stops: it no longer counts (best effort; else it lapses)."""
        with contextlib.suppress(Exception):
            await self._call("leave")

    async def _call(self, mode: str) -> list[str]:
        try:
            alive = await self._script(keys=[self._key], args=[self._name, ALIVE_FOR_MS, mode])
        except UNREACHABLE as exc:
            raise await unavailable(self._client, exc) from exc
        return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in alive)
