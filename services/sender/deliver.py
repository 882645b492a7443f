"""Delivering one message: tokens from the shared limiter, the Bot API call, the verdict."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from services.sender.backoff import full_jitter
from services.sender.decision import Decision, Verdict
from services.sender.metrics import SenderMetrics
from services.sender.pacer import Pacer
from shared.broker import GATE_DONE, GATE_GO, GATE_GO_LEADING, Entry
from shared.context import Context
from shared.keys import SENDER_GROUP
from shared.limiter import Grant, Limiter, is_private
from shared.models import Envelope, Priority, Status, salvage_order
from shared.redact import redact
from shared.slots import Slots
from shared.telegram import ApiResult, Outcome, TelegramClient

log = logging.getLogger("floodgate.sender")

MAX_REDIRECTS = 3
HISTORY = 10
BOT_HOLD_MAX_S = 2.0
ERROR_CHARS = 500


class Deliverer:
    """Turns a send-queue entry into a decision, calling Telegram as often as its parts need."""

    def __init__(
        self,
        ctx: Context,
        client: TelegramClient,
        metrics: SenderMetrics,
        pacer: Pacer,
        limiter: Limiter,
        max_deliveries: int,
        concurrency: int,
        still_mine: Callable[[Entry], Awaitable[bool]],
    ) -> None:
        self._calls = Slots(concurrency)
        self._limiter = limiter
        self._max_deliveries = max_deliveries
        self._ctx = ctx
        self._client = client
        self._metrics = metrics
        self._pacer = pacer
        self._still_mine = still_mine

    async def deliver(self, entry: Entry) -> Decision:
        """Send what is left of the entry's message; ``BrokerUnavailable`` if Redis is away."""
        try:
            env = Envelope.loads(entry.payload)
        except ValidationError as exc:
            return _unreadable(entry, f"unreadable entry: {exc}")
        if entry.seq is not None:
            env.seq = entry.seq
        if not await self._still_mine(entry):
            return Decision(entry, env, Verdict.LOST)
        # Only the chat's next message may settle it, dead or sent: a later one dead-lettered
        # first would move the chat's cursor past an earlier one still deferred.
        turn, leading = await self._gate(entry, env)
        if turn is not None:
            return Decision(entry, env, turn)
        if entry.deliveries > self._max_deliveries:
            error = f"delivered {entry.deliveries} times without settling; its consumers keep dying"
            return self._dead(entry, env, error, "poison")
        token = self._ctx.bots.get(env.bot_id)
        if token is None:
            return self._dead(entry, env, f"bot {env.bot_id} is not configured", "unknown_bot")
        # A message seen before, or one of several parts (a part may have gone out before a
        # hand-back or a crash), first checks what was already sent.
        several = env.parts is not None and len(env.parts) > 1
        if (entry.redelivered or several) and await self._resume(env):
            return Decision(entry, env, Verdict.ALREADY_SENT)
        return await self._send_parts(entry, env, token, leading)

    def poisoned(self, entry: Entry, exc: Exception) -> Decision:
        """The verdict on an entry whose delivery kept failing for a reason of its own (a bug,
        a value nothing downstream can take): dead, with that reason."""
        error = redact(f"internal error: {type(exc).__name__}: {exc}")[:ERROR_CHARS]
        try:
            env = Envelope.loads(entry.payload)
        except ValidationError:
            return _unreadable(entry, error)
        if entry.seq is not None:
            env.seq = entry.seq
        return self._dead(entry, env, error, "internal")

    async def _gate(self, entry: Entry, env: Envelope) -> tuple[Verdict | None, bool]:
        """None when it is this message's turn in its chat, else why it does not go now; and
        whether later messages of the chat wait behind it."""
        if env.seq is None:
            return None, False
        priority = env.priority or Priority.NORMAL
        keys = self._ctx.keys.of_stream(entry.stream)
        chat, parked = keys.order(env.bot_id, env.order_key, priority)
        turn = await self._ctx.broker.gate(
            chat,
            parked,
            entry,
            SENDER_GROUP,
            env.seq,
            keys.parked_count,
            record=keys.record(env.id),
        )
        if turn in (GATE_GO, GATE_GO_LEADING):
            return None, turn == GATE_GO_LEADING
        if turn == GATE_DONE:
            self._metrics.duplicates_avoided.inc()
            return Verdict.ALREADY_SENT, False
        self._metrics.parked.inc()
        return Verdict.PARKED, False

    async def _resume(self, env: Envelope) -> bool:
        """For an entry seen before: True if it was sent; else skip the parts already sent."""
        key = self._ctx.keys.of_bot(env.bot_id).record(env.id)
        record = await self._ctx.broker.get_record(key) or {}
        if record.get("status") == Status.SENT.value:
            self._metrics.duplicates_avoided.inc()
            return True
        done = [int(i) for i in record.get("telegram_message_ids", "").split(",") if i]
        if len(done) > len(env.sent_ids):
            env.sent_ids, env.part = done, len(done)
        return False

    async def _send_parts(self, entry: Entry, env: Envelope, token: str, leading: bool) -> Decision:
        while True:
            grant = await self._token(env, leading)
            if not grant.granted:
                reason = "stopping" if grant.scope == "stopping" else "limiter"
                self._metrics.deferred.labels(reason).inc()
                return Decision(entry, env, Verdict.DEFER, delay_ms=grant.wait_ms)
            # Wait for a free call slot before the request's timeout starts: a request queued
            # for a pooled connection would time out while waiting, after which its message is
            # retried, and sent twice if the queued request went out after all.
            try:
                async with self._calls:
                    # Waiting for the token and the slot may have outlasted the claim idle
                    # time (this process frozen meanwhile): another sender may own it now.
                    if not await self._still_mine(entry):
                        return Decision(entry, env, Verdict.LOST)
                    started = time.perf_counter()
                    result = await self._client.call(token, env.method, _params(env))
                    self._metrics.api_seconds.observe(time.perf_counter() - started)
            finally:
                await self._sent(env, grant)
            self._metrics.responses_by_class[result.status_class].inc()
            decision = await self._settle(entry, env, result)
            if decision is not None:
                return decision

    async def _settle(self, entry: Entry, env: Envelope, result: ApiResult) -> Decision | None:
        """The decision for one answer, or None to go on with the next part or the new chat."""
        match result.outcome:
            case Outcome.OK:
                env.sent_ids.append(result.message_id or 0)  # 0: the method sends no message
                env.part += 1
                if env.parts and env.part < len(env.parts):
                    await self._record_progress(env)
                    return None
                self._metrics.latency_by_priority[_prio(env)].observe(
                    max(0.0, time.time() - env.accepted_at)
                )
                kept = result.result if env.keep_result else None
                return Decision(entry, env, Verdict.SENT, result=kept)
            case Outcome.RETRY_AFTER:
                await self._hold(env, result.retry_after)
                self._metrics.deferred.labels("retry_after").inc()
                return Decision(entry, env, Verdict.DEFER, delay_ms=int(result.retry_after * 1000))
            case Outcome.MIGRATE if env.redirected < MAX_REDIRECTS:
                log.info(
                    "chat migrated, resending",
                    extra={"message_id": env.id, "to_chat": result.migrate_to},
                )
                if env.order_chat is None:
                    env.order_chat = env.chat_id
                env.params["chat_id"] = result.migrate_to
                env.redirected += 1
                return None
            case Outcome.RETRYABLE:
                return self._retry(entry, env, result)
        decision = self._dead(entry, env, result.description, "permanent")
        decision.error_code = result.status
        return decision

    def _retry(self, entry: Entry, env: Envelope, result: ApiResult) -> Decision:
        s = self._ctx.settings
        env.attempts += 1
        env.errors = [*env.errors, result.description][-HISTORY:]
        if env.attempts > s.telegram_max_retries:
            return self._dead(
                entry, env, f"retries used up: {result.description}", "retries_exhausted"
            )
        delay = full_jitter(env.attempts, s.telegram_base_delay, s.telegram_max_delay)
        self._metrics.retried.labels(_prio(env)).inc()
        return Decision(
            entry, env, Verdict.RETRY, delay_ms=int(delay * 1000), error=result.description
        )

    def _dead(self, entry: Entry, env: Envelope, error: str, reason: str) -> Decision:
        self._metrics.dead.labels(reason).inc()
        log.info(
            "dead-lettered", extra={"message_id": env.id, "bot_id": env.bot_id, "error": error}
        )
        return Decision(entry, env, Verdict.DEAD, error=error, reason=reason)

    async def _token(self, env: Envelope, leading: bool) -> Grant:
        """The token, once taken; else a refusal that says how long to park the message."""
        started = time.monotonic()
        priority = env.priority or Priority.NORMAL
        grant = await self._pacer.take(env.bot_id, env.chat_id, priority, leading)
        if grant.granted:
            self._metrics.limiter_wait.observe(time.monotonic() - started)
        return grant

    async def _sent(self, env: Envelope, grant: Grant) -> None:
        """Count the token from the end of its call (see ``Limiter.sent``)."""
        if not grant.ticket:
            return
        try:
            await self._limiter.sent(env.bot_id, env.chat_id, grant.ticket)
        except Exception as exc:
            # The token stays counted as a call under way until it is given up as lost:
            # on the safe side, at the cost of the bot's rate meanwhile.
            log.warning(
                "token not moved to the end of its call",
                extra={"message_id": env.id, "reason": str(exc)},
            )

    async def _hold(self, env: Envelope, seconds: float) -> None:
        """A 429 holds the chat; it holds the whole bot too unless a group's minute limit is meant.

        Telegram does not say which limit was hit. A group's per-minute limit answers with long
        waits, the per-second limits with short ones: holding the whole bot for a group's minute
        would stall every other chat of that bot.
        """
        await self._limiter.hold(env.bot_id, env.chat_id, seconds)
        self._metrics.holds.labels("chat").inc()
        if is_private(env.chat_id) or seconds <= BOT_HOLD_MAX_S:
            await self._limiter.hold(env.bot_id, None, seconds)
            self._metrics.holds.labels("bot").inc()

    async def _record_progress(self, env: Envelope) -> None:
        ids = ",".join(str(i) for i in env.sent_ids)
        await self._ctx.broker.put_records(
            {self._ctx.keys.of_bot(env.bot_id).record(env.id): {"telegram_message_ids": ids}},
            None,
        )


def _unreadable(entry: Entry, error: str) -> Decision:
    """An entry that is no envelope: dead as it came, under an id made from its place."""
    stream = entry.stream.rsplit(":", 1)[-1]
    ident = f"poison-{stream}-{entry.entry_id}"
    # one with a place in its chat's order gives it up (the settle of its dead letter)
    poison = salvage_order(entry.payload, ident, entry.seq) or Envelope(
        id=ident, bot_id=0, method="?", params={}, accepted_at=0
    )
    return Decision(
        entry, poison, Verdict.DEAD, error=error[:ERROR_CHARS], reason="poison", raw=entry.payload
    )


def _params(env: Envelope) -> dict[str, Any]:
    if env.parts:
        params = {**env.params, "text": env.parts[env.part]}
        if env.part > 0:
            params.pop("reply_to_message_id", None)
        return params
    return env.params


def _prio(env: Envelope) -> str:
    return (env.priority or Priority.NORMAL).value
