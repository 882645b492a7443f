"""Which replicas of a service are alive: each beats in Redis every second, and learns which
others do.

While Redis is up this costs one small script call a second per replica. What it buys: when
Redis goes away, every sender knows how many were sending just before, and keeps to that share
of each bot's rate on its own (``shared.fallback_limiter``), without a setting that must be kept
equal to the number of replicas by hand; and the replicas of a service share the pipeline's
partitions out among themselves (``share``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import redis.asyncio as redis

from shared.redis_batch import UNREACHABLE, unavailable
from shared.scripts import lua

BEAT_EVERY_S = 1.0
ALIVE_FOR_MS = 5000  # a replica that has not beaten for this long counts as gone


def share(partitions: int, alive: Sequence[str], me: str) -> tuple[int, ...]:
    """The partitions replica ``me`` reads, given the names of the replicas alive.

    With N replicas alive, the i-th by name reads the partitions p with p mod N = i; with more
    replicas than partitions, replica i reads partition i mod P, so every replica has work and
    every partition a reader. A replica that is not among ``alive`` (its first beat has not
    landed, or Redis is away) reads them all. While two replicas disagree about who is alive
    (for a beat or two after one comes or goes) a partition may be read by two, which the
    consumer groups and the chats' order gate make harmless, or by none for a moment, which
    only delays its messages; the entries of a replica that died are claimed by the partition's
    new reader once they have been idle for the claim time.
    """
    everything = tuple(range(partitions))
    if me not in alive:
        return everything
    rank, count = sorted(alive).index(me), len(alive)
    if count > partitions:
        return (rank % partitions,)
    return everything[rank::count]


class Presence:
    """This replica's beat in its service's set."""

    def __init__(self, client: redis.Redis, key: str, name: str) -> None:
        self._client = client
        self._script = client.register_script(lua("presence"))
        self._key = key
        self._name = name

    async def beat(self) -> list[str]:
        """Say this replica is alive; the names of the replicas alive, this one included."""
        return await self._call("beat")

    async def leave(self) -> None:
        """This replica stops: it no longer counts (best effort; else it lapses)."""
        with contextlib.suppress(Exception):
            await self._call("leave")

    async def _call(self, mode: str) -> list[str]:
        try:
            alive = await self._script(keys=[self._key], args=[self._name, ALIVE_FOR_MS, mode])
        except UNREACHABLE as exc:
            raise await unavailable(self._client, exc) from exc
        return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in alive)
