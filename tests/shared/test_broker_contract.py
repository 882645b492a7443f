"""The broker contract: every backend must behave the same."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import redis.asyncio as redis

from shared.broker import (
    GATE_DONE,
    GATE_GO,
    GATE_GO_LEADING,
    GATE_PARKED,
    ORDER_TTL,
    SETTLED_ORDER_TTL,
    UNTIMED_RECORD_TTL,
    Broker,
    Commit,
    Entry,
    Settle,
    routed,
)
from shared.context import dlq_keys
from shared.keys import Keys
from shared.memory_broker import MemoryBroker
from shared.models import Priority
from shared.redis_broker import RedisBroker

G = "g"


async def _add(broker: Broker, stream: str, *payloads: bytes) -> None:
    await broker.commit(Commit(adds=[(stream, f"m{i}", p, "") for i, p in enumerate(payloads)]))


async def test_group_created_at_zero_sees_earlier_entries(broker: Broker, keys: Keys) -> None:
    await _add(broker, keys.ingest, b"a", b"b")
    await broker.ensure_group(keys.ingest, G)
    entries = await broker.read([keys.ingest], G, "c1", 10, None)
    assert [e.payload for e in entries] == [b"a", b"b"]
    assert not any(e.redelivered for e in entries)


async def test_read_prefers_earlier_streams(broker: Broker, keys: Keys) -> None:
    high, normal, low = keys.send_streams
    for s in keys.send_streams:
        await broker.ensure_group(s, G)
    await _add(broker, low, b"l1")
    await _add(broker, normal, b"n1", b"n2")
    await _add(broker, high, b"h1")
    got = await broker.read(keys.send_streams, G, "c", 3, None)
    assert [e.payload for e in got] == [b"h1", b"n1", b"n2"]
    got = await broker.read(keys.send_streams, G, "c", 3, None)
    assert [e.payload for e in got] == [b"l1"]


async def test_blocking_read_wakes_on_add(broker: Broker, keys: Keys) -> None:
    await broker.ensure_group(keys.ingest, G)
    reader = asyncio.create_task(broker.read([keys.ingest], G, "c", 5, 2000))
    await asyncio.sleep(0.1)
    await _add(broker, keys.ingest, b"x")
    got = await asyncio.wait_for(reader, 3)
    assert [e.payload for e in got] == [b"x"]


async def test_blocking_read_times_out_empty(broker: Broker, keys: Keys) -> None:
    await broker.ensure_group(keys.ingest, G)
    assert await broker.read([keys.ingest], G, "c", 5, 100) == []


async def test_ack_deletes_and_depth_counts_unacked(broker: Broker, keys: Keys) -> None:
    await broker.ensure_group(keys.ingest, G)
    await _add(broker, keys.ingest, b"a", b"b", b"c")
    got = await broker.read([keys.ingest], G, "c", 2, None)
    assert (await broker.depths([keys.ingest], []))[keys.ingest] == 3
    await broker.commit(Commit(group=G, acks=[(keys.ingest, got[0].entry_id)]))
    assert (await broker.depths([keys.ingest], []))[keys.ingest] == 2


async def test_own_pending_reread_after_restart(broker: Broker, keys: Keys) -> None:
    await broker.ensure_group(keys.ingest, G)
    await _add(broker, keys.ingest, b"a", b"b")
    await broker.read([keys.ingest], G, "me", 1, None)
    again = await broker.read_own_pending(keys.ingest, G, "me", 10)
    assert [e.payload for e in again] == [b"a"]
    assert again[0].redelivered
    assert await broker.read_own_pending(keys.ingest, G, "other", 10) == []


async def test_own_pending_reread_after_an_outage_counts_no_delivery(
    broker: Broker, keys: Keys
) -> None:
    """A re-reading after an outage (retried as often as the outage lasts) leaves the delivery
    counters as they are: counted, healthy messages were dead-lettered as ones that keep
    killing their consumers. After a restart it counts (the holder died)."""
    await broker.ensure_group(keys.ingest, G)
    await _add(broker, keys.ingest, b"a", b"b", b"c")
    await broker.read([keys.ingest], G, "me", 2, None)
    await broker.read([keys.ingest], G, "other", 1, None)
    for _ in range(4):
        again = await broker.read_own_pending(keys.ingest, G, "me", 10, recount=False)
        assert [(e.payload, e.deliveries, e.redelivered) for e in again] == [
            (b"a", 1, True),
            (b"b", 1, True),
        ]
    assert [
        e.payload for e in await broker.read_own_pending(keys.ingest, G, "other", 10, False)
    ] == [b"c"]
    # re-read, the entries are no one else's to claim: their idle time started again (the
    # other consumer's, idle since, is)
    await asyncio.sleep(0.3)
    await broker.read_own_pending(keys.ingest, G, "me", 10, recount=False)
    claimed = await broker.claim_stale(keys.ingest, G, "thief", 200, 10)
    assert [e.payload for e in claimed] == [b"c"]
    assert [e.deliveries for e in await broker.read_own_pending(keys.ingest, G, "me", 1)] == [2]


async def test_claim_stale_only_after_idle(broker: Broker, keys: Keys) -> None:
    await broker.ensure_group(keys.ingest, G)
    await _add(broker, keys.ingest, b"a")
    await broker.read([keys.ingest], G, "dead", 1, None)
    assert await broker.claim_stale(keys.ingest, G, "alive", 10_000, 10) == []
    await asyncio.sleep(0.15)
    claimed = await broker.claim_stale(keys.ingest, G, "alive", 100, 10)
    assert [e.payload for e in claimed] == [b"a"]
    assert claimed[0].redelivered
    assert claimed[0].deliveries == 2
    assert await broker.read_own_pending(keys.ingest, G, "alive", 10) != []


async def test_touch_keeps_own_entries_and_never_takes_one_back(broker: Broker, keys: Keys) -> None:
    """A sender frozen past the claim idle time must not take back, by its heartbeat, an entry
    another sender claimed meanwhile: it learns the entry is lost instead."""
    await broker.ensure_group(keys.ingest, G)
    await _add(broker, keys.ingest, b"a", b"b")
    read = await broker.read([keys.ingest], G, "frozen", 2, None)
    ids = [e.entry_id for e in read]
    await asyncio.sleep(0.15)
    claimed = await broker.claim_stale(keys.ingest, G, "other", 100, 1)
    assert [e.entry_id for e in claimed] == ids[:1]
    lost = await broker.touch(keys.ingest, G, "frozen", ids)
    assert lost == {ids[0]}
    # the claimed entry stays the other sender's, the touched one this sender's
    assert [e.entry_id for e in await broker.read_own_pending(keys.ingest, G, "other", 10)] == [
        ids[0]
    ]
    assert [e.entry_id for e in await broker.read_own_pending(keys.ingest, G, "frozen", 10)] == [
        ids[1]
    ]
    # a touch resets the idle time: nothing is stale right after it
    assert await broker.claim_stale(keys.ingest, G, "other", 100, 10) == []
    await broker.commit(Commit(group=G, acks=[(keys.ingest, ids[1])]))
    assert await broker.touch(keys.ingest, G, "frozen", [ids[1]]) == {ids[1]}


async def test_commit_moves_atomically(broker: Broker, keys: Keys) -> None:
    await broker.ensure_group(keys.ingest, G)
    await _add(broker, keys.ingest, b"a")
    [entry] = await broker.read([keys.ingest], G, "c", 1, None)
    commit = Commit(
        group=G,
        acks=[(entry.stream, entry.entry_id)],
        adds=[(keys.send(Priority.HIGH), "m", b"a", "")],
        delays=[(keys.delayed("retry"), 60_000, routed(Priority.LOW, b"later"))],
        dead=[("d1", routed(Priority.NORMAL, b"{}"), b'{"error":"x"}')],
    )
    assert await broker.commit(commit) == {}
    depths = await broker.depths(
        [keys.ingest, keys.send(Priority.HIGH)], [keys.delayed("retry"), keys.dlq_index]
    )
    assert list(depths.values()) == [0, 1, 1, 1]


async def test_idempotency_keys_skip_repeats(broker: Broker, keys: Keys) -> None:
    k = keys.idempotency(1, "order-42")
    first = Commit(idempotency=[(k, "m1")], adds=[(keys.ingest, "m1", b"1", "")])
    assert await broker.commit(first) == {}
    second = Commit(idempotency=[(k, "m2")], adds=[(keys.ingest, "m2", b"2", "")])
    assert await broker.commit(second) == {"m2": "m1"}
    assert (await broker.depths([keys.ingest], []))[keys.ingest] == 1


async def test_a_taken_key_skips_only_its_own_message_of_a_batch(
    broker: Broker, keys: Keys
) -> None:
    """Ingest's commit of a batch with idempotency keys: a message whose key was taken is
    neither appended nor recorded, and the others of the batch are, in order."""
    taken = keys.idempotency(1, "order-1")
    await broker.commit(Commit(idempotency=[(taken, "m0")], adds=[(keys.ingest, "m0", b"0", "")]))
    chat = keys.chat_state(1, 9, Priority.NORMAL)
    batch = [f"m{i}" for i in range(1, 4)]

    def fields(i: int) -> dict[str, str]:  # one shared, two of its own
        return {"bot_id": "1", "chat_id": f"9{i}", "accepted_at": f"5.{i}"}

    commit = Commit(
        idempotency=[(taken, "m2"), (keys.idempotency(1, "order-3"), "m3")],
        adds=[(keys.ingest, m, m.encode(), chat) for m in batch],
        records=[(keys.record(m), m, fields(i)) for i, m in enumerate(batch)],
        record_ttl=60,
    )
    assert await broker.commit(commit) == {"m2": "m0"}
    await broker.ensure_group(keys.ingest, G)
    got = await broker.read([keys.ingest], G, "c", 10, None)
    assert [(e.payload, e.seq) for e in got] == [(b"0", None), (b"m1", 1), (b"m3", 2)]
    assert await broker.get_record(keys.record("m2")) is None
    for i, m in ((0, "m1"), (2, "m3")):
        assert await broker.get_record(keys.record(m)) == fields(i)
        assert 50 < await _record_lifetime(broker, keys.record(m)) <= 60


async def test_promote_due_moves_only_due_members(broker: Broker, keys: Keys) -> None:
    for s in keys.send_streams:
        await broker.ensure_group(s, G)
    retry = keys.delayed("retry")
    await broker.commit(
        Commit(
            delays=[
                (retry, 0, routed(Priority.LOW, b"now")),
                (retry, 60_000, routed(Priority.HIGH, b"later")),
            ]
        )
    )
    await asyncio.sleep(0.01)
    assert await broker.promote_due(retry, keys.send_streams, 10) == 1
    got = await broker.read(keys.send_streams, G, "c", 10, None)
    assert [(e.stream, e.payload) for e in got] == [(keys.send(Priority.LOW), b"now")]
    assert (await broker.depths([], [retry]))[retry] == 1


async def test_records_merge_fields(broker: Broker, keys: Keys) -> None:
    rk = keys.record("m1")
    await broker.put_records({rk: {"status": "queued", "priority": "low"}}, 60)
    await broker.put_records({rk: {"status": "sent"}}, 60)
    assert await broker.get_record(rk) == {"status": "sent", "priority": "low"}
    assert await broker.get_records([rk, keys.record("none")]) == [
        {"status": "sent", "priority": "low"},
        None,
    ]


async def test_dlq_list_requeue_drop(broker: Broker, keys: Keys) -> None:
    for s in keys.send_streams:
        await broker.ensure_group(s, G)
    dead = [
        ("d1", routed(Priority.HIGH, b"p1"), b'{"error":"blocked"}'),
        ("d2", routed(Priority.LOW, b"p2"), b'{"error":"missing"}'),
    ]
    await broker.commit(Commit(dead=dead))
    letters = await broker.dlq_list(10)
    assert [(d.message_id, d.priority, d.payload) for d in letters] == [
        ("d1", Priority.HIGH, b"p1"),
        ("d2", Priority.LOW, b"p2"),
    ]
    assert await broker.dlq_requeue(keys.send_streams, [("d1", routed(Priority.HIGH, b"new"))]) == 1
    assert await broker.dlq_requeue(keys.send_streams, [("d1", routed(Priority.HIGH, b"x"))]) == 0
    got = await broker.read(keys.send_streams, G, "c", 10, None)
    assert [e.payload for e in got] == [b"new"]
    assert await broker.dlq_drop("d2") is True
    assert await broker.dlq_drop("d2") is False
    assert await broker.dlq_list(10) == []


async def test_chat_order_gate_parks_and_releases(broker: Broker, keys: Keys) -> None:
    """Messages of one chat get sequence numbers; only the next may go; a settle releases."""
    stream = keys.send(Priority.NORMAL)
    chat, parked = keys.chat_state(1, 5, Priority.NORMAL), keys.parked(1, 5, Priority.NORMAL)
    PC = keys.parked_count
    await broker.ensure_group(stream, G)
    await broker.commit(Commit(adds=[(stream, f"m{i}", f"p{i}".encode(), chat) for i in range(3)]))
    first, second, third = await broker.read([stream], G, "c", 10, None)
    assert [e.seq for e in (first, second, third)] == [1, 2, 3]
    assert await broker.gate(chat, parked, third, G, 3, PC) == GATE_PARKED
    assert await broker.gate(chat, parked, second, G, 2, PC) == GATE_PARKED
    assert await broker.gate(chat, parked, first, G, 1, PC) == GATE_GO_LEADING, "two behind it"
    assert (await broker.depths([stream], []))[stream] == 1
    assert (await broker.depths([], [], [PC]))[PC] == 2
    settle = Commit(
        group=G, acks=[(stream, first.entry_id)], settles=[Settle(chat, parked, 1, stream, PC)]
    )
    await broker.commit(settle)
    [released] = await broker.read([stream], G, "c", 10, None)
    assert (released.payload, released.seq) == (b"p1", 2)
    assert await broker.gate(chat, parked, released, G, 2, PC) == GATE_GO_LEADING
    assert await broker.gate(chat, parked, first, G, 1, PC) == GATE_DONE
    await broker.commit(
        Commit(
            group=G,
            acks=[(stream, released.entry_id)],
            settles=[Settle(chat, parked, 2, stream, PC)],
        )
    )
    [last] = await broker.read([stream], G, "c", 10, None)
    assert (last.payload, last.seq) == (b"p2", 3)
    assert await broker.gate(chat, parked, last, G, 3, PC) == GATE_GO, "nothing behind it"
    assert (await broker.depths([], [], [PC]))[PC] == 0


async def test_dead_letters_past_their_retention_leave_oldest_first(
    broker: Broker, keys: Keys
) -> None:
    """``dlq_expire`` drops the dead letters that died longer ago than the retention, the
    oldest first and no more than asked; younger ones stay, with their payloads."""
    old = [(f"old{i}", routed(Priority.NORMAL, f"o{i}".encode()), b"{}") for i in range(5)]
    await broker.commit(Commit(dead=old))
    await asyncio.sleep(0.2)
    await broker.commit(Commit(dead=[("young", routed(Priority.NORMAL, b"y"), b"{}")]))
    assert await broker.dlq_expire(150, 3) == 3
    assert await broker.dlq_expire(150, 3) == 2
    assert await broker.dlq_expire(150, 3) == 0
    [left] = await broker.dlq_list(10)
    assert (left.message_id, left.payload) == ("young", b"y")


async def _order_outlives(broker: Broker, chat: str, seconds: int) -> bool:
    """Whether a chat's order state is still there ``seconds`` from now."""
    if isinstance(broker, MemoryBroker):
        return not broker._chats[chat].expired(time.monotonic() + seconds)
    assert isinstance(broker, RedisBroker)
    return int(await broker._redis.ttl(chat)) > seconds


async def _two_in_a_chat(
    broker: Broker, keys: Keys, chat_id: int
) -> tuple[str, str, str, list[Entry]]:
    """Two messages of one chat queued and read: the stream, the chat's state and parked
    keys, the two entries (sequence numbers 1 and 2)."""
    stream = keys.send(Priority.NORMAL)
    chat = keys.chat_state(1, chat_id, Priority.NORMAL)
    await broker.ensure_group(stream, G)
    await broker.commit(Commit(adds=[(stream, f"m{i}", f"p{i}".encode(), chat) for i in range(2)]))
    entries = await broker.read([stream], G, "c", 10, None)
    return stream, chat, keys.parked(1, chat_id, Priority.NORMAL), entries


async def test_a_settled_chat_keeps_its_order_a_short_while(broker: Broker, keys: Keys) -> None:
    """While a chat has a message queued its order state lives ORDER_TTL; once every message
    has settled, SETTLED_ORDER_TTL only (kept 7 days, the states of a broadcast to 10 million
    chats a day held about 9.5 GB of Redis). Meanwhile a late copy of a settled message is
    still told it is done."""
    stream, chat, parked, (first, second) = await _two_in_a_chat(broker, keys, 6)
    PC = keys.parked_count
    for entry in (first, second):
        assert entry.seq is not None
        assert await broker.gate(chat, parked, entry, G, entry.seq, PC) in (GATE_GO, GATE_PARKED)
        settle = Settle(chat, parked, entry.seq, stream, PC)
        await broker.commit(Commit(group=G, acks=[(stream, entry.entry_id)], settles=[settle]))
        if entry is first:
            assert await _order_outlives(broker, chat, ORDER_TTL - 60), "the second is queued"
    assert await _order_outlives(broker, chat, SETTLED_ORDER_TTL - 60)
    assert not await _order_outlives(broker, chat, SETTLED_ORDER_TTL), "all settled: short"
    assert await broker.gate(chat, parked, first, G, 1, PC) == GATE_DONE
    await broker.commit(Commit(adds=[(stream, "m2", b"p2", chat)]))
    assert await _order_outlives(broker, chat, ORDER_TTL - 60), "a new message renews it"


async def test_the_gate_parks_nothing_for_an_entry_gone_from_its_stream(
    broker: Broker, keys: Keys
) -> None:
    """An entry no longer in its stream was acknowledged by a consumer that claimed it
    meanwhile and parked or settled it then: a late gate on it parks nothing."""
    stream, chat, parked, (_, second) = await _two_in_a_chat(broker, keys, 7)
    PC = keys.parked_count
    await broker.commit(Commit(group=G, acks=[(stream, second.entry_id)]))
    assert await broker.gate(chat, parked, second, G, 2, PC) == GATE_PARKED
    assert (await broker.depths([], [parked], [PC])) == {parked: 0, PC: 0}


async def _record_lifetime(broker: Broker, key: str) -> float:
    """Seconds a status record has left (-1: none, it lives for ever)."""
    if isinstance(broker, MemoryBroker):
        return broker._records[key][1] - time.monotonic()
    assert isinstance(broker, RedisBroker)
    return float(await broker._redis.ttl(key))


async def test_a_record_keeping_its_lifetime_is_never_made_without_one(
    broker: Broker, keys: Keys
) -> None:
    """Written "keeping its lifetime" (the sender's settle, a multi-part message's progress),
    a record that is there keeps it; one that had expired meanwhile (a backlog longer than its
    lifetime, an unreadable entry's record) is made anew with UNTIMED_RECORD_TTL, not for ever."""
    kept, gone, progress = (keys.record(f"life{i}") for i in range(3))
    await broker.put_records({kept: {"status": "queued"}}, 100)
    await broker.commit(Commit(records=[(kept, "", {"status": "sent"}), (gone, "", {"a": "1"})]))
    await broker.put_records({progress: {"telegram_message_ids": "1,2"}}, None)
    assert 90 < await _record_lifetime(broker, kept) <= 100, "kept as it was"
    for key in (gone, progress):
        assert UNTIMED_RECORD_TTL - 60 < await _record_lifetime(broker, key) <= UNTIMED_RECORD_TTL


async def test_a_record_that_expired_is_made_anew_not_revived(broker: Broker, keys: Keys) -> None:
    """A write to a record whose lifetime has run out makes a new one, of the written fields
    alone and with a lifetime, as Redis does (the embedded broker merged into the expired one
    and kept its past expiry, so the write was lost)."""
    record = keys.record("lapsed")
    await broker.put_records({record: {"status": "queued", "priority": "low"}}, 1)
    await asyncio.sleep(1.1)
    await broker.commit(Commit(records=[(record, "", {"status": "sent"})]))
    assert await broker.get_record(record) == {"status": "sent"}
    assert UNTIMED_RECORD_TTL - 60 < await _record_lifetime(broker, record) <= UNTIMED_RECORD_TTL


async def test_the_gate_marks_a_record_sending_but_never_makes_one(
    broker: Broker, keys: Keys
) -> None:
    """A message that goes is ``sending`` in its status record; a record that has expired is
    not made again (it would have no lifetime)."""
    stream = keys.send(Priority.NORMAL)
    chat, parked = keys.chat_state(1, 6, Priority.NORMAL), keys.parked(1, 6, Priority.NORMAL)
    await broker.ensure_group(stream, G)
    await broker.commit(Commit(adds=[(stream, f"m{i}", b"p", chat) for i in range(2)]))
    first, second = await broker.read([stream], G, "c", 10, None)
    kept, gone = keys.record("kept"), keys.record("gone")
    await broker.put_records({kept: {"status": "queued", "priority": "normal"}}, 60)
    assert await broker.gate(chat, parked, first, G, 1, keys.parked_count, kept) == GATE_GO
    assert await broker.get_record(kept) == {"status": "sending", "priority": "normal"}
    settle = Settle(chat, parked, 1, stream, keys.parked_count)
    await broker.commit(Commit(group=G, acks=[(stream, first.entry_id)], settles=[settle]))
    assert await broker.gate(chat, parked, second, G, 2, keys.parked_count, gone) == GATE_GO
    assert await broker.get_record(gone) is None


async def test_one_commit_for_many_messages_does_what_a_commit_each_would(
    broker: Broker, keys: Keys
) -> None:
    """A sender's or a scheduler's commit carries a batch: appends to two streams, interleaved,
    number each chat's messages in order; acknowledgements, settles and status records of
    several streams, chats and kinds of record, some fields shared and some not, all take
    effect as they would one by one (on Redis they go to the script grouped, what they share
    once); a record given a lifetime of its own keeps it."""
    normal, high = keys.send(Priority.NORMAL), keys.send(Priority.HIGH)
    chats = {
        s: keys.chat_state(1, n, p)
        for s, n, p in ((normal, 7, Priority.NORMAL), (high, 8, Priority.HIGH))
    }
    parks = {
        s: keys.parked(1, n, p)
        for s, n, p in ((normal, 7, Priority.NORMAL), (high, 8, Priority.HIGH))
    }
    PC = keys.parked_count
    for s in (normal, high):
        await broker.ensure_group(s, G)
    order = [normal, high, normal, high, normal]
    adds = [(s, f"m{i}", f"p{i}".encode(), chats[s]) for i, s in enumerate(order)]
    await broker.commit(Commit(adds=adds))
    got = await broker.read([high, normal], G, "c", 10, None)
    assert [(e.stream, e.payload, e.seq) for e in got] == [
        (high, b"p1", 1),
        (high, b"p3", 2),
        (normal, b"p0", 1),
        (normal, b"p2", 2),
        (normal, b"p4", 3),
    ]
    first = {e.stream: e for e in got if e.seq == 1}
    for e in got:
        if e.seq != 1:
            assert e.seq is not None
            assert (
                await broker.gate(chats[e.stream], parks[e.stream], e, G, e.seq, PC) == GATE_PARKED
            )
    sent = [keys.record(f"sent{i}") for i in range(3)]
    dead, own_life = keys.record("dead"), keys.record("own")
    await broker.put_records({sent[0]: {"priority": "low"}}, 100)
    records = [
        (sent[0], "", {"status": "sent", "updated_at": "5.0", "telegram_message_ids": "10"}),
        (sent[1], "", {"status": "sent", "updated_at": "5.0", "telegram_message_ids": "11"}),
        (dead, "", {"status": "dead", "updated_at": "5.0", "error": "boom"}),
        (sent[2], "", {"status": "sent", "updated_at": "5.0", "telegram_message_ids": "12"}),
        (own_life, "", {"status": "sent", "updated_at": "5.0", "telegram_message_ids": "13"}),
    ]
    await broker.commit(
        Commit(
            group=G,
            acks=[(s, first[s].entry_id) for s in (normal, high)],
            settles=[Settle(chats[s], parks[s], 1, s, PC) for s in (normal, high)],
            records=records,
            record_ttl=None,
            record_ttls={own_life: 300},
        )
    )
    released = await broker.read([high, normal], G, "c", 10, None)
    assert [(e.stream, e.payload, e.seq) for e in released] == [
        (high, b"p3", 2),
        (normal, b"p2", 2),
    ]
    assert (await broker.depths([], [], [PC]))[PC] == 1, "p4 waits behind p2"
    assert await broker.get_record(sent[0]) == {
        "priority": "low",
        "status": "sent",
        "updated_at": "5.0",
        "telegram_message_ids": "10",
    }
    for key, _, fields in records[1:]:
        assert await broker.get_record(key) == fields
    assert 90 < await _record_lifetime(broker, sent[0]) <= 100, "kept as it was"
    assert 290 < await _record_lifetime(broker, own_life) <= 300
    for key in (dead, sent[1], sent[2]):  # made anew here: the lifetime of one that had none
        assert UNTIMED_RECORD_TTL - 60 < await _record_lifetime(broker, key) <= UNTIMED_RECORD_TTL
    twice = keys.record("twice")
    writes = [
        (sent[1], "", {"status": "sent", "updated_at": "6.0", "telegram_message_ids": "21"}),
        (twice, "", {"status": "retrying", "error": "e1"}),
        (twice, "", {"status": "sent", "updated_at": "6.0", "telegram_message_ids": "22"}),
    ]
    await broker.commit(Commit(records=writes, record_ttl=60))
    assert await broker.get_record(twice) == {
        "status": "sent",
        "error": "e1",
        "updated_at": "6.0",
        "telegram_message_ids": "22",
    }, "written twice in one commit: in order"


async def test_one_commit_settles_several_chats_of_a_stream(broker: Broker, keys: Keys) -> None:
    """A sender's commit settles the messages of many chats of one stream at once: each chat's
    next parked message is released with its own sequence number."""
    stream, PC = keys.send(Priority.NORMAL), keys.parked_count
    order = {c: keys.order(1, c, Priority.NORMAL) for c in (31, 32, 33)}
    await broker.ensure_group(stream, G)
    adds = [
        (stream, f"m{c}-{n}", f"{c}-{n}".encode(), order[c][0]) for n in range(2) for c in order
    ]
    await broker.commit(Commit(adds=adds))
    got = await broker.read([stream], G, "c", 10, None)
    parked_of = dict(order.values())
    firsts = []
    for entry, (_, _, _, chat) in zip(got, adds, strict=True):
        parked = parked_of[chat]
        assert entry.seq is not None
        verdict = await broker.gate(chat, parked, entry, G, entry.seq, PC)
        if entry.seq == 1:
            firsts.append((entry, chat, parked))
        else:
            assert verdict == GATE_PARKED
    settles = [Settle(chat, parked, 1, stream, PC) for _, chat, parked in firsts[:2]]
    await broker.commit(
        Commit(group=G, acks=[(stream, e.entry_id) for e, _, _ in firsts], settles=settles)
    )
    released = await broker.read([stream], G, "c", 10, None)
    assert sorted((e.payload, e.seq) for e in released) == [(b"31-1", 2), (b"32-1", 2)]
    assert (await broker.depths([], [], [PC]))[PC] == 1, "33's second waits: its first is unsettled"


async def test_a_commit_acknowledges_any_number_of_entries(broker: Broker, keys: Keys) -> None:
    """Redis takes a commit's acknowledgements of one stream in a few commands (at most 1,000
    entries each): 8,001 entries acknowledged in one commit are all gone."""
    await broker.ensure_group(keys.ingest, G)
    await _add(broker, keys.ingest, *(b"x" for _ in range(8001)))
    entries = await broker.read([keys.ingest], G, "c", 9000, None)
    assert len(entries) == 8001
    await broker.commit(Commit(group=G, acks=[(keys.ingest, e.entry_id) for e in entries]))
    assert (await broker.depths([keys.ingest], []))[keys.ingest] == 0
    assert await broker.read_own_pending(keys.ingest, G, "c", 9000) == []


async def test_promote_and_requeue_assign_new_places(broker: Broker, keys: Keys) -> None:
    stream = keys.send(Priority.LOW)
    chat = keys.chat_state(2, 9, Priority.LOW)
    for s in keys.send_streams:
        await broker.ensure_group(s, G)
    scheduled = keys.delayed("scheduled")
    await broker.commit(Commit(delays=[(scheduled, 0, routed(Priority.LOW, b"a", chat))]))
    await broker.commit(Commit(dead=[("d9", routed(Priority.LOW, b"x"), b"{}")]))
    await asyncio.sleep(0.01)
    assert await broker.promote_due(scheduled, keys.send_streams, 10) == 1
    assert (
        await broker.dlq_requeue(keys.send_streams, [("d9", routed(Priority.LOW, b"b", chat))]) == 1
    )
    got = await broker.read([stream], G, "c", 10, None)
    assert [(e.payload, e.seq) for e in got] == [(b"a", 1), (b"b", 2)]


async def test_promote_keeps_due_order_across_chats_and_plain_members(
    broker: Broker, keys: Keys
) -> None:
    """Members with and without chat state keys, of two chats, leave oldest first (the Redis
    backend learns the chat keys of due members in a first call and moves them in a second)."""
    stream = keys.send(Priority.NORMAL)
    await broker.ensure_group(stream, G)
    retry = keys.delayed("retry")
    one, two = keys.chat_state(3, 1, Priority.NORMAL), keys.chat_state(3, 2, Priority.NORMAL)
    members = [b"p1", (b"c1", one), b"p2", (b"c2", two), (b"c3", one)]
    for n, item in enumerate(members):
        payload, chat = item if isinstance(item, tuple) else (item, "")
        member = routed(Priority.NORMAL, payload, chat)
        await broker.commit(Commit(delays=[(retry, -10_000 + n * 1000, member)]))
    assert await broker.promote_due(retry, keys.send_streams, 10) == 5
    got = await broker.read([stream], G, "c", 10, None)
    assert [(e.payload, e.seq) for e in got] == [
        (b"p1", None),
        (b"c1", 1),
        (b"p2", None),
        (b"c2", 1),
        (b"c3", 2),
    ]


async def test_old_updates_are_trimmed(broker: Broker, keys: Keys) -> None:
    """A stream other groups read (updates) loses what is older than the retention."""
    stream = keys.updates
    await broker.ensure_group(stream, G)
    await broker.commit(Commit(adds=[(stream, f"old{i}", b"old", "") for i in range(3)]))
    await asyncio.sleep(0.05)
    await broker.commit(Commit(adds=[(stream, "new", b"new", "")]))
    await broker.trim_older(stream, 30)
    entries = await broker.read([stream], G, "c", 10, None)
    assert [e.payload for e in entries] == [b"new"]


async def test_idle_consumers_holding_nothing_are_forgotten(
    keys: Keys, redis_client: redis.Redis
) -> None:
    broker = RedisBroker(redis_client, dlq_keys(keys))
    stream = keys.send(Priority.NORMAL)
    await broker.ensure_group(stream, G)
    await broker.commit(Commit(adds=[(stream, f"m{i}", b"p", "") for i in range(2)]))
    [done] = await broker.read([stream], G, "gone-pod", 1, None)
    await broker.commit(Commit(group=G, acks=[(stream, done.entry_id)]))
    assert len(await broker.read([stream], G, "busy-pod", 1, None)) == 1
    await asyncio.sleep(0.05)
    assert await broker.forget_consumers(stream, G, 10_000) == [], "not idle long enough"
    assert await broker.forget_consumers(stream, G, 20) == ["gone-pod"]
    infos = await redis_client.xinfo_consumers(stream, G)
    assert [i["name"] for i in infos] == [b"busy-pod"], "a consumer holding an entry stays"
    assert await broker.forget_consumers(f"{stream}-none", G, 20) == [], "no stream: nothing"


async def test_a_commit_sent_again_changes_nothing(broker: Broker, keys: Keys) -> None:
    """A commit retried after its reply was lost (it was applied) must not apply twice."""
    stream = keys.send(Priority.NORMAL)
    await broker.ensure_group(stream, G)
    commit = Commit(adds=[(stream, "m1", b"handed back", "")], once=keys.commit_mark("t1"))
    await broker.commit(commit)
    await broker.commit(commit)
    assert [e.payload for e in await broker.read([stream], G, "c", 10, None)] == [b"handed back"]
    other = Commit(adds=[(stream, "m2", b"another batch", "")], once=keys.commit_mark("t2"))
    await broker.commit(other)
    assert [e.payload for e in await broker.read([stream], G, "c", 10, None)] == [b"another batch"]


async def test_pending_entries_trimmed_away_are_let_go(broker: Broker, keys: Keys) -> None:
    """An update trimmed while pending (a recorder far behind) does not stay pending for ever."""
    stream = keys.updates
    await broker.ensure_group(stream, G)
    await broker.commit(Commit(adds=[(stream, "u1", b"old", "")]))
    assert len(await broker.read([stream], G, "c", 10, None)) == 1
    await asyncio.sleep(0.05)
    await broker.trim_older(stream, 10)
    await broker.read_own_pending(stream, G, "c", 10)
    assert await broker.read_own_pending(stream, G, "c", 10) == []


async def test_a_message_settled_before_its_turn_skips_none_before_it(
    broker: Broker, keys: Keys
) -> None:
    """A message dead-lettered while an earlier one of its chat is still on its way (the
    scheduler gave up on it, or Redis refused its gate's writes) settles out of turn: the
    cursor must not jump past the earlier one, which would then be taken for done and never
    sent. It is passed over once the cursor gets to it, releasing what waits behind it."""
    stream = keys.send(Priority.NORMAL)
    chat, parked = keys.chat_state(1, 6, Priority.NORMAL), keys.parked(1, 6, Priority.NORMAL)
    PC = keys.parked_count
    await broker.ensure_group(stream, G)
    await broker.commit(Commit(adds=[(stream, f"m{i}", f"p{i}".encode(), chat) for i in range(4)]))
    first, second, third, fourth = await broker.read([stream], G, "c", 10, None)
    dead = Commit(
        group=G, acks=[(stream, third.entry_id)], settles=[Settle(chat, parked, 3, stream, PC)]
    )
    await broker.commit(dead)
    await broker.commit(dead)  # the same settle again (a retried commit) marks it once
    assert await broker.gate(chat, parked, fourth, G, 4, PC) == GATE_PARKED
    assert await broker.gate(chat, parked, first, G, 1, PC) == GATE_GO_LEADING, "not done"
    await broker.commit(
        Commit(
            group=G, acks=[(stream, first.entry_id)], settles=[Settle(chat, parked, 1, stream, PC)]
        )
    )
    assert await broker.gate(chat, parked, second, G, 2, PC) == GATE_GO_LEADING, "not done"
    assert await broker.read([stream], G, "c", 10, None) == [], "4 waits for 2"
    await broker.commit(
        Commit(
            group=G, acks=[(stream, second.entry_id)], settles=[Settle(chat, parked, 2, stream, PC)]
        )
    )
    [released] = await broker.read([stream], G, "c", 10, None)
    assert (released.payload, released.seq) == (b"p3", 4), "3 passed over, 4 released"
    assert await broker.gate(chat, parked, released, G, 4, PC) == GATE_GO
    assert await broker.gate(chat, parked, third, G, 3, PC) == GATE_DONE
    assert (await broker.depths([], [], [PC]))[PC] == 0


async def test_a_trim_keeps_what_the_store_has_not_recorded(broker: Broker, keys: Keys) -> None:
    """While the message store is away its group falls behind the retention: the trim of the
    updates keeps every entry that group has not acknowledged (pending or not yet read), or
    those updates were never recorded, silently."""
    stream, store = keys.updates, "store"
    await broker.ensure_group(stream, store)
    await broker.ensure_group(stream, G)  # an application's own group, all read
    await broker.commit(Commit(adds=[(stream, f"u{i}", f"u{i}".encode(), "") for i in range(4)]))
    await broker.read([stream], G, "app", 10, None)
    first, second = await broker.read([stream], store, "rec", 2, None)  # pending to the store
    await asyncio.sleep(0.05)
    await broker.trim_older(stream, 10, store)
    assert len(await broker.read_own_pending(stream, store, "rec", 10)) == 2, "pending: kept"
    await broker.commit(Commit(group=store, seen=[(stream, first.entry_id)]))
    await broker.trim_older(stream, 10, store)
    pending = await broker.read_own_pending(stream, store, "rec", 10)
    assert [e.payload for e in pending] == [b"u1"], "the recorded one went, the next stayed"
    await broker.commit(Commit(group=store, seen=[(stream, second.entry_id)]))
    await broker.trim_older(stream, 10, store)
    unread = await broker.read([stream], store, "rec", 10, None)
    assert [e.payload for e in unread] == [b"u2", b"u3"], "never read by the store: kept"
    await broker.commit(Commit(group=store, seen=[(stream, e.entry_id) for e in unread]))
    await broker.trim_older(stream, 10, store)
    await broker.ensure_group(stream, "late")
    assert await broker.read([stream], "late", "x", 10, None) == [], "all recorded: all gone"


async def test_marks_left_behind_by_an_earlier_release_are_passed_at_the_gate(
    broker: Broker, keys: Keys
) -> None:
    """During a rolling upgrade a process of an earlier release settles in turn without reading
    the out-of-turn marks: the cursor stops before a mark, and the message parked after it has
    nobody to release it. The chat's next message at the gate passes the mark and releases it."""
    stream = keys.send(Priority.NORMAL)
    chat, parked = keys.chat_state(1, 7, Priority.NORMAL), keys.parked(1, 7, Priority.NORMAL)
    PC = keys.parked_count
    await broker.ensure_group(stream, G)
    await broker.commit(Commit(adds=[(stream, f"m{i}", f"p{i}".encode(), chat) for i in range(5)]))
    entries = await broker.read([stream], G, "c", 10, None)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    dead = Settle(chat, parked, 3, stream, PC)  # the third died before its turn
    await broker.commit(Commit(group=G, acks=[(stream, entries[2].entry_id)], settles=[dead]))
    assert await broker.gate(chat, parked, entries[3], G, 4, PC) == GATE_PARKED
    # the first two sent and settled by a sender of the earlier release: cursor 2, mark unread
    if isinstance(broker, MemoryBroker):
        broker._chats[chat].cur = 2
    else:
        await cast(RedisBroker, broker).client.hset(chat, "cur", 2)
    assert await broker.gate(chat, parked, entries[4], G, 5, PC) == GATE_PARKED
    [released] = await broker.read([stream], G, "c", 10, None)
    assert (released.payload, released.seq) == (b"p3", 4), "the parked one goes now"
    assert await broker.gate(chat, parked, released, G, 4, PC) == GATE_GO_LEADING
