"""The pipeline's stored layout: how many partitions its keys are split into.

Every process of a deployment must split the pipeline the same way, or ingest would append to
partitions no scheduler reads. The first process to start writes its number to
``{namespace}:layout``; every later one compares its own ``FLOODGATE_PARTITIONS`` with it and
refuses to start on a difference. ``floodgate partitions set N`` changes the stored number, only
while the pipeline is drained (a message left in a partition that is no longer read would wait
forever).
"""

from __future__ import annotations

import redis.asyncio as redis

from shared.keys import Keys
from shared.redis_batch import UNREACHABLE, unavailable


class LayoutMismatch(Exception):
    """This process splits the pipeline differently from the layout stored in Redis."""


def layout_key(keys: Keys) -> str:
    """The string holding the number of partitions."""
    return f"{keys.namespace}:layout"


async def stored_partitions(client: redis.Redis, keys: Keys) -> int | None:
    """The number of partitions stored in Redis, or None before any process started."""
    try:
        raw = await client.get(layout_key(keys))
    except UNREACHABLE as exc:
        raise await unavailable(client, exc) from exc
    return int(raw) if raw is not None else None


async def agree_on_layout(client: redis.Redis, keys: Keys) -> None:
    """Store this process's number of partitions if none is stored yet; raise
    ``LayoutMismatch`` (saying what to do) if another is."""
    try:
        await client.set(layout_key(keys), keys.partitions, nx=True)
    except UNREACHABLE as exc:
        raise await unavailable(client, exc) from exc
    stored = await stored_partitions(client, keys)
    if stored is not None and stored != keys.partitions:
        raise LayoutMismatch(
            f"FLOODGATE_PARTITIONS is {keys.partitions} here, but the pipeline of namespace"
            f" {keys.namespace!r} in Redis is split into {stored}: every process must use the"
            f" same number. Set FLOODGATE_PARTITIONS={stored}, or drain the pipeline and run"
            f" 'floodgate partitions set {keys.partitions}' (README, \"Partitions\")"
        )


async def store_partitions(client: redis.Redis, keys: Keys, partitions: int) -> None:
    """Record a new number of partitions (the caller checked the pipeline is drained)."""
    try:
        await client.set(layout_key(keys), partitions)
    except UNREACHABLE as exc:
        raise await unavailable(client, exc) from exc
