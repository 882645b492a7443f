"""Routing ingest entries: priority, splitting, send_at, unreadable entries."""

from __future__ import annotations

import time

import orjson

from services.scheduler.route import plan_batch
from shared.broker import Entry, unroute
from shared.keys import Keys
from shared.models import Envelope, Kind, Priority

KEYS = Keys("fg")


def _entry(env: Envelope, n: int = 1) -> Entry:
    return Entry(KEYS.ingest, f"1-{n}", env.dumps())


def _env(**kw) -> Envelope:
    base = {
        "id": "m1",
        "bot_id": 1,
        "method": "sendMessage",
        "params": {"chat_id": 5},
        "parts": ["hi"],
        "accepted_at": 0.0,
    }
    return Envelope(**(base | kw))


def test_routes_by_kind_and_acks() -> None:
    plan = plan_batch(KEYS, [_entry(_env(kind=Kind.SYSTEM))])
    [(stream, _ident, payload, chat)] = plan.commit.adds
    assert chat == KEYS.chat_state(1, 5, Priority.HIGH)
    assert stream == KEYS.send(Priority.HIGH)
    assert Envelope.loads(payload).priority is Priority.HIGH
    assert plan.commit.acks == [(KEYS.ingest, "1-1")]
    assert plan.records[KEYS.record("m1")]["status"] == "scheduled"


def test_the_record_gets_a_priority_only_where_ingest_wrote_none() -> None:
    """Ingest writes the priority it decided in the record: the scheduler does not write it
    again (two arguments and a field a message), only one it decides itself."""
    plan = plan_batch(KEYS, [_entry(_env(priority=Priority.LOW)), _entry(_env(id="m2"), 2)])
    assert "priority" not in plan.records[KEYS.record("m1")]
    assert plan.records[KEYS.record("m2")]["priority"] == "normal"


def test_long_text_split_into_parts_of_one_envelope() -> None:
    plan = plan_batch(KEYS, [_entry(_env(parts=["a" * 5000]))])
    [(_, _, payload, _)] = plan.commit.adds
    assert [len(p) for p in Envelope.loads(payload).parts or []] == [4096, 904]
    assert plan.extra_parts == 1


def test_future_send_at_waits_in_scheduled_set() -> None:
    now = time.time()
    plan = plan_batch(KEYS, [_entry(_env(send_at=now + 30))], now=now)
    assert plan.commit.adds == []
    [(delay_set, delay_ms, member)] = plan.commit.delays
    assert delay_set == KEYS.delayed("scheduled")
    assert 29_000 < delay_ms <= 30_000
    assert unroute(member)[:2] == (Priority.NORMAL, KEYS.chat_state(1, 5, Priority.NORMAL))


def test_past_send_at_goes_now() -> None:
    plan = plan_batch(KEYS, [_entry(_env(send_at=time.time() - 5))])
    assert len(plan.commit.adds) == 1


def test_unreadable_entry_is_dead_lettered() -> None:
    plan = plan_batch(KEYS, [Entry(KEYS.ingest, "1-9", b"garbage")])
    assert plan.poison == 1
    [(ident, _, meta)] = plan.commit.dead
    assert ident == "poison-ingest-1-9"
    assert b"unreadable" in meta
    assert plan.commit.acks == [(KEYS.ingest, "1-9")]


def test_entry_that_keeps_killing_consumers_is_dead_lettered() -> None:
    entry = Entry(KEYS.ingest, "1-3", _env().dumps(), redelivered=True, deliveries=6)
    plan = plan_batch(KEYS, [entry], max_deliveries=5)
    assert plan.poison == 1
    assert b"delivered 6 times" in plan.commit.dead[0][2]
    assert plan.commit.adds == []


def test_place_given_at_ingest_is_kept() -> None:
    entry = Entry(KEYS.ingest, "1-4", _env().dumps(), seq=7)
    plan = plan_batch(KEYS, [entry])
    [(_, _, payload, chat)] = plan.commit.adds
    assert chat == "", "no new place in the chat's order"
    assert Envelope.loads(payload).seq == 7


def test_poison_with_a_place_hands_the_turn_on() -> None:
    entry = Entry(KEYS.ingest, "1-5", _env().dumps(), redelivered=True, deliveries=9, seq=3)
    plan = plan_batch(KEYS, [entry], max_deliveries=5)
    [settle] = plan.commit.settles
    assert (settle.chat_state, settle.seq) == (KEYS.chat_state(1, 5, Priority.NORMAL), 3)


def test_scheduled_record_is_kept_until_after_send_at() -> None:
    now = time.time()
    env = _env(send_at=now + 3600)
    plan = plan_batch(KEYS, [_entry(env)], now=now)
    assert 3599 < plan.ahead[KEYS.record(env.id)] <= 3600


def test_unreadable_entry_with_a_place_hands_the_turn_on() -> None:
    """No valid envelope (an upgrade's two versions disagree on one), but its JSON still says
    its chat: the dead letter gives up its place, or the chat would wait behind it forever."""
    payload = orjson.loads(_env(priority=Priority.LOW).dumps()) | {"accepted_at": "no time"}
    entry = Entry(KEYS.ingest, "1-6", orjson.dumps(payload), seq=4)
    plan = plan_batch(KEYS, [entry])
    assert len(plan.commit.dead) == 1
    [settle] = plan.commit.settles
    assert (settle.chat_state, settle.seq) == (KEYS.chat_state(1, 5, Priority.LOW), 4)


def test_unreadable_entry_that_names_no_chat_settles_nothing() -> None:
    plan = plan_batch(KEYS, [Entry(KEYS.ingest, "1-7", b'{"bot_id": 1}', seq=2)])
    assert len(plan.commit.dead) == 1
    assert plan.commit.settles == []
