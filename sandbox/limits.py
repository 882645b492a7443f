"""Telegram's three send limits as exact sliding windows, and the holds that a 429 starts.

Each scope (a bot, or one chat of one bot) keeps a log of the monotonic times of its
successful sends. A send at ``now`` fits when fewer than ``rate`` sends lie in
``(now - window, now]``; so no window of that length ever holds more than ``rate`` sends,
which fixed buckets or token buckets cannot promise at a window edge.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal, TypeVar

from sandbox.config import SandboxConfig

Scope = Literal["bot", "chat"]
ChatKey = tuple[int, int]
K = TypeVar("K", int, ChatKey)

# Forgotten scopes are swept once the tables double; this is the smallest trigger size.
_MIN_SWEEP_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Rules:
    """The limits of one configuration, with ``window_scale`` already applied."""

    enabled: bool
    bot_rate: int
    bot_window: float
    chat_rate: int
    chat_window: float
    group_rate: int
    group_window: float
    bot_overrides: dict[int, int]

    @classmethod
    def from_config(cls, config: SandboxConfig) -> Rules:
        """Derive the rules from a configuration."""
        scale = config.window_scale
        return cls(
            enabled=config.limits_enabled,
            bot_rate=config.bot_rate,
            bot_window=config.bot_window * scale,
            chat_rate=config.chat_rate,
            chat_window=config.chat_window * scale,
            group_rate=config.group_rate,
            group_window=config.group_window * scale,
            bot_overrides=dict(config.bot_rate_overrides),
        )

    def for_bot(self, bot_id: int) -> tuple[int, float]:
        """Rate and window of a bot (a per-bot override wins)."""
        return self.bot_overrides.get(bot_id, self.bot_rate), self.bot_window

    def for_chat(self, chat_id: int) -> tuple[int, float]:
        """Rate and window of a chat: private chats are positive ids, the rest negative."""
        if chat_id > 0:
            return self.chat_rate, self.chat_window
        return self.group_rate, self.group_window


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a send may not go now: whole seconds to wait and the scope that is full."""

    retry_after: int
    during_hold: bool
    scope: Scope


def retry_seconds(wait: float) -> int:
    """Telegram's retry_after: whole seconds, rounded up so that waiting it always suffices."""
    return max(1, math.ceil(wait))


def _wait(stamps: deque[float], rate: int, window: float, now: float) -> float:
    """Seconds until one more send fits in the window (0.0 when it fits now)."""
    horizon = now - window
    while stamps and stamps[0] <= horizon:
        stamps.popleft()
    excess = len(stamps) - rate
    if excess < 0:
        return 0.0
    # That stamp must leave the window before the count drops below the rate.
    return stamps[excess] + window - now


class Limiter:
    """Sliding-window logs per bot and per (bot, chat), and the holds started by 429s."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every window and hold."""
        self._bots: dict[int, deque[float]] = {}
        self._chats: dict[ChatKey, deque[float]] = {}
        self._bot_holds: dict[int, float] = {}
        self._chat_holds: dict[ChatKey, float] = {}
        self._sweep_at = _MIN_SWEEP_SIZE

    def refusal(self, rules: Rules, bot_id: int, chat_id: int, now: float) -> Refusal | None:
        """Return why a send may not go now, or None; a new refusal starts a hold."""
        held = self._held(bot_id, chat_id, now)
        if held is not None:
            return held
        key = (bot_id, chat_id)
        bot_wait = _wait(self._log(self._bots, bot_id), *rules.for_bot(bot_id), now)
        chat_wait = _wait(self._log(self._chats, key), *rules.for_chat(chat_id), now)
        if bot_wait <= 0.0 and chat_wait <= 0.0:
            return None
        retry = retry_seconds(max(bot_wait, chat_wait))
        if bot_wait >= chat_wait:
            self._bot_holds[bot_id] = now + retry
            return Refusal(retry, during_hold=False, scope="bot")
        self._chat_holds[key] = now + retry
        return Refusal(retry, during_hold=False, scope="chat")

    def record(self, rules: Rules, bot_id: int, chat_id: int, now: float) -> bool:
        """Log a successful send; return True if it broke a window (only possible unenforced)."""
        key = (bot_id, chat_id)
        bot_log = self._log(self._bots, bot_id)
        chat_log = self._log(self._chats, key)
        broke = _wait(bot_log, *rules.for_bot(bot_id), now) > 0.0
        broke = _wait(chat_log, *rules.for_chat(chat_id), now) > 0.0 or broke
        bot_log.append(now)
        chat_log.append(now)
        if len(self._chats) > self._sweep_at:
            self._sweep(rules, now)
        return broke

    def _held(self, bot_id: int, chat_id: int, now: float) -> Refusal | None:
        bot_end = self._bot_holds.get(bot_id, 0.0)
        chat_end = self._chat_holds.get((bot_id, chat_id), 0.0)
        end = max(bot_end, chat_end)
        if end <= now:
            return None
        scope: Scope = "bot" if bot_end >= chat_end else "chat"
        return Refusal(retry_seconds(end - now), during_hold=True, scope=scope)

    @staticmethod
    def _log(table: dict[K, deque[float]], key: K) -> deque[float]:
        stamps = table.get(key)
        if stamps is None:
            stamps = table[key] = deque()
        return stamps

    def _sweep(self, rules: Rules, now: float) -> None:
        # A benchmark touches many chats once; without this every chat keeps a deque forever.
        self._chats = {
            key: stamps
            for key, stamps in self._chats.items()
            if stamps and stamps[-1] > now - rules.for_chat(key[1])[1]
        }
        self._chat_holds = {key: end for key, end in self._chat_holds.items() if end > now}
        self._bot_holds = {key: end for key, end in self._bot_holds.items() if end > now}
        self._sweep_at = max(_MIN_SWEEP_SIZE, 2 * len(self._chats))
