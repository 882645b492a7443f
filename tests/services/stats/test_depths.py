"""Queue depths sum every partition: the figure the autoscaler's depth triggers read."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from services.stats.depths import queue_stats
from shared.broker import Broker, Commit
from shared.context import dlq_keys
from shared.keys import Keys
from shared.memory_broker import MemoryBroker
from shared.models import Priority
from shared.redis_broker import RedisBroker

pytestmark = pytest.mark.timeout(30)

# entries put in (partition, queue) before the depths are read
FILLED = {(0, "high"): 2, (3, "high"): 5, (1, "low"): 1, (2, "ingest"): 4, (3, "ingest"): 1}


def stream(keys: Keys, queue: str) -> str:
    return keys.ingest if queue == "ingest" else keys.send(Priority(queue))


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_depths_are_summed_over_the_partitions(
    backend: str, namespace: str, redis_client: redis.Redis
) -> None:
    keys = Keys(namespace, 4)
    broker: Broker = (
        RedisBroker(redis_client, dlq_keys(keys))
        if backend == "redis"
        else MemoryBroker(dlq_keys(keys))
    )
    for (partition, queue), count in FILLED.items():
        part = keys.of_partition(partition)
        adds = [(stream(part, queue), f"m{partition}{queue}{i}", b"{}", "") for i in range(count)]
        await broker.commit(Commit(adds=adds))  # one commit per partition: one slot each
    stats = (await queue_stats(broker, keys))["stats"]
    assert (stats["high"], stats["normal"], stats["low"], stats["ingest"]) == (7, 0, 1, 5)
