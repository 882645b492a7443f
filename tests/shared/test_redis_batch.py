"""ScriptBatcher: calls coalesced into pipelines, against the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest
import redis.asyncio as redis
from redis.exceptions import ResponseError

from shared import redis_batch
from shared.broker import GATE_GO_LEADING, GATE_PARKED, Commit, Entry
from shared.context import dlq_keys
from shared.keys import Keys
from shared.models import Priority
from shared.redis_batch import MergingBatcher, ScriptBatcher
from shared.redis_broker import RedisBroker

ECHO = "return ARGV[1]"


async def test_calls_made_together_share_a_pipeline(redis_client: redis.Redis) -> None:
    batcher = ScriptBatcher(redis_client, ECHO)
    answers = await asyncio.gather(*(batcher.call([], [str(i)]) for i in range(50)))
    assert [int(a) for a in answers] == list(range(50))


async def test_a_failed_pipeline_fails_its_calls_and_the_next_still_go(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One round trip breaks (not an outage: say, a closed transport): its callers get the
    error, and calls queued behind it are sent without waiting for a new caller."""
    real = redis_batch._pipeline
    rounds = 0

    async def breaks_once(client: redis.Redis, sha: str, calls: Sequence[Any]) -> list[Any]:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("the transport is closed")
        return await real(client, sha, calls)

    monkeypatch.setattr(redis_batch, "_pipeline", breaks_once)
    monkeypatch.setattr(ScriptBatcher, "max_batch", 1)
    monkeypatch.setattr(ScriptBatcher, "max_in_flight", 1)
    batcher = ScriptBatcher(redis_client, ECHO)
    first = asyncio.ensure_future(batcher.call([], ["a"]))
    second = asyncio.ensure_future(batcher.call([], ["b"]))
    with pytest.raises(RuntimeError, match="transport"):
        await first
    assert await asyncio.wait_for(second, 2) in (b"b", "b")


# Per item: HSET its key's field f to its value; one result per item.
STORE = """
local out, k, a = {}, 1, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  redis.call('HSET', KEYS[k], 'f', ARGV[a + 1])
  out[#out + 1] = ARGV[a + 1]
  k, a = k + n, a + 2
end
return out
"""


async def _script_calls(client: redis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_items_made_together_share_a_script_call(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """Items waiting together go out as one call of the script, each with its own result."""
    batcher = MergingBatcher(redis_client, STORE, [])
    await batcher.call([keys.record("warm")], ["w"])  # loads the script
    before = await _script_calls(redis_client)
    answers = await asyncio.gather(
        *(batcher.call([keys.record(f"m{i}")], [str(i)]) for i in range(100))
    )
    assert [int(a) for a in answers] == list(range(100))
    calls = await _script_calls(redis_client) - before
    assert calls <= 10, f"{calls} script calls for 100 items"
    assert await redis_client.hget(keys.record("m42"), "f") in (b"42", "42")


async def test_an_item_that_fails_fails_alone(redis_client: redis.Redis, keys: Keys) -> None:
    """A key of the wrong type fails the merged call: run again one item a call, only the
    item that caused it fails; the others get their results."""
    await redis_client.set(keys.record("hostile"), "a string, not a hash")
    batcher = MergingBatcher(redis_client, STORE, [])
    await batcher.call([keys.record("warm")], ["w"])  # loads the script: the rest go together
    run_alone: list[int] = []
    real_alone = batcher._alone

    async def alone(items: list[Any]) -> None:
        run_alone.append(len(items))
        await real_alone(items)

    batcher._alone = alone  # type: ignore[method-assign]
    names = [f"ok{i}" for i in range(5)] + ["hostile"] + [f"ok{i}" for i in range(5, 10)]
    answers = await asyncio.gather(
        *(batcher.call([keys.record(name)], [name]) for name in names), return_exceptions=True
    )
    failed = [name for name, a in zip(names, answers, strict=True) if isinstance(a, Exception)]
    assert failed == ["hostile"]
    assert max(run_alone, default=0) > 1, "the hostile item failed a merged call"
    assert isinstance(answers[5], ResponseError)
    assert "WRONGTYPE" in str(answers[5])
    kept = [a.decode() if isinstance(a, bytes) else a for a in answers if a is not answers[5]]
    assert kept == [n for n in names if n != "hostile"]


async def test_order_gates_made_together_decide_as_one_after_another(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """The order gate of many messages in one call: per chat, as gates one after another
    would (the chat's next goes, later ones park), whatever else the call carries."""
    broker = RedisBroker(redis_client, dlq_keys(keys))
    stream = keys.send(Priority.NORMAL)
    await broker.ensure_group(stream, "g")
    chats = range(20)
    adds = [
        (stream, f"m{c}-{n}", f"{c}-{n}".encode(), keys.chat_state(1, c, Priority.NORMAL))
        for n in range(3)
        for c in chats
    ]
    await broker.commit(Commit(adds=adds))
    entries = await broker.read([stream], "g", "c", 100, None)
    assert len(entries) == 60
    order = [e for e in entries if e.seq != 1] + [e for e in entries if e.seq == 1]
    verdicts = await asyncio.gather(
        *(
            broker.gate(
                keys.chat_state(1, int(e.payload.split(b"-")[0]), Priority.NORMAL),
                keys.parked(1, int(e.payload.split(b"-")[0]), Priority.NORMAL),
                e,
                "g",
                e.seq or 0,
                keys.parked_count,
            )
            for e in order
        )
    )
    by_seq = {(e.seq, v) for e, v in zip(order, verdicts, strict=True)}
    assert by_seq == {(2, GATE_PARKED), (3, GATE_PARKED), (1, GATE_GO_LEADING)}
    assert (await broker.depths([], [], [keys.parked_count]))[keys.parked_count] == 40


async def test_order_gates_of_two_streams_and_groups_merged_keep_each_to_its_own(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """Gates merged into one call share their stream, the parked count and the consumer group
    once per run: interleaved messages of two streams, read by two groups, some with a status
    record and some without, each park in and mark only what is its own."""
    broker = RedisBroker(redis_client, dlq_keys(keys))
    streams = {"g1": keys.send(Priority.NORMAL), "g2": keys.send(Priority.HIGH)}
    prio = {"g1": Priority.NORMAL, "g2": Priority.HIGH}
    read: list[tuple[str, Entry]] = []
    for group, stream in streams.items():
        await broker.ensure_group(stream, group)
        chat_of = {c: keys.chat_state(1, c, prio[group]) for c in range(6)}
        adds = [
            (stream, f"{group}-{c}-{n}", f"{c}-{n}".encode(), chat_of[c])
            for n in range(2)
            for c in range(6)
        ]
        await broker.commit(Commit(adds=adds))
        read += [(group, e) for e in await broker.read([stream], group, "c", 100, None)]
    records: dict[tuple[str, str], str] = {}  # by group and entry id: two streams share ids
    for group, e in read:
        if int(e.payload.split(b"-")[0]) % 2 == 0:  # chats 0, 2, 4 with a record
            records[group, e.entry_id] = keys.record(f"{group}-{e.payload.decode()}")
            await broker.put_records({records[group, e.entry_id]: {"priority": "low"}}, 60)

    def chat(item: tuple[str, Entry]) -> int:
        return int(item[1].payload.split(b"-")[0])

    # the seconds first, so every first has one parked behind it; the groups alternating
    second = sorted((x for x in read if x[1].seq == 2), key=lambda x: (chat(x), x[0]))
    first = sorted((x for x in read if x[1].seq == 1), key=lambda x: (chat(x), x[0]))
    mixed = second + first

    def gate(group: str, e: Entry) -> Awaitable[int]:
        c = int(e.payload.split(b"-")[0])
        chat, parked = keys.order(1, c, prio[group])
        record = records.get((group, e.entry_id))
        return broker.gate(chat, parked, e, group, e.seq or 0, keys.parked_count, record)

    verdicts = await asyncio.gather(*(gate(group, e) for group, e in mixed))
    for (group, e), verdict in zip(mixed, verdicts, strict=True):
        assert verdict == (GATE_GO_LEADING if e.seq == 1 else GATE_PARKED), (group, e.payload)
        record = records.get((group, e.entry_id))
        if record is not None:
            status = (await broker.get_record(record) or {}).get("status")
            assert status == ("sending" if e.seq == 1 else None), (group, e.payload)
    assert (await broker.depths([], [], [keys.parked_count]))[keys.parked_count] == 12
    for group, stream in streams.items():
        assert (await broker.depths([stream], []))[stream] == 6, "the parked are deleted"
        pending = await redis_client.xpending(stream, group)
        assert pending["pending"] == 6, f"{group} acknowledged its parked entries"
