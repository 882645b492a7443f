"""Accepting validated requests: records, idempotency claims and the ingest stream, in one go."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from shared.broker import Commit
from shared.context import Context
from shared.models import SendRequest, Status, envelope_from_request, new_message_id
from shared.priority import decide_priority


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the client is told about one accepted request."""

    id: str
    priority: str
    duplicate: bool

    def body(self) -> dict[str, str | bool]:
        """The 202 answer."""
        doc: dict[str, str | bool] = {"id": self.id, "status": "queued", "priority": self.priority}
        if self.duplicate:
            doc["duplicate"] = True
        return doc


async def submit(ctx: Context, requests: Sequence[SendRequest]) -> list[Accepted]:
    """Queue ``requests``; raises ``BrokerUnavailable`` with nothing accepted if Redis is away.

    One atomic script claims the idempotency keys, writes the status records and appends to the
    ingest stream, giving each message its place in its chat's order, so a message is in the
    stream exactly when its 202 is sent.
    """
    now = time.time()
    commit = Commit(record_ttl=ctx.settings.record_ttl)
    planned: list[tuple[str, str]] = []
    for req in requests:
        message_id = new_message_id()
        envelope = envelope_from_request(req, message_id, now)
        envelope.priority = decide_priority(envelope)
        priority = envelope.priority.value
        record = {
            "status": Status.QUEUED.value,
            "priority": priority,
            "attempts": "0",
            "bot_id": str(req.bot_id),
            "chat_id": str(envelope.chat_id),
            "accepted_at": f"{now:.6f}",
        }
        commit.records.append((ctx.keys.record(message_id), message_id, record))
        if req.idempotency_key is not None:
            key = ctx.keys.idempotency(req.bot_id, req.idempotency_key)
            commit.idempotency.append((key, message_id))
        # The chat's order is fixed here, where messages are accepted one after another, so any
        # number of schedulers cannot swap two of them. A message for later takes its place
        # when its time comes instead, so it holds up nothing sent before then.
        chat = (
            ""
            if envelope.send_at
            else ctx.keys.chat_state(req.bot_id, envelope.order_key, envelope.priority)
        )
        commit.adds.append((ctx.keys.ingest, message_id, envelope.dumps(), chat))
        planned.append((message_id, priority))
    taken = await ctx.broker.commit(commit)
    return [
        Accepted(taken.get(ident, ident), priority, ident in taken) for ident, priority in planned
    ]
