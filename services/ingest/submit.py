"""Accepting validated requests: records, idempotency claims and the ingest stream, in one go."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.ingest.access import Origin
from services.ingest.lookup import StoreLookup
from shared.broker import BrokerUnavailable, Commit, NotReplicated
from shared.context import Context
from shared.models import (
    Envelope,
    Kind,
    Priority,
    SendRequest,
    envelope_from_request,
    new_message_id,
)
from shared.priority import decide_priority


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the client is told about one accepted request."""

    id: str
    priority: str
    duplicate: bool
    # why this one was not accepted after all (its partition's commit failed while others of
    # the same batch went through); empty for an accepted message
    refused: str = field(default="")

    def body(self) -> dict[str, str | bool]:
        """The 202 answer."""
        doc: dict[str, str | bool] = {"id": self.id, "status": "queued", "priority": self.priority}
        if self.duplicate:
            doc["duplicate"] = True
        return doc


def _reply_target(envelope: Envelope) -> int | None:
    """The message a request answers, when the request leaves the priority to floodgate."""
    if envelope.priority is not None or envelope.kind not in {None, Kind.REPLY}:
        return None
    target = envelope.params.get("reply_to_message_id")
    reply = envelope.params.get("reply_parameters")
    if target is None and isinstance(reply, dict):
        if reply.get("chat_id") not in (None, envelope.chat_id):
            return None  # it quotes a message of another chat: not an answer to this one's
        target = reply.get("message_id")
    return target if isinstance(target, int) and not isinstance(target, bool) else None


async def answers_to_urgent(
    ctx: Context, envelopes: Sequence[Envelope], lookup: StoreLookup | None = None
) -> set[str]:
    """Ids of the requests that answer an incoming message which mentioned the bot or replied
    to it: those go out as high priority. Ingest marked such messages in Redis when their
    updates arrived (kept 24 h, the hot path); older ones are looked up in the store."""
    asks = [(env, target) for env in envelopes if (target := _reply_target(env)) is not None]
    if not asks:
        return set()
    keys = [ctx.keys.urgent(env.bot_id, env.chat_id, target) for env, target in asks]
    found = await ctx.broker.get_records(keys)
    urgent = {env.id for (env, _), hit in zip(asks, found, strict=True) if hit}
    misses = [
        (env, target)
        for (env, target), hit in zip(asks, found, strict=True)
        if not hit and isinstance(env.chat_id, int)
    ]
    if lookup is not None and misses:
        answers = await lookup.urgent([(e.bot_id, int(e.chat_id), t) for e, t in misses])
        urgent |= {env.id for (env, _), hit in zip(misses, answers, strict=True) if hit}
    return urgent


async def submit(
    ctx: Context,
    requests: Sequence[SendRequest],
    lookup: StoreLookup | None = None,
    origin: Origin | None = None,
    keep_result: bool = False,
) -> list[Accepted]:
    """Queue ``requests``; raises ``BrokerUnavailable`` with nothing accepted if Redis is away,
    ``NotReplicated`` with nothing promised if replicated durability was not confirmed in time.

    One atomic script claims the idempotency keys, writes the status records and appends to the
    ingest stream, giving each message its place in its chat's order, so a message is in the
    stream exactly when its 202 is sent. With ``keep_result`` the status records will keep
    Telegram's answer (for the drop-in Bot API endpoint).
    """
    now = time.time()
    origin = origin or Origin()
    commits: dict[int, Commit] = {}
    planned: list[tuple[int, str, str]] = []
    envelopes = [
        envelope_from_request(req, new_message_id(ctx.keys.partition_of(req.bot_id)), now)
        for req in requests
    ]
    urgent = await answers_to_urgent(ctx, envelopes, lookup)
    for req, envelope in zip(requests, envelopes, strict=True):
        message_id = envelope.id
        partition = ctx.keys.partition_of(req.bot_id)
        keys = ctx.keys.of_partition(partition)
        commit = commits.get(partition)
        if commit is None:
            commit = commits[partition] = Commit(
                record_ttl=ctx.settings.record_ttl,
                replicated=ctx.settings.durability == "replicated",
            )
        envelope.keep_result = keep_result
        decided = Priority.HIGH if message_id in urgent else decide_priority(envelope)
        envelope.priority = origin.cap(decided)
        priority = envelope.priority.value
        # No status and no attempts: a record without them is queued, with none made yet
        # (``status_body``). Two fields fewer: a scheduled message's record with an API key's
        # id takes 264 B of Redis instead of 296 (MEMORY USAGE; 264 either way without one).
        # updated_at from the start: the scheduler's write then finds a field of its own there
        # and so knows the record was not made anew (commit.lua), with no EXPIRE to make sure
        # of its lifetime; the scheduled record is no larger for it
        record = {
            "priority": priority,
            "bot_id": str(req.bot_id),
            "chat_id": str(envelope.chat_id),
            "accepted_at": f"{now:.6f}",
            "updated_at": f"{now:.3f}",
        }
        if origin.key_id is not None:
            record["key_id"] = origin.key_id
        commit.records.append((keys.record(message_id), message_id, record))
        if envelope.send_at and envelope.send_at > now:
            ahead = math.ceil(envelope.send_at - now)
            commit.record_ttls[keys.record(message_id)] = ctx.settings.record_ttl + ahead
        if req.idempotency_key is not None:
            key = keys.idempotency(req.bot_id, req.idempotency_key, origin.key_id)
            commit.idempotency.append((key, message_id))
        # The chat's order is fixed here, where messages are accepted one after another, so any
        # number of schedulers cannot swap two of them. A message for later takes its place
        # when its time comes instead, so it holds up nothing sent before then.
        chat = (
            ""
            if envelope.send_at
            else keys.chat_state(req.bot_id, envelope.order_key, envelope.priority)
        )
        commit.adds.append((keys.ingest, message_id, envelope.dumps(), chat))
        planned.append((partition, message_id, priority))
    taken = await _commit_all(ctx, commits)
    results = []
    for partition, ident, priority in planned:
        outcome = taken[partition]
        if isinstance(outcome, BaseException):
            results.append(Accepted("", priority, False, refused=_why(outcome)))
        else:
            results.append(Accepted(outcome.get(ident, ident), priority, ident in outcome))
    return results


async def _commit_all(
    ctx: Context, commits: dict[int, Commit]
) -> dict[int, dict[str, str] | BaseException]:
    """One atomic commit per partition (each touches one Redis Cluster slot), concurrently.
    When every one failed, its error is raised (nothing was accepted); when only some did,
    the messages of those are refused one by one and the rest stay accepted."""
    partitions = list(commits)
    outcomes = await asyncio.gather(
        *(ctx.broker.commit(commits[p]) for p in partitions), return_exceptions=True
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    for failure in failures:
        if not isinstance(failure, BrokerUnavailable):
            raise failure
    if failures and len(failures) == len(outcomes):
        raise failures[0]
    return dict(zip(partitions, outcomes, strict=True))


def _why(exc: BaseException) -> str:
    if isinstance(exc, NotReplicated):
        return "not confirmed by a replica in time: retry with the same idempotency_key"
    return "queue unavailable: this message was not accepted, retry it"
