"""What became of one send-queue entry, and how that is written back."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

import orjson

from shared.broker import Commit, Entry, Settle, routed
from shared.keys import Keys
from shared.models import Envelope, Priority, Status


class Verdict(enum.Enum):
    """The ways an entry is settled."""

    SENT = "sent"
    ALREADY_SENT = "already_sent"
    DEFER = "defer"
    RETRY = "retry"
    DEAD = "dead"
    HAND_BACK = "hand_back"
    PARKED = "parked"
    LOST = "lost"  # claimed by another sender meanwhile: nothing to write, the entry is theirs


# Verdicts after which the message's chat may go on with its next message.
SETTLING = frozenset({Verdict.SENT, Verdict.ALREADY_SENT, Verdict.DEAD})


@dataclass(slots=True)
class Decision:
    """One settled entry: its verdict, the envelope as it now stands and any delay or error."""

    entry: Entry
    envelope: Envelope
    verdict: Verdict
    delay_ms: int = 0
    error: str = ""
    reason: str = ""
    raw: bytes | None = None  # an entry that could not be read: kept as it came
    result: Any = None  # Telegram's ``result``, kept for an envelope with ``keep_result``
    error_code: int = 0  # Telegram's ``error_code`` of a dead message, likewise

    @property
    def priority(self) -> Priority:
        """The queue the message belongs to."""
        return self.envelope.priority or Priority.NORMAL


def apply(
    keys: Keys,
    decision: Decision,
    commit: Commit,
    records: dict[str, dict[str, str]],
    events: bool = False,
) -> None:
    """Add what ``decision`` writes to a batch: the status record, and the commit's changes;
    with ``events``, a sent or dead message is also announced for the message store."""
    env, now, verdict = decision.envelope, f"{time.time():.3f}", decision.verdict
    if verdict in (Verdict.PARKED, Verdict.LOST):
        return
    commit.acks.append((decision.entry.stream, decision.entry.entry_id))
    if verdict in SETTLING and env.seq is not None:
        chat, parked = keys.order(env.bot_id, env.order_key, decision.priority)
        stream = keys.send(decision.priority)
        commit.settles.append(Settle(chat, parked, env.seq, stream, keys.parked_count))
    if verdict is Verdict.ALREADY_SENT:
        return
    record: dict[str, str] = {"updated_at": now}
    if env.attempts:  # none yet: the record has none (or "0", after a replay) and reads as 0
        record["attempts"] = str(env.attempts)
    match verdict:
        case Verdict.SENT:
            ids = ",".join(str(i) for i in env.sent_ids)
            # updated_at is when it was sent; an error is cleared only where one may be left
            # from an earlier attempt (fewer fields to write, and to keep for record_ttl)
            record |= {"status": Status.SENT.value, "telegram_message_ids": ids}
            if env.attempts or env.errors:
                record["error"] = ""
        case Verdict.DEFER:
            record["status"] = Status.SCHEDULED.value
            commit.delays.append((keys.delayed("deferred"), decision.delay_ms, _member(decision)))
        case Verdict.RETRY:
            record |= {"status": Status.RETRYING.value, "error": decision.error}
            commit.delays.append((keys.delayed("retry"), decision.delay_ms, _member(decision)))
        case Verdict.DEAD:
            record |= {"status": Status.DEAD.value, "error": decision.error}
            commit.dead.append((env.id, _member(decision), _dead_meta(decision, float(now))))
        case Verdict.HAND_BACK:
            record["status"] = Status.SCHEDULED.value
            commit.adds.append((keys.send(decision.priority), env.id, env.dumps(), ""))
    if env.keep_result:
        record |= _kept_answer(decision)
    records[keys.record(env.id)] = record
    if events and verdict in {Verdict.SENT, Verdict.DEAD}:
        commit.adds.append((keys.events, env.id, _event(decision), ""))


def _kept_answer(decision: Decision) -> dict[str, str]:
    """Telegram's answer, for the drop-in endpoint that waits on this record."""
    if decision.verdict is Verdict.SENT:
        return {"result": orjson.dumps(decision.result).decode()}
    if decision.verdict is Verdict.DEAD and decision.error_code:
        return {"error_code": str(decision.error_code)}
    return {}


def _member(decision: Decision) -> bytes:
    """The message as a delay set or the DLQ holds it; an unreadable entry as it came."""
    raw = decision.raw if decision.raw is not None else decision.envelope.dumps()
    return routed(decision.priority, raw)


def _event(decision: Decision) -> bytes:
    env = decision.envelope
    return orjson.dumps(
        {
            "id": env.id,
            "bot_id": env.bot_id,
            "chat_id": env.chat_id,
            "status": "sent" if decision.verdict is Verdict.SENT else "dead",
            "priority": decision.priority.value,
            "telegram_message_id": env.sent_ids[0] if env.sent_ids else None,
            "reply_to_message_id": env.params.get("reply_to_message_id"),
            "text": "\n\n".join(env.parts) if env.parts else env.params.get("caption"),
            "error": decision.error or None,
            "accepted_at": env.accepted_at,
        }
    )


def _dead_meta(decision: Decision, now: float) -> bytes:
    env = decision.envelope
    return orjson.dumps(
        {
            "error": decision.error,
            "reason": decision.reason,
            "history": env.errors,
            "attempts": env.attempts,
            "dead_at": now,
        }
    )
