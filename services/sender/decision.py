"""What became of one send-queue entry, and how that is written back."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import orjson

from shared.broker import Commit, Entry, routed
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


@dataclass(slots=True)
class Decision:
    """One settled entry: its verdict, the envelope as it now stands and any delay or error."""

    entry: Entry
    envelope: Envelope
    verdict: Verdict
    delay_ms: int = 0
    error: str = ""
    reason: str = ""

    @property
    def priority(self) -> Priority:
        """The queue the message belongs to."""
        return self.envelope.priority or Priority.NORMAL


def apply(
    keys: Keys, decision: Decision, commit: Commit, records: dict[str, dict[str, str]]
) -> None:
    """Add what ``decision`` writes to a batch: the status record, and the commit's changes."""
    env, now = decision.envelope, f"{time.time():.3f}"
    commit.acks.append((decision.entry.stream, decision.entry.entry_id))
    record: dict[str, str] = {"updated_at": now, "attempts": str(env.attempts)}
    member = routed(decision.priority, env.dumps())
    match decision.verdict:
        case Verdict.SENT:
            record |= {
                "status": Status.SENT.value,
                "sent_at": now,
                "telegram_message_ids": _ids(env),
            }
        case Verdict.ALREADY_SENT:
            return
        case Verdict.DEFER:
            record["status"] = Status.SCHEDULED.value
            commit.delays.append((keys.delayed("deferred"), decision.delay_ms, member))
        case Verdict.RETRY:
            record |= {"status": Status.RETRYING.value, "error": decision.error}
            commit.delays.append((keys.delayed("retry"), decision.delay_ms, member))
        case Verdict.DEAD:
            record |= {"status": Status.DEAD.value, "error": decision.error}
            meta = {
                "error": decision.error,
                "reason": decision.reason,
                "history": env.errors,
                "attempts": env.attempts,
                "dead_at": float(now),
            }
            commit.dead.append((env.id, member, orjson.dumps(meta)))
        case Verdict.HAND_BACK:
            record["status"] = Status.SCHEDULED.value
            commit.adds.append((keys.send(decision.priority), env.id, env.dumps()))
    records[keys.record(env.id)] = record


def _ids(env: Envelope) -> str:
    return ",".join(str(i) for i in env.sent_ids)
