"""Limiter with its sliding logs and holds in Redis, shared by every sender replica."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import time

import redis.asyncio as redis

from shared.broker import BrokerUnavailable
from shared.keys import Keys
from shared.limiter import (
    ADAPT_CUT,
    ADAPT_FLOOR,
    ADAPT_RECOVER_PER_S,
    Grant,
    Policy,
    Window,
    is_private,
)
from shared.redis_batch import UNREACHABLE, ScriptBatcher
from shared.scripts import lua

LEASE_CAP_S = 3600.0  # a token still unreported after an hour is a leak, not a call


class RedisLimiter:
    """``shared.limiter.Limiter`` over Redis: one Lua call per decision, calls pipelined."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: Policy) -> None:
        self._keys = keys
        self._policy = policy
        self._acquire = ScriptBatcher(client, lua("acquire"))
        self._sent = ScriptBatcher(client, lua("sent"))
        self._hold = client.register_script(lua("hold"))
        self._nonce = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._bot_windows: dict[int, Window] = {}
        self._private, self._group = policy.chat_window(1), policy.chat_window(-1)
        self._counter = itertools.count()
        self._lease_ms = int(policy.in_flight_lease_s * 1000)
        self._extend = ScriptBatcher(client, lua("extend"))
        # ticket: (bot, chat, granted at, the timer of its next extension)
        self._leases: dict[str, tuple[int, int | str, float, asyncio.TimerHandle]] = {}
        self._moves: dict[int, list[tuple[str, float, str, int, asyncio.Future[None]]]] = {}
        self._moving: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _windows(self, bot_id: int, chat_id: int | str) -> tuple[Window, Window]:
        bot = self._bot_windows.get(bot_id)
        if bot is None:
            bot = self._bot_windows[bot_id] = self._policy.bot_window(bot_id)
        return bot, self._private if is_private(chat_id) else self._group

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        k = self._keys
        bot, chat = self._windows(bot_id, chat_id)
        keys = [
            k.bot_hold(bot_id),
            k.chat_hold(bot_id, chat_id),
            k.bot_window(bot_id),
            k.chat_window(bot_id, chat_id),
            k.bot_adaptation(bot_id),
            k.bot_in_flight(bot_id),
        ]
        args: list[int | float | str] = [
            bot.limit,
            bot.ms,
            chat.limit,
            chat.ms,
            ticket := f"{self._nonce}-{next(self._counter)}",
            ADAPT_RECOVER_PER_S,
            self._lease_ms,
        ]
        wait, scope, permille, room = await self._acquire.call(keys, args)
        scope = scope.decode() if isinstance(scope, bytes) else str(scope)
        if int(wait):
            return Grant(int(wait), scope, int(permille) / 1000, "", max(0, int(room)))
        self._lease(bot_id, chat_id, ticket, time.monotonic())
        return Grant(0, scope, int(permille) / 1000, ticket, max(0, int(room)))

    def _lease(self, bot_id: int, chat_id: int | str, ticket: str, granted_at: float) -> None:
        """Keep a token in flight while its call runs: extended every third of a lease until
        ``sent`` comes (``Deliverer`` always reports; LEASE_CAP_S only guards against a leak)."""
        if time.monotonic() - granted_at > LEASE_CAP_S:
            self._leases.pop(ticket, None)
            return
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._lease_ms / 3000, self._renew, bot_id, ticket)
        self._leases[ticket] = (bot_id, chat_id, granted_at, timer)

    def _renew(self, bot_id: int, ticket: str) -> None:
        held = self._leases.get(ticket)
        if held is None:
            return
        _, chat_id, granted_at, _ = held
        self._lease(bot_id, chat_id, ticket, granted_at)
        bot, chat = self._windows(bot_id, chat_id)
        k = self._keys
        keys = [k.bot_in_flight(bot_id), k.bot_window(bot_id), k.chat_window(bot_id, chat_id)]
        call = self._extend.call(keys, [self._lease_ms, bot.ms, ticket, chat.ms])
        task = asyncio.get_running_loop().create_task(call)
        self._tasks.add(task)
        task.add_done_callback(_quietly)
        task.add_done_callback(self._tasks.discard)

    async def sent(self, bot_id: int, chat_id: int | str, ticket: str, age_ms: int = 0) -> None:
        """Tokens of one bot that finish together (a window's burst is answered together) move
        in one call of sent.lua: the first starts a move, the rest join it or the next one."""
        held = self._leases.pop(ticket, None)
        if held is not None:
            held[3].cancel()
        _, chat = self._windows(bot_id, chat_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        move = (self._keys.chat_window(bot_id, chat_id), chat.ms, ticket, age_ms, done)
        self._moves.setdefault(bot_id, []).append(move)
        if bot_id not in self._moving:
            self._moving.add(bot_id)
            task = asyncio.get_running_loop().create_task(self._move(bot_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await done

    async def _move(self, bot_id: int) -> None:
        try:
            while moves := self._moves.pop(bot_id, None):
                bot, _ = self._windows(bot_id, 0)
                keys = [self._keys.bot_window(bot_id), self._keys.bot_in_flight(bot_id)]
                args: list[str | float | int] = [bot.ms]
                for chat_key, chat_ms, ticket, age_ms, _ in moves:
                    keys.append(chat_key)
                    args += [ticket, chat_ms, age_ms]
                try:
                    await self._sent.call(keys, args)
                except Exception as exc:  # each caller decides what a failure means
                    for *_, done in moves:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for *_, done in moves:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._moving.discard(bot_id)

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        key = (
            self._keys.bot_hold(bot_id)
            if chat_id is None
            else self._keys.chat_hold(bot_id, chat_id)
        )
        ms = max(1, int(seconds * 1000))
        try:
            if chat_id is None:
                adapt = self._keys.bot_adaptation(bot_id)
                args = [ms, ADAPT_CUT, ADAPT_FLOOR, ADAPT_RECOVER_PER_S]
                await self._hold(keys=[key, adapt], args=args)
            else:
                await self._hold(keys=[key], args=[ms])
        except UNREACHABLE as exc:
            raise BrokerUnavailable(f"redis unreachable: {exc}") from exc


def _quietly(task: asyncio.Task[object]) -> None:
    """An extension that failed (Redis away) leaves the token to its lease: nothing to do."""
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()
