"""Per-chat lanes: one chat's messages run one after another, different chats side by side.

A lane exists while its chat has work; at most ``concurrency`` lanes run at once. This keeps a
chat's messages in the order they were read without letting a slow chat hold up the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from shared.slots import Slots

T = TypeVar("T")


class Lanes(Generic[T]):
    """Runs ``handler`` over submitted items, serially per key and concurrently across keys."""

    def __init__(
        self,
        handler: Callable[[T], Awaitable[None]],
        hand_back: Callable[[T], None],
        concurrency: int,
    ) -> None:
        self._handler = handler
        self._hand_back = hand_back
        self._slots = Slots(concurrency)
        self._lanes: dict[Hashable, deque[T]] = {}
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, tg: asyncio.TaskGroup, key: Hashable, item: T) -> None:
        """Queue ``item`` behind the earlier items of its key."""
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(item)
            return
        self._lanes[key] = deque([item])
        self._idle.clear()
        task = tg.create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable) -> None:
        lane = self._lanes[key]
        try:
            async with self._slots:
                while lane and not self._closing:
                    await self._handler(lane[0])
                    lane.popleft()
        finally:
            while lane:
                self._hand_back(lane.popleft())
            del self._lanes[key]
            if not self._lanes:
                self._idle.set()

    async def close(self) -> None:
        """Start nothing new, let running items finish, hand the queued ones back."""
        self._closing = True
        await self._idle.wait()
