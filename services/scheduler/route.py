"""Turning ingest entries into send-queue entries: priority, splitting and send_at."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError

from services.scheduler.split import split_html, split_text
from shared.broker import Commit, Entry, Settle, routed
from shared.keys import SCHEDULER_GROUP, Keys
from shared.models import Envelope, Priority, Status, salvage_order
from shared.priority import decide_priority

EARLY_MS = 50


@dataclass
class Plan:
    """The commit and status records one batch of ingest entries produces."""

    commit: Commit = field(default_factory=lambda: Commit(group=SCHEDULER_GROUP))
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    routed: dict[Priority, int] = field(default_factory=dict)
    delayed: int = 0
    extra_parts: int = 0
    poison: int = 0
    ahead: dict[str, float] = field(default_factory=dict)  # record key: seconds until send_at
    dead: set[str] = field(default_factory=set)  # record keys of messages dead here


def plan_batch(
    keys: Keys, entries: Sequence[Entry], now: float | None = None, max_deliveries: int = 5
) -> Plan:
    """Route every entry; one that does not parse, or keeps killing its consumers, goes to the
    DLQ with the reason."""
    plan = Plan()
    now = time.time() if now is None else now
    for entry in entries:
        plan.commit.acks.append((entry.stream, entry.entry_id))
        try:
            envelope = Envelope.loads(entry.payload)
        except ValidationError as exc:
            _poison(plan, entry, str(exc))
            # one with a place in its chat's order gives it up, or the chat waits forever
            stand_in = salvage_order(entry.payload, "", entry.seq)
            if stand_in is not None:
                _release_turn(plan, keys, stand_in)
            continue
        if entry.seq is not None:
            envelope.seq = entry.seq
        if entry.deliveries > max_deliveries:
            reason = f"delivered {entry.deliveries} times without being routed"
            _poison(plan, entry, reason, envelope.id)
            plan.records[keys.record(envelope.id)] = {"status": Status.DEAD.value, "error": reason}
            plan.dead.add(keys.record(envelope.id))
            _release_turn(plan, keys, envelope)
            continue
        _route(plan, keys, envelope, now)
    return plan


def _release_turn(plan: Plan, keys: Keys, envelope: Envelope) -> None:
    """A message dead-lettered here had its place in its chat: give the turn to the next."""
    if envelope.seq is None:
        return
    priority = decide_priority(envelope)
    chat, parked = keys.order(envelope.bot_id, envelope.order_key, priority)
    settle = Settle(chat, parked, envelope.seq, keys.send(priority), keys.parked_count)
    plan.commit.settles.append(settle)


def _html(envelope: Envelope) -> bool:
    mode = envelope.params.get("parse_mode")
    return isinstance(mode, str) and mode.lower() == "html"


def _route(plan: Plan, keys: Keys, envelope: Envelope, now: float) -> None:
    decided_at_ingest = envelope.priority is not None  # and written in the record then
    priority = decide_priority(envelope)
    envelope.priority = priority
    if envelope.method == "sendMessage" and envelope.parts and envelope.part == 0:
        split = split_html if _html(envelope) else split_text
        parts = [p for text in envelope.parts for p in split(text)]
        plan.extra_parts += len(parts) - len(envelope.parts)
        envelope.parts = parts
    record = {"status": Status.SCHEDULED.value, "updated_at": f"{now:.3f}"}
    if not decided_at_ingest:
        record["priority"] = priority.value
    if envelope.parts and len(envelope.parts) > 1:
        record["parts"] = str(len(envelope.parts))
    plan.records[keys.record(envelope.id)] = record
    chat = keys.chat_state(envelope.bot_id, envelope.order_key, priority)
    delay_ms = int(((envelope.send_at or 0.0) - now) * 1000)
    if delay_ms > EARLY_MS:
        member = routed(priority, envelope.dumps(), chat)
        plan.commit.delays.append((keys.delayed("scheduled"), delay_ms, member))
        plan.ahead[keys.record(envelope.id)] = delay_ms / 1000
        plan.delayed += 1
        return
    # a message placed in its chat's order at ingest keeps that place (its payload carries it)
    placed = "" if envelope.seq is not None else chat
    plan.commit.adds.append((keys.send(priority), envelope.id, envelope.dumps(), placed))
    plan.routed[priority] = plan.routed.get(priority, 0) + 1


def _poison(plan: Plan, entry: Entry, reason: str, message_id: str = "") -> None:
    ident = message_id or f"poison-ingest-{entry.entry_id}"
    meta = orjson.dumps({"error": f"unreadable entry: {reason[:500]}", "stage": "scheduler"})
    plan.commit.dead.append((ident, routed(Priority.NORMAL, entry.payload), meta))
    plan.poison += 1
