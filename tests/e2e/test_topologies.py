"""The pipeline as real processes on a real Redis Cluster and on Sentinel: a workload delivered
exactly once, in order, without a 429; and a primary killed mid-run under replicated
durability, with nothing accepted lost."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import aiohttp
import pytest

from floodgate.demo import demo_token
from floodgate.observe import Received, out_of_order
from floodgate.workload import Workload, build_workload
from tests.cluster import RedisCluster, SentinelSetup
from tests.e2e.scenario import (
    check_exactly_once,
    duplicates,
    fail_over,
    partition_key,
    submit,
    submit_retrying,
    wait_drained,
)
from tests.helpers import AUTH
from tests.procs import Proc, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BOTS = [611, 612, 613]


@pytest.fixture
def sandbox() -> Iterator[Proc]:
    proc = floodgate("sandbox", ["sandbox", "--seed", "5"], {})
    yield proc
    proc.terminate()


def _services(sandbox: Proc, redis_url: str, **extra: str) -> dict[str, Proc]:
    env = {
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_NAMESPACE": f"e2e{secrets.token_hex(4)}",
        "REDIS_URL": redis_url,
        **extra,
    }
    return {
        "ingest": floodgate("ingest", ["run", "ingest"], env),
        "scheduler": floodgate("scheduler", ["run", "scheduler"], env),
        "sender-1": floodgate("sender-1", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": "s1"}),
        "sender-2": floodgate("sender-2", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": "s2"}),
        "stats": floodgate("stats", ["run", "stats"], env),
    }


async def _healthy(sandbox: Proc, procs: dict[str, Proc]) -> None:
    await sandbox.wait_healthy()
    for proc in procs.values():
        await proc.wait_healthy()


def _stop(procs: dict[str, Proc]) -> None:
    codes = {name: proc.terminate() for name, proc in procs.items()}
    assert codes == dict.fromkeys(procs, 0), f"every service exits 0 on SIGTERM: {codes}"


def _workload(seed: int, chats: int) -> Workload:
    return build_workload(
        seed=seed, bots=BOTS, private_chats=chats, per_chat=2, groups=0, per_group=0
    )


def _in_order(work: Workload, received: Received) -> int:
    order = {m.tag: i for i, m in enumerate(work.messages)}
    prio = {m.tag: m.priority for m in work.messages}
    firsts = [got[0] for got in received.by_tag().values()]
    return out_of_order(firsts, order, lambda tag, d: (d.bot_id, d.chat_id, prio[tag]))


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_pipeline_delivers_in_order_without_429(
    request: pytest.FixtureRequest, topology: str, sandbox: Proc
) -> None:
    setup: RedisCluster | SentinelSetup = request.getfixturevalue(f"redis_{topology}")
    procs = _services(sandbox, setup.url)
    try:
        await _healthy(sandbox, procs)
        # 3 bots x 40 chats x 2 messages: 80 per bot, about 3 s at 30/s
        work = _workload(seed=7, chats=40)
        async with aiohttp.ClientSession(headers=AUTH) as session:
            ids = await submit(session, procs["ingest"].url, work)
            received, stats = await wait_drained(
                session, procs["stats"].url, sandbox.url, len(ids), 60
            )
            await check_exactly_once(session, sandbox.url, received, ids)
            assert stats["stats"]["dlq"] == 0
        assert _in_order(work, received) == 0
    finally:
        _stop(procs)


@pytest.fixture
def private_cluster() -> Iterator[RedisCluster]:
    """A cluster of this test's own: the test kills one of its primaries."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def private_sentinel() -> Iterator[SentinelSetup]:
    """A Sentinel setup of this test's own: the test kills its primary."""
    with SentinelSetup() as setup:
        yield setup


async def _sentinel_failover(setup: SentinelSetup) -> None:
    victim = setup.primary
    setup.kill(victim)
    while (primary := setup.current_primary()) in (victim, None):
        await asyncio.sleep(0.1)
    # back as the new primary's replica at once, as a restarted pod configured from the
    # Sentinels would be (left to them, it would be converted only at their next check)
    setup.restart(victim, "--replicaof", "127.0.0.1", str(primary))


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_failover_loses_nothing_accepted_when_replicated(
    request: pytest.FixtureRequest, topology: str, sandbox: Proc
) -> None:
    setup: RedisCluster | SentinelSetup = request.getfixturevalue(f"private_{topology}")
    procs = _services(
        sandbox,
        setup.url,
        FLOODGATE_DURABILITY="replicated",
    )
    try:
        await _healthy(sandbox, procs)
        work = _workload(seed=9, chats=60)
        ids: dict[str, str] = {}
        async with aiohttp.ClientSession(headers=AUTH) as session:
            submitting = asyncio.create_task(
                submit_retrying(session, procs["ingest"].url, work, ids, 50, 0.15)
            )
            while len(ids) < len(work.messages) // 3 and not submitting.done():
                await asyncio.sleep(0.05)
            if isinstance(setup, RedisCluster):
                # the primary of the first bot's partition (each holds about a third of them)
                await fail_over(setup, partition_key(BOTS[0]))
            else:
                await _sentinel_failover(setup)
            await submitting
            received, stats = await wait_drained(
                session, procs["stats"].url, sandbox.url, len(ids), 90
            )
        by_tag = received.by_tag()
        lost = [tag for tag in ids if tag not in by_tag]
        assert not lost, f"{len(lost)} accepted messages lost, e.g. {lost[:5]}"
        assert set(by_tag) == set(ids)
        print(f"\nfailover: {len(ids)} accepted, duplicates {sum(duplicates(received).values())}")
        assert _in_order(work, received) == 0
        assert stats["stats"]["dlq"] == 0
    finally:
        _stop(procs)
