"""Limiter with its sliding logs in this process: the embedded backend's, and the fallback."""

from __future__ import annotations

import time
from collections import deque

from shared.limiter import (
    ADAPT_CUT,
    ADAPT_FLOOR,
    ADAPT_RECOVER_PER_S,
    Grant,
    Policy,
    Window,
)

SWEEP_AT = 50_000
BURST_MIN = 8


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

    def burst_wait_ms(self, now: float, window: Window) -> int:
        """Wait before a quarter of the window's sends fit in its last quarter (see acquire.lua)."""
        burst = -(-window.limit // 4)
        if window.limit < BURST_MIN or len(self.times) < burst:
            return 0
        recent = self.times[len(self.times) - burst]
        if recent <= now - window.ms / 4:
            return 0
        return max(1, int(recent + window.ms / 4 - now + 0.999))


class MemoryLimiter:
    """``shared.limiter.Limiter`` for one process."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._logs: dict[tuple[int, int | str | None], _Log] = {}
        self._holds: dict[tuple[int, int | str | None], float] = {}
        self._adapt: dict[int, tuple[float, float]] = {}
        self._sweep_at = SWEEP_AT

    def _factor(self, bot_id: int, now: float) -> float:
        cut = self._adapt.get(bot_id)
        if cut is None:
            return 1.0
        factor = min(1.0, cut[0] + (now - cut[1]) / 1000 * ADAPT_RECOVER_PER_S)
        if factor >= 1.0:
            del self._adapt[bot_id]
        return factor

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        return self.acquire_now(bot_id, chat_id)

    def acquire_now(self, bot_id: int, chat_id: int | str) -> Grant:
        """The decision itself, without awaiting (atomic on the event loop)."""
        now = time.monotonic() * 1000
        factor = self._factor(bot_id, now)
        for key, scope in (((bot_id, None), "bot_hold"), ((bot_id, chat_id), "chat_hold")):
            until = self._holds.get(key, 0.0)
            if until > now:
                return Grant(int(until - now + 0.999), scope, factor)
        bot_log = self._logs.setdefault((bot_id, None), _Log())
        chat_log = self._logs.setdefault((bot_id, chat_id), _Log())
        window = self._policy.bot_window(bot_id)
        window = Window(max(1, int(window.limit * factor)), window.ms)
        bot_wait = bot_log.wait_ms(now, window) or bot_log.burst_wait_ms(now, window)
        chat_wait = chat_log.wait_ms(now, self._policy.chat_window(chat_id))
        if bot_wait or chat_wait:
            if bot_wait >= chat_wait:
                return Grant(bot_wait, "bot", factor)
            return Grant(chat_wait, "chat", factor)
        bot_log.times.append(now)
        chat_log.times.append(now)
        if len(self._logs) > self._sweep_at:
            self._sweep(now)
        return Grant(0, "", factor)

    def _sweep(self, now: float) -> None:
        """Forget chats whose logs hold nothing recent, so memory follows the active chats."""
        longest = 60_000 * self._policy.window_scale + self._policy.margin_s * 1000
        for key in [
            k for k, log in self._logs.items() if not log.times or log.times[-1] < now - longest
        ]:
            del self._logs[key]
        for key in [k for k, until in self._holds.items() if until < now]:
            del self._holds[key]
        # sweep again only when the active chats have doubled, so the sweeps cost O(1) a call
        self._sweep_at = max(SWEEP_AT, 2 * len(self._logs))

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        key = (bot_id, chat_id)
        now = time.monotonic() * 1000
        self._holds[key] = max(self._holds.get(key, 0.0), now + seconds * 1000)
        if chat_id is None:
            factor = max(ADAPT_FLOOR, self._factor(bot_id, now) * ADAPT_CUT)
            self._adapt[bot_id] = (factor, now)
