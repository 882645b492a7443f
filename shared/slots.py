"""A first-come, first-served limit on how many tasks run a section at once.

``asyncio.Semaphore`` does the same, but in Python 3.11 its ``acquire`` asks ``locked()``, which
looks at every waiting task: with thousands of messages waiting for one of a sender's call
slots, each acquire scanned them all (3.8 % of a loaded sender's samples in py-spy, growing with
the backlog). Here taking and giving back a slot cost the same however many wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Slots:
    """At most ``count`` holders at once; the others wait in the order they came."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._free = count
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Slots nobody holds."""
        return self._free

    async def acquire(self) -> None:
        """Take a slot, waiting behind those who came first."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the slot just as the wait was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter still waiting, else to the pool."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():  # a waiter cancelled meanwhile is skipped here
                turn.set_result(None)
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
