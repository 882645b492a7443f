"""Limiter with its sliding logs in this process: the embedded backend's, and the fallback."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections import deque
from collections.abc import Iterable, Sequence

from shared.limiter import (
    ADAPT_CUT,
    ADAPT_FLOOR,
    ADAPT_RECOVER_PER_S,
    Grant,
    Policy,
    Window,
    is_private,
)

SWEEP_AT = 10_000  # logs (about 1 KB each) kept before the first sweep
TICKET_PREFIX = "local-"  # tells the fallback limiter whose token it is


class _Log:
    """The sends in the current window as (time, ticket), oldest first."""

    __slots__ = ("sends",)

    def __init__(self) -> None:
        self.sends: deque[tuple[float, str]] = deque()

    def forget(self, now: float, window_ms: float, in_flight: dict[str, float]) -> None:
        """Drop the sends that have left a window of ``window_ms``; one whose call is not over
        stays, counted as sent now."""
        while self.sends and self.sends[0][0] <= now - window_ms:
            _, ticket = self.sends.popleft()
            if in_flight.get(ticket, 0.0) > now:
                self.sends.append((now, ticket))

    def wait_ms(self, now: float, window: Window, in_flight: dict[str, float]) -> int:
        self.forget(now, window.ms, in_flight)
        if len(self.sends) < window.limit:
            return 0
        oldest = self.sends[len(self.sends) - window.limit][0]
        return max(1, int(oldest + window.ms - now + 0.999))

    def move_to(self, at: float, ticket: str) -> None:
        """Count ``ticket``'s send from ``at`` (see sent.lua), keeping the log in time order."""
        for i in range(len(self.sends) - 1, -1, -1):  # a call just over: its token is recent
            if self.sends[i][1] == ticket:
                if self.sends[i][0] >= at:
                    return  # tokens only move later
                del self.sends[i]
                break
        place = len(self.sends)
        while place and self.sends[place - 1][0] > at:
            place -= 1
        self.sends.insert(place, (at, ticket))


class MemoryLimiter:
    """``shared.limiter.Limiter`` for one process."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._kept: dict[tuple[int, bool | None], float] = {}  # _kept_ms by (bot, private)
        self._logs: dict[tuple[int, int | str | None], _Log] = {}
        self._holds: dict[tuple[int, int | str | None], float] = {}
        self._adapt: dict[int, tuple[float, float]] = {}
        self._sweep_at = SWEEP_AT
        self._tickets = itertools.count(1)
        # unique across processes: senders hand their local tokens to one Redis on recovery
        self._nonce = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._in_flight: dict[str, float] = {}  # ticket: when it counts as lost
        self._quiet_from: float | None = None  # every window counts as full from then on

    @property
    def policy(self) -> Policy:
        """The limits this limiter keeps."""
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        """Keep other limits from now on (the logs stay)."""
        self._policy = policy
        self._kept = {}

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

    async def acquire_many(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        return [self.acquire_now(bot_id, chat_id) for chat_id in chat_ids]

    def acquire_now(self, bot_id: int, chat_id: int | str) -> Grant:
        """The decision itself, without awaiting (atomic on the event loop)."""
        now = time.monotonic() * 1000
        factor = self._factor(bot_id, now)
        for key, scope in (((bot_id, None), "bot_hold"), ((bot_id, chat_id), "chat_hold")):
            until = self._holds.get(key, 0.0)
            if until > now:
                return Grant(int(until - now + 0.999), scope, factor)
        quiet = self._quiet(bot_id, chat_id, now, factor)
        if quiet is not None:
            return quiet
        bot_log = self._logs.setdefault((bot_id, None), _Log())
        chat_log = self._logs.setdefault((bot_id, chat_id), _Log())
        window = self._policy.bot_window(bot_id)
        if window.limit == 0:  # no share of this bot's rate: its sends wait for Redis
            return Grant(int(window.ms + 0.999), "bot", factor)
        window = Window(max(1, int(window.limit * factor)), window.ms)
        bot_wait = bot_log.wait_ms(now, window, self._in_flight)
        chat_wait = chat_log.wait_ms(now, self._policy.chat_window(chat_id), self._in_flight)
        if bot_wait or chat_wait:
            if bot_wait >= chat_wait:
                return Grant(bot_wait, "bot", factor)
            return Grant(chat_wait, "chat", factor, room=window.limit - len(bot_log.sends))
        ticket = f"{TICKET_PREFIX}{self._nonce}-{next(self._tickets)}"
        self._log_taken((bot_log, chat_log), now, ticket)
        if len(self._logs) > self._sweep_at or len(self._in_flight) > self._sweep_at:
            self._sweep(now)
        return Grant(0, "", factor, ticket, window.limit - len(bot_log.sends))

    def quiet(self, slack_ms: float) -> None:
        """Count every window as full at ``slack_ms`` from now, until it has passed.

        For a switch from the shared limiter: the sends other processes made through it are
        unknown here, and may fill any window up to the moment of the switch (``slack_ms``
        covering their requests still on the way), so nothing goes before each window passed.
        """
        self._quiet_from = time.monotonic() * 1000 + slack_ms

    def _quiet(self, bot_id: int, chat_id: int | str, now: float, factor: float) -> Grant | None:
        if self._quiet_from is None:
            return None
        bot = self._quiet_from + self._policy.bot_window(bot_id).ms - now
        chat = self._quiet_from + self._policy.chat_window(chat_id).ms - now
        if max(bot, chat) <= 0:
            return None
        if bot >= chat:
            return Grant(int(bot + 0.999), "bot", factor)
        return Grant(int(chat + 0.999), "chat", factor)

    def bot_room(self, bot_id: int) -> tuple[int, int]:
        """How many sends the bot's window takes now, and if none, how long until one."""
        now = time.monotonic() * 1000
        until = self._holds.get((bot_id, None), 0.0)
        if until > now:
            return 0, int(until - now + 0.999)
        window = self._policy.bot_window(bot_id)
        if window.limit == 0:
            return 0, int(window.ms + 0.999)
        window = Window(max(1, int(window.limit * self._factor(bot_id, now))), window.ms)
        log = self._logs.setdefault((bot_id, None), _Log())
        wait = log.wait_ms(now, window, self._in_flight)
        return (0, wait) if wait else (window.limit - len(log.sends), 0)

    def note_hold(self, bot_id: int, chat_id: int | str | None, ms: int) -> None:
        """A hold learnt from the shared limiter: kept here too, without cutting the rate."""
        key = (bot_id, chat_id)
        self._holds[key] = max(self._holds.get(key, 0.0), time.monotonic() * 1000 + ms)

    def holds(self) -> list[tuple[int, int | str | None, int]]:
        """The holds still running: (bot, chat or None for the whole bot, ms left)."""
        now = time.monotonic() * 1000
        return [
            (bot, chat, int(until - now))
            for (bot, chat), until in self._holds.items()
            if until > now
        ]

    def note(self, bot_id: int, chat_id: int | str, ticket: str) -> None:
        """Log a send granted elsewhere (by the shared limiter) as made now.

        A sender notes every send it makes through the shared limiter, and nothing else trims
        these logs while it does (``acquire_now`` is not called): so each note drops what has
        left the windows and, as ``acquire_now`` does, forgets chats gone quiet. Without that,
        the logs kept every send and every chat ever sent to (231 MiB after 200,000 messages
        to as many chats). A chat's log keeps its sends for the bot's window too: handed back to
        a restarted Redis (``recent``), each counts in both."""
        now = time.monotonic() * 1000
        bot_log = self._logs.setdefault((bot_id, None), _Log())
        chat_log = self._logs.setdefault((bot_id, chat_id), _Log())
        bot_log.forget(now, self._kept_ms((bot_id, None)), self._in_flight)
        chat_log.forget(now, self._kept_ms((bot_id, chat_id)), self._in_flight)
        self._log_taken((bot_log, chat_log), now, ticket)
        if len(self._logs) > self._sweep_at or len(self._in_flight) > self._sweep_at:
            self._sweep(now)

    def _log_taken(self, logs: Iterable[_Log], now: float, ticket: str) -> None:
        """A token taken now: in the bot's and the chat's logs, and in flight until ``sent``."""
        self._in_flight[ticket] = now + self._policy.in_flight_s * 1000
        for log in logs:
            log.sends.append((now, ticket))

    def recent(self, within_ms: float) -> list[tuple[int, int | str, str, int, bool]]:
        """The sends logged here in the last ``within_ms``: (bot, chat, ticket, age ms, whether
        its call is still under way)."""
        now = time.monotonic() * 1000
        return [
            (bot_id, chat_id, ticket, int(now - at), self._in_flight.get(ticket, 0.0) > now)
            for (bot_id, chat_id), log in self._logs.items()
            if chat_id is not None
            for at, ticket in log.sends
            if at > now - within_ms
        ]

    async def sent(self, bot_id: int, chat_id: int | str, ticket: str, age_ms: int = 0) -> None:
        self._in_flight.pop(ticket, None)
        now = time.monotonic() * 1000 - age_ms
        for key in ((bot_id, None), (bot_id, chat_id)):
            self._logs.setdefault(key, _Log()).move_to(now, ticket)

    async def flush(self) -> None:
        """Nothing to wait for: moves are made at once."""

    def _sweep(self, now: float) -> None:
        """Forget the logs no window counts any more (no send within the log's own windows,
        no call under way), so memory follows the chats active now, not every chat ever sent to."""
        for ticket in [t for t, until in self._in_flight.items() if until < now]:
            del self._in_flight[ticket]
        stale = [
            key
            for key, log in self._logs.items()
            if not (log.sends and log.sends[-1][0] > now - self._kept_ms(key))
            and not any(ticket in self._in_flight for _, ticket in log.sends)
        ]
        for key in stale:
            del self._logs[key]
        for key in [k for k, until in self._holds.items() if until < now]:
            del self._holds[key]
        # sweep again only when the active chats have doubled, so the sweeps cost O(1) a call
        self._sweep_at = max(SWEEP_AT, 2 * len(self._logs), 2 * len(self._in_flight))

    def _kept_ms(self, key: tuple[int, int | str | None]) -> float:
        """How long a log's sends count: the bot's window for the bot's log; for a chat's, the
        longer of the chat's window and its bot's (a send handed back to Redis counts in both)."""
        bot_id, chat_id = key
        kind = None if chat_id is None else is_private(chat_id)
        kept = self._kept.get((bot_id, kind))
        if kept is None:
            kept = bot_ms = self._policy.bot_window(bot_id).ms
            if chat_id is not None:
                kept = max(bot_ms, self._policy.chat_window(chat_id).ms)
            if len(self._kept) > SWEEP_AT:  # bots come and go: forget them all now and then
                self._kept.clear()
            self._kept[(bot_id, kind)] = kept
        return kept

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        key = (bot_id, chat_id)
        now = time.monotonic() * 1000
        self._holds[key] = max(self._holds.get(key, 0.0), now + seconds * 1000)
        if chat_id is None:
            factor = max(ADAPT_FLOOR, self._factor(bot_id, now) * ADAPT_CUT)
            self._adapt[bot_id] = (factor, now)
