"""The pipeline's partitions: where their keys hash, which partition a bot, a stream or a message
id belongs to, how replicas share partitions out, and the stored layout every process agrees on."""

from __future__ import annotations

import argparse
import asyncio

import pytest
import redis.asyncio as redis
from redis.crc import key_slot

from floodgate import partitions_cli
from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from shared import runtime
from shared.broker import Commit
from shared.context import build_context, dlq_keys
from shared.keys import MAX_PARTITIONS, Keys, PartitionNeeded, partition_tag
from shared.layout import LayoutMismatch, agree_on_layout, store_partitions, stored_partitions
from shared.models import Priority, new_message_id
from shared.presence import share
from shared.redis_broker import RedisBroker
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, TOKENS, eventually, free_port


# the slot ranges `redis-cli --cluster create` gives N primaries
def _ranges(primaries: int) -> list[range]:
    bounds = [16384 * i // primaries for i in range(primaries + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(primaries)]


def test_one_partition_keeps_the_layout_floodgate_always_had() -> None:
    keys = Keys("fg")
    assert keys.ingest == "fg:{pipeline}:ingest"
    assert keys.of_bot(12345).ingest == "fg:{pipeline}:ingest"
    assert keys.of_message(new_message_id()).record("m") == "fg:{pipeline}:msg:m"


@pytest.mark.parametrize("partitions", [2, 4, 8, 16, 32, 64, 128, 256])
@pytest.mark.parametrize("primaries", [2, 3, 4, 5, 6, 7, 8, 9, 10])
def test_partitions_spread_evenly_over_primaries(partitions: int, primaries: int) -> None:
    slots = [key_slot(partition_tag(p, partitions).encode()) for p in range(partitions)]
    assert len(set(slots)) == partitions, "no two partitions share a slot"
    counts = [sum(1 for s in slots if s in held) for held in _ranges(primaries)]
    assert max(abs(c - partitions / primaries) for c in counts) < 1, counts


def test_a_tag_does_not_depend_on_the_number_of_partitions() -> None:
    assert partition_tag(3, 4) == partition_tag(3, 16) == partition_tag(3, MAX_PARTITIONS)


def test_every_key_of_a_partition_shares_its_slot() -> None:
    part = Keys("fg", 16).of_bot(7)
    names = [
        part.ingest,
        *part.send_streams,
        part.delayed("retry"),
        part.dlq_index,
        part.chat_state(7, -100, Priority.HIGH),
        part.record("m"),
        part.idempotency(7, "k"),
        part.events,
        part.commit_mark("x"),
        part.parked_count,
    ]
    assert len({key_slot(n.encode()) for n in names}) == 1


def test_a_bot_a_stream_and_a_message_id_name_their_partition() -> None:
    keys = Keys("fg", 16)
    for bot in (1, 16, 17, 5_000_000_123):
        part = keys.of_bot(bot)
        assert part.partition == bot % 16
        assert keys.of_stream(part.send_streams[1]) is part
        assert keys.of_message(new_message_id(part.partition or 0)) is part
    with pytest.raises(PartitionNeeded):
        _ = keys.ingest  # a pipeline key of no partition: a call site that forgot to choose
    with pytest.raises(PartitionNeeded):
        keys.of_stream("fg:{pipeline}:ingest")  # the one-partition layout is not this one
    assert keys.of_message("not-an-id").partition == 0
    with pytest.raises(ValueError, match="partitions must be"):
        Keys("fg", MAX_PARTITIONS + 1)


@pytest.mark.parametrize("partitions", [1, 3, 16])
@pytest.mark.parametrize("replicas", [1, 2, 3, 5, 16, 20])
def test_replicas_share_every_partition_out(partitions: int, replicas: int) -> None:
    alive = [f"sender-{i}" for i in range(replicas)]
    shares = [share(partitions, alive, me) for me in alive]
    covered = sorted(p for s in shares for p in s)
    assert all(s for s in shares), "every replica has work"
    assert set(covered) == set(range(partitions)), "every partition has a reader"
    if replicas <= partitions:
        assert covered == list(range(partitions)), "each partition read by exactly one"
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_a_replica_not_yet_counted_reads_everything() -> None:
    assert share(4, ["a", "b"], "c") == (0, 1, 2, 3)


async def test_processes_agree_on_the_stored_layout(
    redis_client: redis.Redis, namespace: str
) -> None:
    assert await stored_partitions(redis_client, Keys(namespace)) is None
    await agree_on_layout(redis_client, Keys(namespace, 4))  # the first start stores it
    await agree_on_layout(redis_client, Keys(namespace, 4))
    with pytest.raises(LayoutMismatch, match=r"FLOODGATE_PARTITIONS is 8 here.*split into 4"):
        await agree_on_layout(redis_client, Keys(namespace, 8))
    assert await stored_partitions(redis_client, Keys(namespace)) == 4


async def test_changing_the_layout_needs_a_drained_pipeline(
    redis_client: redis.Redis, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FLOODGATE_NAMESPACE", namespace)
    monkeypatch.setenv("FLOODGATE_PARTITIONS", "4")
    keys = Keys(namespace, 4)
    await agree_on_layout(redis_client, keys)
    part = keys.of_bot(3)
    broker = RedisBroker(redis_client, dlq_keys(part))
    await broker.commit(Commit(adds=[(part.send_streams[1], "m1", b"{}", "")]))
    args = argparse.Namespace(action="set", count=8)
    status, answer = await partitions_cli._run(args)
    assert status == 1
    assert "not drained" in answer["error"]
    assert answer["total_queued"] == 1
    status, shown = await partitions_cli._run(argparse.Namespace(action="show"))
    assert status == 0
    assert shown["stored"] == 4
    assert shown["queued_and_dead_by_partition"]["3"] == 1
    await redis_client.delete(part.send_streams[1])
    await redis_client.zadd(keys.senders, {"s1": 10**13})  # a sender beating (far in the future)
    status, answer = await partitions_cli._run(args)
    assert status == 1
    assert answer["alive"] == ["s1"]
    await redis_client.delete(keys.senders)
    status, answer = await partitions_cli._run(args)
    assert status == 0
    assert answer["stored"] == 8
    assert await stored_partitions(redis_client, keys) == 8


async def test_a_pipeline_from_before_partitions_is_not_stranded_by_an_upgrade(
    redis_client: redis.Redis, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release without partitions kept its keys under ``{pipeline}`` and stored no layout. A
    process started with several partitions (the default on a cluster) must not store its
    number over that queue, whose messages (scheduled ones up to a year ahead) nobody would
    read: the layout is the one partition the messages are in, until it is drained."""
    legacy = Keys(namespace)
    await redis_client.zadd(legacy.delayed("scheduled"), {b"a message for next month": 1})
    with pytest.raises(LayoutMismatch, match=r"FLOODGATE_PARTITIONS is 16 here.*split into 1"):
        await agree_on_layout(redis_client, Keys(namespace, 16))
    assert await stored_partitions(redis_client, legacy) == 1
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FLOODGATE_NAMESPACE", namespace)
    monkeypatch.setenv("FLOODGATE_PARTITIONS", "16")
    status, answer = await partitions_cli._run(argparse.Namespace(action="set", count=16))
    assert status == 1, answer
    assert answer["stats"]["scheduled"] == 1


async def test_partitions_set_before_any_start_sees_the_legacy_queue(
    redis_client: redis.Redis, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await redis_client.xadd(Keys(namespace).send_streams[1], {"d": b"{}"})
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FLOODGATE_NAMESPACE", namespace)
    monkeypatch.setenv("FLOODGATE_PARTITIONS", "16")
    status, answer = await partitions_cli._run(argparse.Namespace(action="set", count=16))
    assert status == 1, answer
    assert answer["total_queued"] == 1
    assert await stored_partitions(redis_client, Keys(namespace)) is None


async def test_an_empty_legacy_layout_lets_the_first_process_choose(
    redis_client: redis.Redis, namespace: str
) -> None:
    legacy = Keys(namespace)
    await redis_client.xgroup_create(legacy.ingest, "scheduler", "0", mkstream=True)
    await agree_on_layout(redis_client, Keys(namespace, 4))
    assert await stored_partitions(redis_client, legacy) == 4


async def test_a_running_process_stops_when_the_layout_is_changed_under_it(
    redis_client: redis.Redis, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'floodgate partitions set' refuses while a scheduler or sender beats, but an ingest left
    running (only the producers stopped) would go on appending to the old partitions, which
    no scheduler of the new layout reads: it stops instead, as a fresh start would refuse."""
    monkeypatch.setattr(runtime, "LAYOUT_CHECK_S", 0.05)
    settings = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_PARTITIONS=1,
    )
    ctx = build_context(settings, allow_memory=False)
    stop = asyncio.Event()
    ingest = IngestService(ctx, IngestSettings())
    served = asyncio.create_task(runtime.serve(ctx, [ingest], "127.0.0.1", free_port(), stop))
    try:

        async def stored() -> bool:
            return await stored_partitions(redis_client, Keys(namespace)) == 1

        await eventually(stored, 10)
        await store_partitions(redis_client, Keys(namespace), 4)  # what 'partitions set 4' does
        assert await asyncio.wait_for(served, 20) == 2
    finally:
        stop.set()
        await asyncio.gather(served, return_exceptions=True)
