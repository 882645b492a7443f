"""The pipeline scenario: submit a workload over HTTP, wait, check the sandbox's record."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import aiohttp
import orjson

from floodgate.observe import Received, sandbox_stats
from floodgate.workload import Workload
from shared.keys import SENDER_GROUP, Keys, partition_tag
from shared.layout import stored_partitions
from shared.redis_broker import connect
from shared.settings import CLUSTER_PARTITIONS
from tests.cluster import RedisCluster

SUBMIT_CHUNK = 200


async def submit(
    session: aiohttp.ClientSession, ingest_url: str, workload: Workload
) -> dict[str, str]:
    """Submit every message through the batch API; returns tag -> message id."""
    ids: dict[str, str] = {}
    msgs = workload.messages
    for start in range(0, len(msgs), SUBMIT_CHUNK):
        chunk = msgs[start : start + SUBMIT_CHUNK]
        async with session.post(
            f"{ingest_url}/v1/messages/batch", json={"messages": [m.request() for m in chunk]}
        ) as resp:
            assert resp.status == 202, await resp.text()
            doc = await resp.json()
        for m, result in zip(chunk, doc["results"], strict=True):
            assert result["status"] == "queued", result
            ids[m.tag] = result["id"]
    return ids


async def submit_retrying(
    session: aiohttp.ClientSession,
    ingest_url: str,
    workload: Workload,
    ids: dict[str, str],
    chunk_size: int,
    pause: float,
) -> None:
    """Submit in chunks over time (``pause`` seconds apart), retrying a 503 or a refused
    connection with the same idempotency keys, as a careful client does during an outage (a
    503 promised nothing); likewise the messages of a batch refused one by one with a 503
    (their partition's primary was away while others took theirs). Fills ``ids`` (tag ->
    message id) as messages are accepted."""
    msgs = workload.messages
    for start in range(0, len(msgs), chunk_size):
        chunk = msgs[start : start + chunk_size]
        while chunk:
            body = {"messages": [{**m.request(), "idempotency_key": m.tag} for m in chunk]}
            results = await _post_until_202(session, ingest_url, body)
            refused = []
            for m, result in zip(chunk, results, strict=True):
                if result["status"] == "rejected" and result["code"] == 503:
                    refused.append(m)
                    continue
                assert result["status"] == "queued", result
                ids[m.tag] = result["id"]
            chunk = refused
            if chunk:
                await asyncio.sleep(0.2)
        await asyncio.sleep(pause)


async def _post_until_202(
    session: aiohttp.ClientSession, ingest_url: str, body: dict
) -> list[dict]:
    while True:
        try:
            async with session.post(f"{ingest_url}/v1/messages/batch", json=body) as resp:
                if resp.status == 202:
                    results: list[dict] = (await resp.json())["results"]
                    return results
                assert resp.status == 503, await resp.text()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)


async def submit_bodies(
    session: aiohttp.ClientSession, ingest_url: str, bodies: list[dict]
) -> list[str]:
    """Submit raw request bodies through the batch API; returns their ids."""
    async with session.post(f"{ingest_url}/v1/messages/batch", json={"messages": bodies}) as resp:
        assert resp.status == 202, await resp.text()
        results = (await resp.json())["results"]
    assert all(r["status"] == "queued" for r in results), results
    return [r["id"] for r in results]


async def wait_drained(
    session: aiohttp.ClientSession,
    stats_url: str,
    sandbox_url: str,
    expected: int,
    timeout: float,
    expect_queued: int = 0,
) -> tuple[Received, dict]:
    """Poll until the sandbox holds ``expected`` tagged messages and at most ``expect_queued``
    are still queued (0: the queues are empty)."""
    received = Received()
    deadline = time.monotonic() + timeout
    stats: dict = {}
    while time.monotonic() < deadline:
        await received.refresh(session, sandbox_url)
        async with session.get(f"{stats_url}/queue/stats") as resp:
            stats = await resp.json()
        if stats["total_queued"] <= expect_queued and len(received.by_tag()) >= expected:
            return received, stats
        await asyncio.sleep(0.25)
    raise AssertionError(f"not drained in {timeout} s: {stats}, delivered {len(received.by_tag())}")


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) in Prometheus text; a metric that is
    not there at all fails the test (a renamed counter must not read as 0)."""
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", re.MULTILINE)
    samples = pattern.findall(text)
    assert samples, f"no metric {name} in the scrape"
    return sum(float(v) for v in samples)


async def in_flight_at_kill(
    session: aiohttp.ClientSession, sandbox_url: str, redis_url: str, namespace: str, consumer: str
) -> set[str]:
    """Tags of the messages a sender killed a moment ago had sent and not settled: its pending
    entries in the send queues (of every partition) whose request the sandbox ("Telegram") has
    received. These, and only these, may be sent a second time by whoever takes the entries
    over."""
    held = await pending_tags(redis_url, namespace, consumer)
    received = Received()
    await received.refresh(session, sandbox_url)
    return held & {m.text.split(" ", 1)[0] for m in received.messages}


async def pending_tags(redis_url: str, namespace: str, consumer: str) -> set[str]:
    """Tags of the messages whose entries ``consumer`` holds unsettled in the send queues (of
    every partition). A sender frozen a moment ago may send any of these when it goes on: one
    that had passed its last check that the entry is still its own before the freeze (the
    request not yet written) goes out after the others took the entry over and sent it. That
    window cannot be closed from inside the process; a killed sender, which never goes on,
    leaves only those Telegram had already received (``in_flight_at_kill``)."""
    client = connect(redis_url)
    held: set[str] = set()
    try:
        # the processes stored their number of partitions (FLOODGATE_PARTITIONS) at start
        keys = Keys(namespace, await stored_partitions(client, Keys(namespace)) or 1)
        for stream in (s for part in keys.shards for s in part.send_streams):
            pending = await client.xpending_range(
                stream, SENDER_GROUP, "-", "+", 100_000, consumername=consumer
            )
            for item in pending:
                entry = item["message_id"]
                for _, fields in await client.xrange(stream, entry, entry):
                    envelope = orjson.loads(fields[b"d"])
                    parts = envelope.get("parts") or [envelope["params"].get("text", "")]
                    held.update(str(part).split(" ", 1)[0] for part in parts)
    finally:
        await client.aclose()
    return held


def duplicates(received: Received) -> dict[str, int]:
    """Tag -> how many times more than once the sandbox received it."""
    return {tag: len(got) - 1 for tag, got in received.by_tag().items() if len(got) > 1}


async def scrape(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def check_exactly_once(
    session: aiohttp.ClientSession, sandbox_url: str, received: Received, ids: dict[str, str]
) -> None:
    """Every submitted tag delivered exactly once, nothing unknown delivered, no 429 earned."""
    counts = Counter({tag: len(v) for tag, v in received.by_tag().items()})
    missing = [t for t in ids if counts[t] == 0]
    dupes = {t: c for t, c in counts.items() if c > 1}
    assert not missing, f"{len(missing)} not delivered, e.g. {missing[:5]}"
    assert not dupes, f"delivered more than once: {list(dupes.items())[:5]}"
    assert set(counts) == set(ids)
    sb = await sandbox_stats(session, sandbox_url)
    if sb["429"]:
        async with session.get(
            f"{sandbox_url}/_sandbox/requests", params={"limit": "100000"}
        ) as resp:
            log = (await resp.json())["requests"]
        refused = [r for r in log if r["status"] == 429][:10]
        raise AssertionError(f"{sb['429']} answers 429: {sb}; first: {refused}")


def partition_key(bot_id: int) -> str:
    """A key in the slot of a bot's pipeline partition, with a cluster's default partitions."""
    return "{" + partition_tag(bot_id % CLUSTER_PARTITIONS, CLUSTER_PARTITIONS) + "}"


async def fail_over(cluster: RedisCluster, key: str) -> None:
    """SIGKILL the primary serving ``key``, wait until its replica serves the slot, and start
    the old primary again (it rejoins as the new one's replica: until then the new primary has
    no replica to confirm a replicated write)."""
    victim = cluster.owner(key)
    cluster.kill(victim)
    while cluster.serving(key) in (victim, None):
        await asyncio.sleep(0.1)
    cluster.restart(victim)
