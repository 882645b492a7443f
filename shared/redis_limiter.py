"""Limiter with its sliding logs and holds in Redis, shared by every sender replica.

A bot's pacer asks for its window's room in one call of acquire.lua; calls of many bots go out
in one pipeline (``ScriptBatcher``). Per chat, a call carries only the chat's two keys and one
letter of its kind: the chat limits, and the tickets that name the tokens, are sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import ResponseError

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
from shared.redis_batch import UNREACHABLE, ScriptBatcher, as_text, refusal, unavailable
from shared.scripts import lua

LEASE_CAP_S = 3600.0  # a token still unreported after an hour is a leak, not a call
FLUSH_WAIT_S = 2.0
MAX_PER_CALL = 1000  # tokens in one script call: Lua's unpack() takes some 8,000 values
ENDED, LATER = "ended", "later"  # sent.lua: a call of ours ended; a send handed over

log = logging.getLogger("floodgate.limiter")
T = TypeVar("T")


class RedisLimiter:
    """``shared.limiter.Limiter`` over Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: Policy) -> None:
        self._client = client
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
        # tokens whose calls are under way, ticket: (bot, chat, granted at, Redis's clock at
        # the grant in ms)
        self._leases: dict[str, tuple[int, int | str, float, int]] = {}
        self._renewal: asyncio.TimerHandle | None = None
        # calls ended and not yet moved, per bot: (chat, ticket, ended at, Redis's clock at the
        # grant or 0)
        self._ended: dict[int, list[tuple[int | str, str, float, int]]] = {}
        self._move_soon: asyncio.Handle | None = None
        self._moving: set[asyncio.Future[Any]] = set()

    def _bot_window(self, bot_id: int) -> Window:
        bot = self._bot_windows.get(bot_id)
        if bot is None:
            bot = self._bot_windows[bot_id] = self._policy.bot_window(bot_id)
        return bot

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        return (await self.acquire_many(bot_id, [chat_id]))[0]

    async def acquire_many(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        if len(chat_ids) > MAX_PER_CALL:
            return [g for part in _parts(chat_ids) for g in await self.acquire_many(bot_id, part)]
        first = self._next_ticket
        reply = await self._acquire.call(*self._acquire_args(bot_id, chat_ids))
        factor = int(reply[0]) / 1000
        granted_ms = int(reply[-1])
        now = time.monotonic()
        grants = []
        for i, chat_id in enumerate(chat_ids):
            at = 1 + 3 * i
            wait, scope, room = int(reply[at]), as_text(reply[at + 1]), int(reply[at + 2])
            if wait:
                grants.append(Grant(wait, scope, factor, "", max(0, room)))
                continue
            ticket = f"{self._nonce}-{first + i}"
            self._lease(bot_id, chat_id, ticket, now, granted_ms)
            grants.append(Grant(0, scope, factor, ticket, max(0, room)))
        return grants

    def _acquire_args(
        self, bot_id: int, chat_ids: Sequence[int | str]
    ) -> tuple[list[str], list[int | float | str]]:
        """KEYS and ARGV of acquire.lua for these chats, the tickets they may take numbered
        from ``_next_ticket`` on (which moves past them)."""
        k = self._keys
        bot = self._bot_window(bot_id)
        first, self._next_ticket = self._next_ticket, self._next_ticket + len(chat_ids)
        keys = [k.bot_hold(bot_id), k.bot_window(bot_id), k.bot_adaptation(bot_id)]
        keys += [k.chat_holds(bot_id), *(k.chat_window(bot_id, chat) for chat in chat_ids)]
        args: list[int | float | str] = [bot.limit, bot.ms, ADAPT_RECOVER_PER_S, self._lease_ms]
        args += [*self._chat_limits, self._nonce, first, _kinds(chat_ids), *chat_ids]
        return keys, args

    def _lease(
        self, bot_id: int, chat_id: int | str, ticket: str, granted_at: float, granted_ms: int
    ) -> None:
        """Keep a token in flight while its call runs, until ``sent`` comes (``Deliverer``
        always reports; LEASE_CAP_S only guards against a leak)."""
        self._leases[ticket] = (bot_id, chat_id, granted_at, granted_ms)
        if self._renewal is None:
            self._renew_later()

    def _renew_later(self) -> None:
        self._renewal = asyncio.get_running_loop().call_later(self._lease_ms / 3000, self._renew)

    def _renew(self) -> None:
        """Every third of a lease, extend every token whose call is still under way. A token
        is extended at the first tick after its grant and at every tick after: its score
        always lies at least two thirds of a lease ahead of the next tick, so one late or
        failed round does not let it lapse."""
        self._renewal = None
        now = time.monotonic()
        due: dict[int, list[tuple[int | str, str]]] = {}
        for ticket, (bot_id, chat_id, granted_at, _) in list(self._leases.items()):
            if now - granted_at > LEASE_CAP_S:
                del self._leases[ticket]
            else:
                due.setdefault(bot_id, []).append((chat_id, ticket))
        for bot_id, tokens in due.items():
            for part in _parts(tokens):
                keys, args = self._token_call(bot_id, [chat for chat, _ in part])
                args += [ticket for _, ticket in part]
                # one that fails (Redis away) leaves the token to the rest of its lease
                self._extend.submit(keys, args).add_done_callback(_quietly)
        if self._leases:
            self._renew_later()

    async def sent(self, bot_id: int, chat_id: int | str, ticket: str, age_ms: int = 0) -> None:
        """The end of the call is noted here and its token moved in the background, stamped
        with the time passed since then as measured here when the move is packed: Redis's clock
        when the move runs, less that time, is at or after the end, so however busy this
        process is, the stamp is never early, and late only by the move's wait in the batcher
        and its trip to Redis. Tokens of one bot that end in one turn of the event loop (a
        window's burst is answered together) move in one call of sent.lua. A move that fails
        leaves its token counted as under way until its lease runs out. A hand-over
        (``age_ms``) is awaited: the caller must know whether Redis has it."""
        lease = self._leases.pop(ticket, None)
        if age_ms > 0:
            await self._sent.call(*self._move_args(bot_id, [(chat_id, ticket, age_ms)], LATER, 0))
            return
        granted_ms = lease[3] if lease is not None else 0
        self._ended.setdefault(bot_id, []).append((chat_id, ticket, time.monotonic(), granted_ms))
        if self._move_soon is None:
            self._move_soon = asyncio.get_running_loop().call_soon(self._move_ended)

    def _move_ended(self) -> None:
        self._move_soon = None
        ended, self._ended = self._ended, {}
        now = time.monotonic()
        for bot_id, tokens in ended.items():
            # floor: an age never longer than the time passed, so the stamp is never early
            for part in _parts(tokens):
                moves = [(chat, ticket, int((now - at) * 1000)) for chat, ticket, at, _ in part]
                granted_ms = min(granted for *_, granted in part)
                move = self._sent.submit(*self._move_args(bot_id, moves, ENDED, granted_ms))
                self._moving.add(move)
                move.add_done_callback(self._moving.discard)
                move.add_done_callback(_moved)

    async def flush(self) -> None:
        """Move the tokens of every call that ended, now, and wait for the moves (at most
        FLUSH_WAIT_S): before the connections close, or to read the logs in a test."""
        if self._move_soon is not None:
            self._move_soon.cancel()
            self._move_ended()
        if self._moving:
            await asyncio.wait(set(self._moving), timeout=FLUSH_WAIT_S)
        if not self._leases and self._renewal is not None:  # nothing left to extend
            self._renewal.cancel()
            self._renewal = None

    def _move_args(
        self, bot_id: int, moves: Sequence[tuple[int | str, str, int]], mode: str, granted_ms: int
    ) -> tuple[list[str], list[str | float | int]]:
        """sent.lua's KEYS and ARGV; ``granted_ms``: Redis's clock at the earliest grant of
        these tokens (0: unknown, so their logs' lifetimes are set again)."""
        keys, args = self._token_call(bot_id, [chat for chat, _, _ in moves])
        args += [mode, granted_ms]
        for _, ticket, age_ms in moves:
            args += [ticket, age_ms]
        return keys, args

    def _token_call(
        self, bot_id: int, chat_ids: list[int | str]
    ) -> tuple[list[str], list[str | float | int]]:
        """Keys and leading arguments of sent.lua and extend.lua for tokens of ``chat_ids``."""
        keys = [self._keys.bot_window(bot_id)]
        keys += [self._keys.chat_window(bot_id, chat) for chat in chat_ids]
        args: list[str | float | int] = [self._bot_window(bot_id).ms, self._lease_ms]
        return keys, [*args, *self._chat_ms, _kinds(chat_ids)]

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
            raise await unavailable(self._client, exc) from exc
        except ResponseError as exc:
            refused = refusal(exc)
            if refused is None:
                raise
            raise refused from exc


def _parts(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most MAX_PER_CALL, one script call each."""
    for start in range(0, len(items), MAX_PER_CALL):
        yield items[start : start + MAX_PER_CALL]


def _kinds(chat_ids: Sequence[int | str]) -> str:
    """One letter per chat for the scripts: ``p`` private (its limits), ``g`` group."""
    return "".join("p" if is_private(chat_id) else "g" for chat_id in chat_ids)


def _quietly(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        with contextlib.suppress(Exception):
            future.result()


def _moved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("tokens left under way until their lease runs out: %s", future.exception())
