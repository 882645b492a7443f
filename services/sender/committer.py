"""Writing decisions back in batches: status records and stream changes in one atomic commit."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from services.sender.decision import Decision, Verdict, apply
from services.sender.metrics import SenderMetrics
from shared.broker import BrokerUnavailable, Commit
from shared.context import Context
from shared.keys import SENDER_GROUP
from shared.loops import BACKOFF_FIRST

# Settling is cheap and what it holds (sent marks) is what a crash would turn into duplicates:
# retry often while Redis is away.
SETTLE_BACKOFF_MAX = 1.0

log = logging.getLogger("floodgate.sender")

MAX_BATCH = 512


class Committer:
    """Collects decisions and settles them in Redis; keeps retrying a batch while Redis is away.

    A decision's status record is written in the same atomic step that acknowledges its entry, so
    an entry claimed again after a crash finds the message marked sent and does not send it twice.
    """

    def __init__(
        self,
        ctx: Context,
        metrics: SenderMetrics,
        settled: Callable[[list[Decision]], None],
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._ctx = ctx
        self._ready = ready  # raises BrokerUnavailable while a batch must not be written yet
        self._metrics = metrics
        self._settled = settled
        self._queue: asyncio.Queue[Decision | None] = asyncio.Queue()
        # with a message store configured, settled messages are announced for its recorder
        self._events = ctx.settings.database_url is not None

    def put(self, decision: Decision) -> None:
        """Queue a decision for the next batch."""
        self._queue.put_nowait(decision)

    def finish(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put_nowait(None)

    async def run(self) -> None:
        """Settle batches until ``finish``."""
        while True:
            first = await self._queue.get()
            finished = first is None
            batch = [] if first is None else [first]
            while not finished and len(batch) < MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    finished = True
                else:
                    batch.append(item)
            if batch:
                await self._write(batch)
            if finished:
                return

    async def _write(self, batch: list[Decision]) -> None:
        # a batch retried after its reply was lost must not apply twice (a hand-back would be
        # queued twice, and both copies could be sent)
        once = self._ctx.keys.commit_mark(secrets.token_hex(8))
        commit, records = Commit(group=SENDER_GROUP, once=once), dict[str, dict[str, str]]()
        for decision in batch:
            apply(self._ctx.keys, decision, commit, records, self._events)
        backoff = BACKOFF_FIRST
        while True:
            try:
                commit.records = [(key, "", fields) for key, fields in records.items()]
                if self._ready is not None:
                    await self._ready()
                await self._ctx.broker.commit(commit)
                break
            except BrokerUnavailable as exc:
                self._metrics.errors.labels("sender.commit").inc()
                log.warning(
                    "cannot settle batch, retrying", extra={"count": len(batch), "reason": str(exc)}
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, SETTLE_BACKOFF_MAX)
        for decision in batch:
            if decision.verdict is Verdict.SENT:
                self._metrics.sent.labels(decision.priority.value).inc()
        self._settled(batch)
