"""The pipeline's stored layout: how many partitions its keys are split into.

Every process of a deployment must split the pipeline the same way, or ingest would append to
partitions no scheduler reads. The first process to start writes its number to
``{namespace}:layout``; every later one compares its own ``FLOODGATE_PARTITIONS`` with it and
refuses to start on a difference. ``floodgate partitions set N`` changes the stored number, only
while the pipeline is drained (a message left in a partition that is no longer read would wait
forever).

Releases before partitions stored no layout and kept one partition, under ``{pipeline}``. While
those keys still hold anything (a message scheduled months ahead, a dead letter), no layout
stored counts as that one partition, so an upgrade to several cannot strand them.
"""

from __future__ import annotations

import redis.asyncio as redis

from shared.keys import DELAY_SETS, Keys
from shared.redis_batch import UNREACHABLE, count_keys, unavailable


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


async def current_partitions(client: redis.Redis, keys: Keys) -> int | None:
    """The number of partitions the pipeline is split into: the stored one; else 1 while the
    keys of a release before partitions hold anything; else None (nothing to agree with)."""
    stored = await stored_partitions(client, keys)
    if stored is not None:
        return stored
    return 1 if await _legacy_holds_anything(client, keys) else None


async def _legacy_holds_anything(client: redis.Redis, keys: Keys) -> bool:
    legacy = Keys(keys.namespace)  # one partition: the ``{pipeline}`` keys, one slot
    try:
        counts = await count_keys(
            client,
            [legacy.ingest, *legacy.send_streams],
            [*(legacy.delayed(n) for n in DELAY_SETS), legacy.dlq_index],
            [legacy.parked_count],
        )
    except UNREACHABLE as exc:
        raise await unavailable(client, exc) from exc
    return any(counts.values())


async def agree_on_layout(client: redis.Redis, keys: Keys) -> None:
    """Store this process's number of partitions if none is stored yet (or 1 over a queue of
    a release before partitions); raise ``LayoutMismatch`` (saying what to do) if another is."""
    stored = await stored_partitions(client, keys)
    if stored is None:  # a first start: one read per check afterwards (every 5 s)
        first = 1 if await _legacy_holds_anything(client, keys) else keys.partitions
        try:
            await client.set(layout_key(keys), first, nx=True)
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
