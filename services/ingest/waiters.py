"""Requests of the drop-in endpoint waiting for their messages to be settled.

One loop per ingest process reads the status records of every message some request waits on,
in one batch, a few times a second, and wakes the requests whose message is sent or dead. The
records are written by whichever sender settled the message, so this works across replicas and
on the embedded backend alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from shared.context import Context
from shared.loops import repeat
from shared.models import Status

POLL_S = 0.05
SETTLED = frozenset({Status.SENT.value, Status.DEAD.value})
MAX_BATCH = 1000


class Waiters:
    """Futures for settled status records, by message id."""

    def __init__(self, ctx: Context, registry: CollectorRegistry) -> None:
        self._ctx = ctx
        self._waiting: defaultdict[str, list[_Waiter]] = defaultdict(list)
        self._stopped = False
        self._errors = Counter(
            "floodgate_ingest_loop_errors_total",
            "Failed steps of the ingest service's loops, by loop.",
            ["loop"],
            registry=registry,
        )

    async def wait(
        self, message_id: str, seconds: float, gone: Callable[[], bool] = lambda: False
    ) -> dict[str, str] | None:
        """The message's record once it is sent or dead; None if that takes over ``seconds``
        or ``gone`` says the one waiting left meanwhile."""
        if self._stopped:
            return None
        waiter = _Waiter(asyncio.get_running_loop().create_future(), gone)
        self._waiting[message_id].append(waiter)
        try:
            async with asyncio.timeout(seconds):
                return await waiter.future or None
        except TimeoutError:
            return None
        finally:
            waiters = self._waiting.get(message_id, [])
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters:
                self._waiting.pop(message_id, None)

    def abandoned(self, message_id: str) -> bool:
        """Whether a request of this process waited on the message and its client left (the
        poll loop records that for every replica too, a moment later)."""
        return any(waiter.gone() for waiter in self._waiting.get(message_id, []))

    async def run(self, stop: asyncio.Event) -> None:
        """Wake waiting requests until ``stop``; then release every request still waiting (it
        is answered as if its wait had run out, and its message stays queued)."""
        try:
            await repeat("ingest.waiters", self._poll, stop, self._errors, POLL_S)
        finally:
            self._stopped = True
            for waiters in self._waiting.values():
                for waiter in waiters:
                    if not waiter.future.done():
                        waiter.future.set_result({})

    async def _poll(self) -> bool:
        waiting = list(self._waiting)
        for start in range(0, len(waiting), MAX_BATCH):
            ids = waiting[start : start + MAX_BATCH]
            keys = [self._ctx.keys.of_message(i).record(i) for i in ids]
            records = await self._ctx.broker.get_records(keys)
            for message_id, record in zip(ids, records, strict=True):
                settled = record is not None and record.get("status") in SETTLED
                for waiter in self._waiting.get(message_id, []):
                    if waiter.future.done():
                        continue
                    if settled and record is not None:
                        waiter.future.set_result(record)
                    elif waiter.gone():
                        waiter.future.set_result({})
        return False


class _Waiter:
    """One request waiting, and how to tell that its client left."""

    __slots__ = ("future", "gone")

    def __init__(self, future: asyncio.Future[dict[str, str]], gone: Callable[[], bool]) -> None:
        self.future = future
        self.gone = gone
