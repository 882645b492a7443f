"""A scheduler reads its partitions one by one: on a Redis Cluster, a primary that is away (dead,
its replica not yet taken over) holds up only its own partitions. Before, one read named every
partition's stream, and the dead primary's failure (retried by the cluster client, then the
re-reading of every partition) held up every message until the failover was over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from redis.exceptions import RedisError

from services.ingest.submit import submit
from services.scheduler.app import SchedulerService
from services.scheduler.settings import SchedulerSettings
from shared.context import build_context
from shared.keys import SCHEDULER_GROUP
from shared.models import Priority, SendRequest
from shared.redis_broker import connect
from shared.settings import CommonSettings
from tests.cluster import RedisCluster
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(90)

BOTS = range(1, 17)
# long enough that the dead primary stays away while the test looks at the others
NODE_TIMEOUT_MS = 4000


@pytest.fixture
def slow_failover() -> Iterator[RedisCluster]:
    """A cluster of this test's own (it kills a primary), slow to notice a dead one."""
    with RedisCluster(node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        yield cluster


async def test_a_dead_primary_holds_up_only_its_partitions(
    dead_sockets: None, slow_failover: RedisCluster, namespace: str
) -> None:
    cluster = slow_failover
    settings = CommonSettings(
        REDIS_URL=cluster.url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(f"{b}:{'A' * 35}" for b in BOTS),
        # accepted only once a replica has it: the primary killed below takes nothing along
        FLOODGATE_DURABILITY="replicated",
    )
    ctx = replace(build_context(settings, allow_memory=False), consumer="sched")
    keys = ctx.keys
    owner = {b: cluster.owner(keys.of_bot(b).ingest) for b in BOTS}
    stuck = BOTS[0]
    free = next(b for b in BOTS if owner[b] != owner[stuck])
    client = connect(cluster.url)
    scheduler = SchedulerService(
        ctx,
        SchedulerSettings(
            FLOODGATE_SCHEDULER_BLOCK_MS=50, FLOODGATE_SCHEDULER_CLAIM_IDLE_MS=600_000
        ),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stop))

    async def status(bot: int, message_id: str) -> Any:
        try:
            return await client.hget(keys.of_bot(bot).record(message_id), "status")
        except RedisError:  # its primary away
            return None

    async def routed(bot: int, message_id: str) -> None:
        async def check() -> bool:
            return bool(await status(bot, message_id) == b"scheduled")

        await eventually(check, 30)

    try:
        (first,) = await submit(ctx, [SendRequest(bot_id=stuck, chat_id=5, text="before")])
        await routed(stuck, first.id)
        (held,) = await submit(ctx, [SendRequest(bot_id=stuck, chat_id=5, text="held up")])
        cluster.kill(owner[stuck])
        killed = time.monotonic()
        # a message of a partition whose primary answers is routed while the other is away
        (other,) = await submit(ctx, [SendRequest(bot_id=free, chat_id=6, text="goes on")])

        async def other_routed() -> bool:
            return bool(await status(free, other.id) == b"scheduled")

        await eventually(other_routed, 3)
        assert time.monotonic() - killed < NODE_TIMEOUT_MS / 1000  # not failed over yet
        assert cluster.serving(keys.of_bot(stuck).ingest) == owner[stuck]
        # the held one is routed once the replica has taken over, and only once
        await routed(stuck, held.id)
        stuck_keys = keys.of_bot(stuck)
        pending: Any = await client.xpending(stuck_keys.ingest, SCHEDULER_GROUP)
        assert pending["pending"] == 0
        texts = [
            fields[b"d"]
            for _, fields in await client.xrange(stuck_keys.send(Priority(first.priority)))
        ]
        assert sum(b"held up" in t for t in texts) == 1
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
        await client.aclose()
        await ctx.close()
