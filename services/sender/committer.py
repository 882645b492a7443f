"""Writing decisions back in batches: status records and stream changes in one atomic commit."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence

from services.sender.decision import Decision, Verdict, apply
from services.sender.metrics import SenderMetrics
from shared.broker import BrokerUnavailable, Commit
from shared.context import Context, dlq_keys
from shared.keys import SENDER_GROUP, Keys
from shared.loops import BACKOFF_FIRST

# Settling is cheap and what it holds (sent marks) is what a crash would turn into duplicates:
# retry often while Redis is away.
SETTLE_BACKOFF_MAX = 1.0

log = logging.getLogger("floodgate.sender")

MAX_BATCH = 512

# Verdicts whose commit queues the message again (a delay set, the DLQ, the send queue): written
# for an entry another sender owns now, they would make a second copy of its message.
REQUEUING = frozenset({Verdict.RETRY, Verdict.DEFER, Verdict.DEAD, Verdict.HAND_BACK})

LostAmong = Callable[[Sequence[Decision]], Awaitable[set[tuple[str, str]]]]


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
        lost_among: LostAmong | None = None,
    ) -> None:
        self._ctx = ctx
        # which decisions' entries another sender claimed meanwhile; by default every hand-back
        # is asked about (the sender itself knows when the others need no asking)
        self._lost_among = lost_among or self._hand_backs_lost
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
        """Settle batches until ``finish``: each partition's decisions by a writer of their own,
        so a partition whose primary is away (a failover on a Redis Cluster) holds up only its
        own messages while the others settle."""
        writers: dict[Keys, asyncio.Queue[list[Decision] | None]] = {}
        async with asyncio.TaskGroup() as tg:
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
                parts: dict[Keys, list[Decision]] = {}
                for decision in batch:
                    keys = self._ctx.keys.of_stream(decision.entry.stream)
                    parts.setdefault(keys, []).append(decision)
                for keys, decisions in parts.items():
                    writer = writers.get(keys)
                    if writer is None:
                        writer = writers[keys] = asyncio.Queue()
                        tg.create_task(self._writer(keys, writer))
                    writer.put_nowait(decisions)
                if finished:
                    for writer in writers.values():
                        writer.put_nowait(None)
                    return

    async def _writer(self, keys: Keys, batches: asyncio.Queue[list[Decision] | None]) -> None:
        """Write one partition's batches in the order they came (those that piled up while
        its primary was away as one), until told to stop."""
        stop = False
        while not stop:
            batch = await batches.get()
            if batch is None:
                return
            while not batches.empty() and len(batch) < MAX_BATCH:
                more = batches.get_nowait()
                if more is None:
                    stop = True
                    break
                batch += more
            await self._write_part(keys, batch)
            for decision in batch:
                if decision.verdict is Verdict.SENT:
                    self._metrics.sent_by_priority[decision.priority.value].inc()
            self._settled(batch)

    async def _write_part(self, keys: Keys, batch: list[Decision]) -> None:
        # a batch retried after its reply was lost must not apply twice (a hand-back would be
        # queued twice, and both copies could be sent)
        once = keys.commit_mark(secrets.token_hex(8))
        backoff = BACKOFF_FIRST
        while True:
            try:
                if self._ready is not None:
                    await self._ready()
                kept = await self._still_owned(batch)
                commit = Commit(group=SENDER_GROUP, once=once, dlq=dlq_keys(keys))
                records: dict[str, dict[str, str]] = {}
                for decision in kept:
                    apply(keys, decision, commit, records, self._events)
                commit.records = [(key, "", fields) for key, fields in records.items()]
                await self._ctx.broker.commit(commit)
                return
            except BrokerUnavailable as exc:
                self._metrics.errors.labels("sender.commit").inc()
                log.warning(
                    "cannot settle batch, retrying", extra={"count": len(batch), "reason": str(exc)}
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, SETTLE_BACKOFF_MAX)

    async def _still_owned(self, batch: list[Decision]) -> list[Decision]:
        """The batch less the requeuing decisions on entries another sender claimed meanwhile
        (this one frozen past the claim idle time): written, they would send the message twice.
        The check touches the entries it keeps, so none can be claimed before the commit."""
        lost = await self._lost_among([d for d in batch if d.verdict in REQUEUING])
        if not lost:
            return batch
        log.warning("not queuing again entries another sender claimed", extra={"count": len(lost)})
        self._metrics.lost.inc(len(lost))
        return [d for d in batch if (d.entry.stream, d.entry.entry_id) not in lost]

    async def _hand_backs_lost(self, decisions: Sequence[Decision]) -> set[tuple[str, str]]:
        return await lost_entries(
            self._ctx, [d for d in decisions if d.verdict is Verdict.HAND_BACK]
        )


async def lost_entries(ctx: Context, decisions: Sequence[Decision]) -> set[tuple[str, str]]:
    """(stream, entry id) of the decisions whose entries are no longer pending to this
    consumer, asked of the broker (which touches those that still are)."""
    by_stream: dict[str, list[str]] = {}
    for decision in decisions:
        by_stream.setdefault(decision.entry.stream, []).append(decision.entry.entry_id)
    lost: set[tuple[str, str]] = set()
    for stream, ids in by_stream.items():
        gone = await ctx.broker.touch(stream, SENDER_GROUP, ctx.consumer, ids)
        lost.update((stream, i) for i in gone)
    return lost
