"""Chaos: real processes and real Redis, broken on purpose while a few thousand messages go
through. Every accepted message must end delivered or dead-lettered with its reason; a message is
delivered twice only if a killed or frozen sender had it in flight (sent, not yet settled) when it
died or froze, and at most once more per such event; order holds per (bot, chat, priority);
Telegram never answers 429.

A sender frozen (SIGSTOP) past the claim idle time has its entries claimed by the others; when
it wakes, it must drop them unsent rather than take them back or send them a second time.

The same scenario runs on one redis-server (appendonly, fsync always: the outage is a SIGKILL and
a restart of it, losing nothing) and on a private Redis Cluster of 3 primaries and 3 replicas,
the pipeline in its 16 partitions. There the outage is a failover: the primary of the first bot's
partition is killed (SIGKILL), its replica takes its slots over, and the old primary comes back as
the new one's replica; the other primaries serve on. Replication is asynchronous, so ingest runs
with ``FLOODGATE_DURABILITY=replicated`` (a 202 only once a replica has the message; the
retrying client gets 503s for that partition until the old primary is back as a replica). What a
killed primary takes with it is the replication stream of its last instant; a call whose reply
never came is redone on the new primary (a sender's commit under the same mark, a read read
again). So the assertions are the same: the failover is allowed no duplicate of its own. A
write acknowledged and then lost with the primary could still send a message twice: fourteen runs
in a row showed none.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator

import aiohttp
import pytest

from floodgate.demo import demo_token
from floodgate.observe import Delivery, Received, out_of_order
from floodgate.workload import Planned, Workload, build_workload
from tests.cluster import RedisCluster
from tests.e2e.scenario import (
    duplicates,
    fail_over,
    in_flight_at_kill,
    metric_sum,
    partition_key,
    pending_tags,
    scrape,
    submit_retrying,
)
from tests.helpers import AUTH
from tests.procs import Proc, RedisServer, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(300)]

BOTS = [801, 802, 803]
BLOCKED, MISSING = [90001, 90002], [90003]
SCALE = "0.1"
REPORT: dict[str, float] = {}
EVENTS: dict[str, float] = {}  # wall time each break began, to place duplicates among them
IDLE_POLLS = 20  # half-second polls with the queues empty before a missing message is lost


@pytest.fixture(params=["one", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[RedisServer | RedisCluster]:
    """A private redis-server with appendonly, or a private Redis Cluster: the test breaks it."""
    if request.param == "cluster":
        with RedisCluster() as cluster:
            yield cluster
        return
    server = RedisServer(appendonly=True)
    server.start()
    yield server
    server.cleanup()


async def _redis_outage(store: RedisServer | RedisCluster) -> None:
    if isinstance(store, RedisCluster):
        await fail_over(store, partition_key(BOTS[0]))
        return
    store.stop(hard=True)
    await asyncio.sleep(1.0)
    store.start()


def _workload() -> Workload:
    work = build_workload(seed=33, bots=BOTS, private_chats=150, per_chat=4, groups=2, per_group=30)
    doomed = [
        Planned(f"#dead-{i}", BOTS[i % 3], chat, "normal")
        for i, chat in enumerate((BLOCKED + MISSING) * 4)
    ]
    work.messages[100:100] = doomed
    return work


async def _break_things(
    procs: dict[str, Proc],
    store: RedisServer | RedisCluster,
    env: dict[str, str],
    session: aiohttp.ClientSession,
    in_flight: Counter[str],
) -> dict[str, float]:
    """Kill senders and the scheduler with SIGKILL, break Redis, freeze a sender past the
    claim idle time; return when each came back. Counts in ``in_flight`` the messages each
    killed or frozen sender had in flight."""
    recovered: dict[str, float] = {}
    plan = [
        (1.5, "sender-0"),
        (3.0, "scheduler"),
        (4.5, "redis"),
        (6.5, "sender-1"),
        (8.0, "sender-2"),
        (9.5, "sender-0"),
        (10.0, "freeze sender-1"),
    ]
    started = time.monotonic()
    for n, (at, name) in enumerate(plan):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        t0 = time.monotonic()
        EVENTS[f"{n}:{name}"] = time.time()
        if name == "redis":
            await _redis_outage(store)
        elif name.startswith("freeze "):
            frozen = procs[name.split()[1]]
            frozen.popen.send_signal(signal.SIGSTOP)
            # what it holds it may send on waking, after the others took it over and sent it
            in_flight.update(
                await pending_tags(store.url, env["FLOODGATE_NAMESPACE"], name.split()[1])
            )
            # past the claim idle time, so the other senders take its entries over
            await asyncio.sleep(int(env["FLOODGATE_SENDER_CLAIM_IDLE_MS"]) / 1000 + 2.5)
            frozen.popen.send_signal(signal.SIGCONT)
        else:
            old = procs[name]
            old.kill()
            old.terminate()
            if name != "scheduler":
                in_flight.update(
                    await in_flight_at_kill(
                        session,
                        env["TELEGRAM_API_BASE"],
                        store.url,
                        env["FLOODGATE_NAMESPACE"],
                        name,
                    )
                )
            await asyncio.sleep(0.5)
            args = ["run", "scheduler"] if name == "scheduler" else ["run", "sender"]
            extra = (
                {"FLOODGATE_CONSUMER": name}
                if name != "scheduler"
                else {"FLOODGATE_CONSUMER": "scheduler-0"}
            )
            procs[name] = floodgate(name, args, {**env, **extra})
            await procs[name].wait_healthy()
        recovered[f"{n}:{name}"] = time.monotonic() - t0
    return recovered


async def test_chaos(store: RedisServer | RedisCluster) -> None:
    sandbox = floodgate(
        "sandbox",
        [
            "sandbox",
            "--seed",
            "9",
            "--window-scale",
            SCALE,
            "--fault-5xx",
            "0.05",
            "--fault-timeout",
            "0.01",
            "--timeout-seconds",
            "6",
            f"--blocked-chats={','.join(map(str, BLOCKED))}",
            f"--missing-chats={','.join(map(str, MISSING))}",
        ],
        {},
    )
    env = {
        "REDIS_URL": store.url,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_NAMESPACE": f"chaos{secrets.token_hex(3)}",
        "FLOODGATE_WINDOW_SCALE": SCALE,
        "FLOODGATE_LIMIT_MARGIN": "0.03",
        # Above the longest a loaded machine takes to answer a send, below the sandbox's stall:
        # a call that times out after the sandbox took it is sent again (README: Duplicates).
        "TELEGRAM_TIMEOUT": "4",
        "TELEGRAM_BASE_DELAY": "0.05",
        "TELEGRAM_MAX_DELAY": "0.5",
        "TELEGRAM_MAX_RETRIES": "8",
        "TELEGRAM_RATE_LIMIT_WAIT": "0.5",
        "FLOODGATE_SENDER_CLAIM_IDLE_MS": "4000",
        "FLOODGATE_SCHEDULER_CLAIM_IDLE_MS": "3000",
    }
    if isinstance(store, RedisCluster):
        env["FLOODGATE_DURABILITY"] = "replicated"
    procs = {
        "ingest": floodgate("ingest", ["run", "ingest"], env),
        "scheduler": floodgate(
            "scheduler", ["run", "scheduler"], {**env, "FLOODGATE_CONSUMER": "scheduler-0"}
        ),
        "stats": floodgate("stats", ["run", "stats"], env),
        **{
            f"sender-{i}": floodgate(
                f"sender-{i}", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": f"sender-{i}"}
            )
            for i in range(3)
        },
    }
    work = _workload()
    ids: dict[str, str] = {}
    in_flight: Counter[str] = Counter()
    try:
        await sandbox.wait_healthy()
        for proc in procs.values():
            await proc.wait_healthy()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            began = time.monotonic()
            recovered, _ = await asyncio.gather(
                _break_things(procs, store, env, session, in_flight),
                submit_retrying(session, procs["ingest"].url, work, ids, 100, 0.4),
            )
            received, stats = await _wait_settled(
                session, procs["stats"].url, sandbox.url, len(ids)
            )
            REPORT.clear()  # of this run only (the test runs once per topology)
            REPORT.update(recovered)
            REPORT["drained_after_s"] = time.monotonic() - began
            dlq = await _dlq(session, procs["stats"].url)
            frozen = await scrape(session, procs["sender-1"].url)
            REPORT["dropped_by_frozen_sender"] = metric_sum(frozen, "floodgate_sender_lost_total")
            sb = await _json(session, f"{sandbox.url}/_sandbox/stats")
            log = await _json(session, f"{sandbox.url}/_sandbox/requests?limit=100000")
            lost = await _unaccounted(session, procs["ingest"].url, ids, received, dlq)
        assert not lost, f"accepted messages neither delivered nor dead, e.g.: {lost}"
        _check(work, ids, received, stats, dlq, sb, in_flight, log["requests"])
    finally:
        for proc in [*procs.values(), sandbox]:
            proc.terminate()


async def _json(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _wait_settled(
    session, stats_url: str, sandbox_url: str, expected: int
) -> tuple[Received, dict]:
    """Wait until every message is delivered or dead, or the queues have stayed empty for
    ``IDLE_POLLS`` polls with some still missing (then ``_check`` names them)."""
    received = Received()
    deadline = time.monotonic() + 150
    stats: dict = {}
    idle = 0
    while time.monotonic() < deadline and idle < IDLE_POLLS:
        try:
            await received.refresh(session, sandbox_url)
            stats = await _json(session, f"{stats_url}/queue/stats")
        except (aiohttp.ClientError, AssertionError):
            await asyncio.sleep(0.5)
            continue
        done = len(received.by_tag()) + stats["total_failed"] >= expected
        if done and stats["total_queued"] == 0:
            break
        idle = idle + 1 if stats["total_queued"] == 0 else 0
        await asyncio.sleep(0.5)
    return received, stats


async def _unaccounted(
    session: aiohttp.ClientSession,
    ingest_url: str,
    ids: dict[str, str],
    received: Received,
    dlq: list[dict],
) -> dict[str, dict]:
    """Status records of (up to 5) accepted messages neither delivered nor dead."""
    by_tag = received.by_tag()
    dead = {item["id"] for item in dlq}
    missing = [t for t in ids if t not in by_tag and ids[t] not in dead]
    return {t: await _json(session, f"{ingest_url}/v1/messages/{ids[t]}") for t in missing[:5]}


async def _dlq(session, stats_url: str) -> list[dict]:
    return (await _json(session, f"{stats_url}/v1/dlq?limit=1000"))["items"]


def _requests_of(
    by_tag: dict[str, list[Delivery]], tags: list[str], requests: list[dict], first: float
) -> dict[str, list[tuple[float, int, str]]]:
    """The sandbox's requests to each tag's chat around its copies: (seconds into the run,
    status, outcome)."""
    found: dict[str, list[tuple[float, int, str]]] = {}
    for tag in tags:
        got = by_tag[tag]
        low, high = got[0].ts - 2, got[-1].ts + 2
        found[tag] = [
            (round(r["ts"] - first, 2), r["status"], r["outcome"])
            for r in requests
            if (r["bot_id"], r["chat_id"]) == (got[0].bot_id, got[0].chat_id)
            and low <= r["ts"] <= high
        ]
    return found


def _check(
    work: Workload,
    ids: dict[str, str],
    received: Received,
    stats: dict,
    dlq: list[dict],
    sb: dict,
    in_flight: Counter[str],
    requests: list[dict],
) -> None:
    by_tag = received.by_tag()
    doomed = {m.tag for m in work.messages if m.chat_id in BLOCKED + MISSING}
    dead_ids = {item["id"]: item for item in dlq}
    lost = [t for t in ids if t not in by_tag and ids[t] not in dead_ids]
    assert not lost, f"{len(lost)} accepted messages neither delivered nor dead: {lost[:5]}"
    assert {ids[t] for t in doomed} == set(dead_ids), "the DLQ holds exactly the permanent failures"
    for item in dlq:
        assert "blocked" in item["error"] or "chat not found" in item["error"], item
    assert stats["total_queued"] == 0
    assert stats["stats"]["dlq"] == len(doomed)
    repeated = duplicates(received)
    first = min(m.ts for m in received.messages)
    dup_at = sorted(round(d.ts - first, 2) for v in by_tag.values() if len(v) > 1 for d in v[1:])
    REPORT["duplicates_at_s"] = dup_at[:10]  # type: ignore[assignment]
    REPORT.update(
        messages=len(ids),
        duplicates=sum(repeated.values()),
        in_flight_at_sender_kills=sum(in_flight.values()),
        faults_5xx=sb["5xx"],
        timeouts=sb["timeouts"],
    )
    REPORT.update(http_429=sb["429"], sent_during_hold=sb["sent_during_hold"])
    print(f"\nchaos report: {REPORT}")
    beyond = {tag: n for tag, n in repeated.items() if n > in_flight[tag]}
    copies = {tag: [round(d.ts - first, 2) for d in by_tag[tag]] for tag in list(beyond)[:10]}
    assert not beyond, (
        f"{len(beyond)} sent again though no killed or frozen sender had them in flight; "
        f"seconds into the run of each copy: {copies}; the breaks began at "
        f"{ {name: round(at - first, 2) for name, at in EVENTS.items()} }; requests to their "
        f"chats: {_requests_of(by_tag, list(beyond)[:4], requests, first)}"
    )
    order = {m.tag: i for i, m in enumerate(work.messages)}
    prio = {m.tag: m.priority for m in work.messages}
    bad = out_of_order(received.messages, order, lambda tag, d: (d.bot_id, d.chat_id, prio[tag]))
    assert bad == 0, f"{bad} deliveries out of order"
    assert sb["429"] == 0, f"{sb['429']} answers 429, {sb['sent_during_hold']} into a hold: {sb}"
