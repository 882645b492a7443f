"""The committer settles each partition on its own: a partition whose primary does not answer
(a Redis Cluster primary failing over) holds up only its own messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from services.sender.committer import Committer
from services.sender.decision import Decision, Verdict
from services.sender.metrics import SenderMetrics
from shared.broker import Commit
from shared.context import build_context
from shared.keys import SENDER_GROUP
from shared.models import Envelope, Priority
from shared.settings import CommonSettings
from tests.cluster import RedisCluster
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def private_cluster() -> Iterator[RedisCluster]:
    """A cluster of this test's own: the test stops one of its primaries."""
    with RedisCluster() as cluster:
        yield cluster


def _envelope(bot: int) -> Envelope:
    return Envelope(
        id=f"m{bot}",
        bot_id=bot,
        method="sendMessage",
        params={"chat_id": 7, "text": "t"},
        accepted_at=0,
        priority=Priority.NORMAL,
    )


async def test_a_silent_primary_holds_up_only_its_partition(
    private_cluster: RedisCluster, namespace: str
) -> None:
    settings = CommonSettings(REDIS_URL=private_cluster.url, FLOODGATE_NAMESPACE=namespace)
    ctx = replace(build_context(settings, allow_memory=False), consumer="s1")
    keys, broker = ctx.keys, ctx.broker
    owners = {b: private_cluster.owner(keys.of_bot(b).send(Priority.NORMAL)) for b in range(16)}
    stuck = 0
    free = next(b for b in range(16) if owners[b] != owners[stuck])
    entries = {}
    try:
        for bot in (stuck, free):
            stream = keys.of_bot(bot).send(Priority.NORMAL)
            await broker.ensure_group(stream, SENDER_GROUP)
            await broker.commit(Commit(adds=[(stream, f"m{bot}", _envelope(bot).dumps(), "")]))
            (entries[bot],) = await broker.read([stream], SENDER_GROUP, "s1", 1, None)
        settled: list[str] = []
        committer = Committer(
            ctx,
            SenderMetrics(CollectorRegistry()),
            lambda ds: settled.extend(d.envelope.id for d in ds),
        )
        running = asyncio.create_task(committer.run())
        private_cluster.pause(owners[stuck], paused=True)
        try:
            for bot in (stuck, free):
                committer.put(Decision(entries[bot], _envelope(bot), Verdict.SENT))

            async def free_settled() -> bool:
                return settled == [f"m{free}"]

            await eventually(free_settled, timeout=5)
        finally:
            private_cluster.pause(owners[stuck], paused=False)
        committer.finish()
        await asyncio.wait_for(running, 60)  # the stuck one settles once its primary answers
        assert sorted(settled) == sorted([f"m{stuck}", f"m{free}"])
        for bot in (stuck, free):
            stream = keys.of_bot(bot).send(Priority.NORMAL)
            assert await broker.read_own_pending(stream, SENDER_GROUP, "s1", 10) == []
    finally:
        await ctx.close()
