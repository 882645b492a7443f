"""A sender reads its partitions one by one: on a Redis Cluster, a primary that is away (dead,
its replica not yet taken over) holds up only the messages of its own partitions. Before, one
read named every partition's streams, and the dead primary's failure (retried by the cluster
client, then the re-reading of every partition) held up every message until the failover."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shared.models import Priority
from shared.redis_broker import connect
from tests.cluster import RedisCluster
from tests.helpers import eventually
from tests.services.sender.harness import reading, running, text_envelope

pytestmark = pytest.mark.timeout(90)

# long enough that the dead primary stays away while the test looks at the others (a first
# call after the kill can fail too: redis-py loads a script missing on a node on every primary)
NODE_TIMEOUT_MS = 8000
STUCK, FREE = 111, 222


@pytest.fixture
def slow_failover() -> Iterator[RedisCluster]:
    """A cluster of this test's own (it kills a primary), slow to notice a dead one."""
    with RedisCluster(node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        yield cluster


async def test_a_dead_primary_holds_up_only_its_partitions(
    dead_sockets: None, slow_failover: RedisCluster, namespace: str
) -> None:
    cluster = slow_failover
    async with running(cluster.url, namespace, names=["sender"]) as pipe:
        keys = pipe.ctx.keys
        stuck, free = keys.of_bot(STUCK), keys.of_bot(FREE)
        dead = cluster.owner(stuck.send(Priority.NORMAL))
        # the free bot's partition and limiter live on other primaries (fixed by the slot
        # layout `redis-cli --cluster create` makes)
        for key in (free.send(Priority.NORMAL), keys.bot_window(FREE)):
            assert cluster.owner(key) != dead, key
        client = connect(cluster.url)
        try:
            for stream in (stuck.send(Priority.NORMAL), free.send(Priority.NORMAL)):
                await reading(client, stream)
            cluster.kill(dead)
            killed = time.monotonic()
            envelope = text_envelope("goes-on", 6, "goes on", bot=FREE)
            await client.xadd(free.send(Priority.NORMAL), {"d": envelope.dumps()})

            async def sent() -> bool:
                return [m.text for m in pipe.delivered(6)] == ["goes on"]

            await eventually(sent, 6)
            assert time.monotonic() - killed < NODE_TIMEOUT_MS / 1000  # not failed over yet
            assert cluster.serving(stuck.send(Priority.NORMAL)) == dead
        finally:
            await client.aclose()
