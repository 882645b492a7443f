"""Which streams a consumer must re-read its own pending entries of, before it reads them anew.

A consumer's entries stay pending under its name when it could not finish them: after a
restart (the process that held them died), and after a read whose reply was lost on its way (a
failover, a dropped connection) or a batch whose commit failed. Those are re-read once Redis
answers, not a claim idle time later. Tracked stream by stream, so that on a Redis Cluster a
primary that is away holds up only its own partitions: the others are read on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Self

from shared.broker import BrokerBusy, BrokerUnavailable, Entry, PartialRead

RETRY_S = 1.0  # a stream whose re-reading failed is tried again this much later


class Rereading:
    """Streams waiting to be re-read, each with whether its re-reading counts a delivery.

    After a restart it does (the entries' last consumer died on them: five such deaths make an
    entry poison); after an outage it does not, since it is retried as long as the outage lasts
    and would dead-letter healthy messages. A re-reading that failed for a reason of its
    entries' own counts again, so a batch that keeps failing ends in the dead-letter queue.
    """

    def __init__(self, streams: Iterable[str]) -> None:
        self._all = tuple(streams)  # every stream the consumer may hold entries of
        self._waiting: dict[str, bool] = dict.fromkeys(self._all, True)  # a restart: all
        self._done = asyncio.Event()

    def __contains__(self, stream: object) -> bool:
        return stream in self._waiting

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def waiting(self) -> list[tuple[str, bool]]:
        """The streams to re-read, in turn, with whether each re-reading counts a delivery."""
        return list(self._waiting.items())

    def lost(self, streams: Iterable[str]) -> None:
        """Reads of ``streams`` failed: what they delivered is pending, unseen, under this
        consumer. Not read anew until re-read (a stream waiting already keeps its counting)."""
        for stream in streams:
            self._waiting.setdefault(stream, False)

    def read_failed(self, exc: BrokerUnavailable) -> list[Entry]:
        """A read failed with ``exc``: the streams whose reply may have been lost wait to be
        re-read (those of the node that failed, or on one server every one: any stream's reply
        may have been the lost one; none for a busy pool, which sent nothing). Returns what the
        read got all the same, from the streams that answered."""
        if isinstance(exc, PartialRead):
            self.lost(exc.failed)
            return exc.entries
        if not isinstance(exc, BrokerBusy):
            self.lost(self._all)
        return []

    def failed(self, stream: str, recount: bool = False) -> None:
        """A re-reading of ``stream`` failed; it goes last, so the others are tried first next
        time. ``recount``: the failure was the entries' own, not an outage."""
        self._waiting.pop(stream, None)
        self._waiting[stream] = recount

    def done(self, stream: str) -> None:
        """``stream`` was re-read: it is read anew from here on."""
        if self._waiting.pop(stream, None) is not None:
            self._done.set()

    async def wait_done(self) -> None:
        """Wait until some stream has been re-read, a retry's time at most."""
        self._done.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), RETRY_S)


class RereadPass:
    """One pass over the streams waiting to be re-read: each stream's attempt is one
    ``async with attempt.of(...)``; a stream re-read is done, one whose Redis does not answer
    waits for the next pass (an error of its entries' own is raised, and counts from there on).
    A pass ends early (``over``) once more than a retry's time went on streams that did not
    answer (a primary that times out), and says once at its end what failed."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._failing_s = 0.0
        self._failed: list[str] = []
        self._reason = ""

    @property
    def over(self) -> bool:
        return self._failing_s > RETRY_S

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._failed:
            self._log.warning(
                "re-reading own pending entries failed; retrying",
                extra={
                    "streams": len(self._failed),
                    "first": self._failed[0],
                    "reason": self._reason,
                    "retry_in_s": RETRY_S,
                },
            )

    @contextlib.asynccontextmanager
    async def of(self, stream: str, recount: bool, waiting: Rereading) -> AsyncIterator[None]:
        began = time.monotonic()
        try:
            yield
        except BrokerUnavailable as exc:
            # counted once at most: a reply lost on its way may have counted one, and a call
            # that failed for a busy pool may have come after the one that counted
            waiting.failed(stream)
            self._failed.append(stream)
            self._reason = self._reason or str(exc)
            self._failing_s += time.monotonic() - began
            return
        except Exception:
            waiting.failed(stream, recount=True)
            raise
        waiting.done(stream)
