"""Queue depths as ``/queue/stats`` reports them."""

from __future__ import annotations

from typing import Any

from shared.broker import Broker
from shared.keys import DELAY_SETS, PRIORITIES, Keys


async def queue_stats(broker: Broker, keys: Keys) -> dict[str, Any]:
    """Depth of every queue, the total not yet sent or dead, and the dead-letter count.

    Consumed entries are deleted when acknowledged, so a stream's length is what waits in it
    plus what is in flight; ``parked`` counts messages waiting for an earlier one of their chat.
    Every figure is the sum over the pipeline's partitions.
    """
    stats: dict[str, int] = {}
    for part in keys.shards:
        for name, depth in (await partition_depths(broker, part)).items():
            stats[name] = stats.get(name, 0) + depth
    total = sum(v for k, v in stats.items() if k != "dlq")
    return {"stats": stats, "total_queued": total, "total_failed": stats["dlq"]}


async def partition_depths(broker: Broker, keys: Keys) -> dict[str, int]:
    """The depths of one partition's queues (one Redis Cluster slot)."""
    streams = [keys.ingest, *keys.send_streams]
    sets = [keys.delayed(name) for name in DELAY_SETS] + [keys.dlq_index]
    raw = await broker.depths(streams, sets, [keys.parked_count])
    stats: dict[str, int] = {p.value: raw[keys.send(p)] for p in PRIORITIES}
    stats["ingest"] = raw[keys.ingest]
    for name in DELAY_SETS:
        stats[name] = raw[keys.delayed(name)]
    stats["parked"] = raw[keys.parked_count]
    stats["dlq"] = raw[keys.dlq_index]
    return stats
