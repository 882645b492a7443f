"""Limiter with its sliding logs in this process: the embedded backend's, and the fallback."""

from __future__ import annotations

import time
from collections import deque

from shared.limiter import Grant, Policy, Window


class _Log:
    """Times of the sends in the current window, oldest first."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def wait_ms(self, now: float, window: Window) -> int:
        while self.times and self.times[0] <= now - window.ms:
            self.times.popleft()
        if len(self.times) < window.limit:
            return 0
        oldest = self.times[len(self.times) - window.limit]
        return max(1, int(oldest + window.ms - now + 0.999))


class MemoryLimiter:
    """``shared.limiter.Limiter`` for one process."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._logs: dict[tuple[int, int | str | None], _Log] = {}
        self._holds: dict[tuple[int, int | str | None], float] = {}

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        return self.acquire_now(bot_id, chat_id)

    def acquire_now(self, bot_id: int, chat_id: int | str) -> Grant:
        """The decision itself, without awaiting (atomic on the event loop)."""
        now = time.monotonic() * 1000
        for key, scope in (((bot_id, None), "bot_hold"), ((bot_id, chat_id), "chat_hold")):
            until = self._holds.get(key, 0.0)
            if until > now:
                return Grant(int(until - now + 0.999), scope)
        bot_log = self._logs.setdefault((bot_id, None), _Log())
        chat_log = self._logs.setdefault((bot_id, chat_id), _Log())
        bot_wait = bot_log.wait_ms(now, self._policy.bot_window(bot_id))
        chat_wait = chat_log.wait_ms(now, self._policy.chat_window(chat_id))
        if bot_wait or chat_wait:
            return Grant(bot_wait, "bot") if bot_wait >= chat_wait else Grant(chat_wait, "chat")
        bot_log.times.append(now)
        chat_log.times.append(now)
        return Grant(0)

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        key = (bot_id, chat_id)
        until = time.monotonic() * 1000 + seconds * 1000
        self._holds[key] = max(self._holds.get(key, 0.0), until)
