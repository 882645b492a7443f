"""The pipeline's load spread over a Redis Cluster: 50 bots through real processes on the
session's cluster, delivered exactly once and in order, with every primary carrying its share of
the commands and holding some partition's keys."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import aiohttp
import pytest
import redis.asyncio as redis

from floodgate.demo import demo_token
from floodgate.observe import Received, out_of_order
from floodgate.workload import Workload, build_workload
from shared.keys import Keys, PartitionNeeded
from shared.layout import layout_key
from shared.redis_broker import connect
from shared.settings import CLUSTER_PARTITIONS
from tests.cluster import RedisCluster
from tests.e2e.scenario import check_exactly_once, submit, wait_drained
from tests.helpers import AUTH
from tests.procs import Proc, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BOTS = list(range(1001, 1051))
LEAST_SHARE = 0.2


@pytest.fixture
def sandbox() -> Iterator[Proc]:
    proc = floodgate("sandbox", ["sandbox", "--seed", "5"], {})
    yield proc
    proc.terminate()


def _out_of_order(work: Workload, received: Received) -> int:
    order = {m.tag: i for i, m in enumerate(work.messages)}
    prio = {m.tag: m.priority for m in work.messages}
    return out_of_order(received.messages, order, lambda tag, d: (d.bot_id, d.chat_id, prio[tag]))


async def _calls(port: int) -> int:
    """Commands a node has run since it started (``INFO commandstats``, every command)."""
    client = redis.Redis(port=port)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(int(v["calls"]) for v in stats.values())


async def _partitions_held(port: int, keys: Keys) -> set[int]:
    """The partitions whose pipeline keys one node holds."""
    client = redis.Redis(port=port)
    held: set[int] = set()
    try:
        async for key in client.scan_iter(match=f"{keys.namespace}:{{*", count=1000):
            # a limiter, API key or inbound key is not the pipeline's
            with contextlib.suppress(PartitionNeeded):
                held.add(keys.of_stream(key.decode()).partition or 0)
    finally:
        await client.aclose()
    return held


async def test_fifty_bots_spread_over_every_primary(
    redis_cluster: RedisCluster, sandbox: Proc
) -> None:
    """Counted: every command each primary ran (``INFO commandstats``, calls summed, including
    those run inside Lua scripts) between the moment every service was healthy and the moment
    the pipeline was drained. That is the run's whole load: ingest's commits, the scheduler's
    and senders' reads and commits of the pipeline partitions (one tag per partition, a bot's
    messages in partition bot_id % P), the limiter's scripts on each bot's ``{bot:<id>}`` slot,
    stats' polls, heartbeats and idle reads, and the few ``INFO`` and ``CLUSTER`` calls of the
    test and the replicas' acknowledgements. Nothing else runs on the session's cluster
    meanwhile: pytest runs one test at a time and every test stops its processes. With one
    partition the pipeline's commands all go to one primary and only the limiter's spread."""
    namespace = f"spread{secrets.token_hex(4)}"
    env = {
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_NAMESPACE": namespace,
        "REDIS_URL": redis_cluster.url,
    }
    procs = {
        "ingest": floodgate("ingest", ["run", "ingest"], env),
        "scheduler": floodgate("scheduler", ["run", "scheduler"], env),
        "sender-1": floodgate("sender-1", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": "s1"}),
        "sender-2": floodgate("sender-2", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": "s2"}),
        "stats": floodgate("stats", ["run", "stats"], env),
    }
    # 50 bots x 3 chats x 2 messages: 6 per bot, every bot's partition busy
    work = build_workload(seed=50, bots=BOTS, private_chats=3, per_chat=2, groups=0, per_group=0)
    primaries = sorted(redis_cluster.primaries())
    assert len(primaries) == 3
    try:
        await sandbox.wait_healthy()
        for proc in procs.values():
            await proc.wait_healthy()
        before = {port: await _calls(port) for port in primaries}
        async with aiohttp.ClientSession(headers=AUTH) as session:
            ids = await submit(session, procs["ingest"].url, work)
            received, stats = await wait_drained(
                session, procs["stats"].url, sandbox.url, len(ids), 60
            )
            after = {port: await _calls(port) for port in primaries}
            await check_exactly_once(session, sandbox.url, received, ids)
        assert stats["stats"]["dlq"] == 0
        assert _out_of_order(work, received) == 0
    finally:
        codes = {name: proc.terminate() for name, proc in procs.items()}
    assert codes == dict.fromkeys(procs, 0), f"every service exits 0 on SIGTERM: {codes}"

    calls = {port: after[port] - before[port] for port in primaries}
    shares = {port: round(n / sum(calls.values()), 3) for port, n in calls.items()}
    client = connect(redis_cluster.url)
    try:
        stored = await client.get(layout_key(Keys(namespace)))
    finally:
        await client.aclose()
    keys = Keys(namespace, int(stored or 1))
    held = {port: await _partitions_held(port, keys) for port in primaries}
    print(f"\nspread: {len(ids)} messages, commands per primary {calls}, shares {shares}")
    print(f"partitions per primary: { {p: sorted(h) for p, h in held.items()} }")
    assert min(shares.values()) >= LEAST_SHARE, f"a primary carried too little: {shares}"
    assert all(held.values()), f"a primary holds no partition of the pipeline: {held}"
    assert set().union(*held.values()) == set(range(keys.partitions))
    assert stored == str(CLUSTER_PARTITIONS).encode(), f"stored layout {stored!r}"
