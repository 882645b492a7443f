"""Limiter with its sliding logs and holds in Redis, shared by every sender replica.

A bot's pacer asks for its window's room in one call of acquire.lua; calls of many bots go out
in one pipeline (``ScriptBatcher``). Per chat, a call carries only the chat's two keys and one
letter of its kind: the chat limits, and the tickets that name the tokens, are sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Sequence

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
    """``shared.limiter.Limiter`` over Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: Policy) -> None:
        self._keys = keys
        self._policy = policy
        self._acquire = ScriptBatcher(client, lua("acquire"))
        self._sent = ScriptBatcher(client, lua("sent"))
        self._extend = ScriptBatcher(client, lua("extend"))
        self._hold = client.register_script(lua("hold"))
        self._nonce = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._next_ticket = 0
        self._bot_windows: dict[int, Window] = {}
        private, group = policy.chat_window(1), policy.chat_window(-1)
        self._chat_limits = [private.limit, private.ms, group.limit, group.ms]
        self._chat_ms = [private.ms, group.ms]
        self._lease_ms = int(policy.in_flight_lease_s * 1000)
        # tokens whose calls are under way, ticket: (bot, chat, granted at)
        self._leases: dict[str, tuple[int, int | str, float]] = {}
        self._renewal: asyncio.TimerHandle | None = None
        self._moves: dict[int, list[tuple[int | str, str, int, asyncio.Future[None]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _bot_window(self, bot_id: int) -> Window:
        bot = self._bot_windows.get(bot_id)
        if bot is None:
            bot = self._bot_windows[bot_id] = self._policy.bot_window(bot_id)
        return bot

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        return (await self.acquire_many(bot_id, [chat_id]))[0]

    async def acquire_many(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        k = self._keys
        bot = self._bot_window(bot_id)
        first, self._next_ticket = self._next_ticket, self._next_ticket + len(chat_ids)
        keys = [k.bot_hold(bot_id), k.bot_window(bot_id), k.bot_adaptation(bot_id)]
        keys += [k.chat_holds(bot_id), *(k.chat_window(bot_id, chat) for chat in chat_ids)]
        args: list[int | float | str] = [bot.limit, bot.ms, ADAPT_RECOVER_PER_S, self._lease_ms]
        args += [*self._chat_limits, self._nonce, first, _kinds(chat_ids), *chat_ids]
        reply = await self._acquire.call(keys, args)
        factor = int(reply[0]) / 1000
        now = time.monotonic()
        grants = []
        for i, chat_id in enumerate(chat_ids):
            at = 1 + 3 * i
            wait, scope, room = int(reply[at]), _text(reply[at + 1]), int(reply[at + 2])
            if wait:
                grants.append(Grant(wait, scope, factor, "", max(0, room)))
                continue
            ticket = f"{self._nonce}-{first + i}"
            self._lease(bot_id, chat_id, ticket, now)
            grants.append(Grant(0, scope, factor, ticket, max(0, room)))
        return grants

    def _lease(self, bot_id: int, chat_id: int | str, ticket: str, granted_at: float) -> None:
        """Keep a token in flight while its call runs, until ``sent`` comes (``Deliverer``
        always reports; LEASE_CAP_S only guards against a leak)."""
        self._leases[ticket] = (bot_id, chat_id, granted_at)
        if self._renewal is None:
            loop = asyncio.get_running_loop()
            self._renewal = loop.call_later(self._lease_ms / 3000, self._renew)

    def _renew(self) -> None:
        """Every third of a lease, extend the tokens granted at least that long ago whose calls
        are still under way: each is extended within two thirds of its lease, every time."""
        self._renewal = None
        now = time.monotonic()
        period = self._lease_ms / 3000
        due: dict[int, list[tuple[int | str, str]]] = {}
        for ticket, (bot_id, chat_id, granted_at) in list(self._leases.items()):
            if now - granted_at > LEASE_CAP_S:
                del self._leases[ticket]
            elif now - granted_at >= period:
                due.setdefault(bot_id, []).append((chat_id, ticket))
        loop = asyncio.get_running_loop()
        for bot_id, tokens in due.items():
            keys = [self._keys.bot_window(bot_id)]
            keys += [self._keys.chat_window(bot_id, chat) for chat, _ in tokens]
            args: list[str | float] = [self._lease_ms, self._bot_window(bot_id).ms, *self._chat_ms]
            args += [_kinds([chat for chat, _ in tokens]), *(ticket for _, ticket in tokens)]
            task = loop.create_task(self._extend.call(keys, args))
            self._tasks.add(task)
            task.add_done_callback(_quietly)
            task.add_done_callback(self._tasks.discard)
        if self._leases:
            self._renewal = loop.call_later(period, self._renew)

    async def sent(self, bot_id: int, chat_id: int | str, ticket: str, age_ms: int = 0) -> None:
        """Tokens of one bot that finish together (a window's burst is answered together) move
        in one call of sent.lua: the first starts a move, the rest join it or the next one."""
        self._leases.pop(ticket, None)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        moves = self._moves.get(bot_id)
        if moves is None:
            moves = self._moves[bot_id] = []
            task = asyncio.get_running_loop().create_task(self._move(bot_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        moves.append((chat_id, ticket, age_ms, done))
        await done

    async def _move(self, bot_id: int) -> None:
        """Move the bot's tokens reported since the last move, until none are left."""
        try:
            while moves := self._moves.get(bot_id):
                self._moves[bot_id] = []
                await self._move_now(bot_id, moves)
        finally:
            for *_, done in self._moves.pop(bot_id, None) or []:
                done.cancel()  # only when the process stops under way

    async def _move_now(
        self, bot_id: int, moves: list[tuple[int | str, str, int, asyncio.Future[None]]]
    ) -> None:
        keys = [self._keys.bot_window(bot_id)]
        keys += [self._keys.chat_window(bot_id, chat) for chat, *_ in moves]
        args: list[str | float | int] = [self._bot_window(bot_id).ms, self._lease_ms]
        args += [*self._chat_ms, _kinds([chat for chat, *_ in moves])]
        for _, ticket, age_ms, _ in moves:
            args += [ticket, age_ms]
        try:
            await self._sent.call(keys, args)
        except Exception as exc:  # each caller decides what a failure means
            for *_, done in moves:
                if not done.done():
                    done.set_exception(exc)
            return
        for *_, done in moves:
            if not done.done():
                done.set_result(None)

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        ms = max(1, int(seconds * 1000))
        k = self._keys
        try:
            if chat_id is None:
                keys = [k.bot_hold(bot_id), k.bot_adaptation(bot_id)]
                await self._hold(keys=keys, args=[ms, ADAPT_CUT, ADAPT_FLOOR, ADAPT_RECOVER_PER_S])
            else:
                await self._hold(keys=[k.chat_holds(bot_id)], args=[ms, chat_id])
        except UNREACHABLE as exc:
            raise BrokerUnavailable(f"redis unreachable: {exc}") from exc


def _kinds(chat_ids: Sequence[int | str]) -> str:
    """One letter per chat for the scripts: ``p`` private (its limits), ``g`` group."""
    return "".join("p" if is_private(chat_id) else "g" for chat_id in chat_ids)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _quietly(task: asyncio.Task[object]) -> None:
    """An extension that failed (Redis away) leaves the token to its lease: nothing to do."""
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()
