"""The sandbox's whole state: config, limits, faults, chats, updates and what it recorded."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.chats import Directory, JsonObject, MessageStore
from sandbox.config import SandboxConfig
from sandbox.errors import too_many_requests
from sandbox.faults import Faults
from sandbox.limits import Limiter, Rules
from sandbox.records import MessageLog, MessageRecord, RequestLog, Stats
from sandbox.updates import BotUpdates
from sandbox.webhook import run_webhook_worker

TOKEN_PATTERN = re.compile(r"([0-9]+):[A-Za-z0-9_-]{20,}")
# Valid tokens are remembered to skip the regex; a flood of made-up ones must not grow it.
_TOKEN_CACHE_SIZE = 10_000


class SandboxState:
    """Shared by every route; tests in the same process can read it directly.

    ``messages`` is the log of delivered messages, ``requests`` the ring of recent
    requests, ``stats`` the counters.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.rules = Rules.from_config(config)
        self.limiter = Limiter()
        self.faults = Faults(config.seed)
        self.directory = Directory()
        self.store = MessageStore(config.message_log_size)
        self.messages = MessageLog(config.message_log_size)
        self.requests = RequestLog(config.request_log_size)
        self.stats = Stats()
        self.bots: dict[int, BotUpdates] = {}
        self.session: aiohttp.ClientSession | None = None
        self.closing = asyncio.Event()
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._tokens: dict[str, int] = {}
        # Wall-clock stamps advance with the limiter's monotonic clock, so the recorded
        # times reproduce exactly what the limiter saw.
        self._wall_origin = time.time() - time.monotonic()

    def wall(self, mono: float) -> float:
        """Wall-clock seconds of a monotonic instant."""
        return self._wall_origin + mono

    def set_config(self, config: SandboxConfig) -> None:
        """Switch to a new configuration; a new seed restarts the fault sequence."""
        previous, self.config = self.config, config
        self.rules = Rules.from_config(config)
        if config.seed != previous.seed:
            self.faults.reseed(config.seed)
        self.requests.resize(config.request_log_size)
        self.messages.capacity = config.message_log_size
        self.store.capacity = config.message_log_size

    def reset(self) -> None:
        """Forget the log, counters, windows, holds and pending updates; keep the config.

        Message and update ids keep counting so that clients holding ids or a getUpdates
        offset stay consistent; the fault sequence restarts from the seed.
        """
        self.messages.clear()
        self.requests.clear()
        self.stats = Stats()
        self.limiter.reset()
        self.faults.reseed(self.config.seed)
        for updates in self.bots.values():
            updates.drop_pending()

    def bot_id_for(self, token: str) -> int | None:
        """The bot id of a well-formed, unrevoked token, else None."""
        bot_id = self._tokens.get(token)
        if bot_id is None:
            match = TOKEN_PATTERN.fullmatch(token)
            if match is None:
                return None
            bot_id = int(match.group(1))
            if len(self._tokens) < _TOKEN_CACHE_SIZE:
                self._tokens[token] = bot_id
        config = self.config
        if bot_id in config.revoked_bot_ids or token in config.revoked_tokens:
            return None
        return bot_id

    def updates(self, bot_id: int) -> BotUpdates:
        """The update queue of a bot, created on first use."""
        updates = self.bots.get(bot_id)
        if updates is None:
            updates = self.bots[bot_id] = BotUpdates()
            if self.closing.is_set():
                updates.close()
        return updates

    def admit(self, bot_id: int, chat_id: int, now: float) -> None:
        """Raise Telegram's 429 if a send now would break a limit or falls in a hold."""
        if not self.rules.enabled:
            return
        refusal = self.limiter.refusal(self.rules, bot_id, chat_id, now)
        if refusal is None:
            return
        if refusal.during_hold:
            self.stats.sent_during_hold += 1
        raise too_many_requests(refusal.retry_after)

    def deliver(
        self,
        *,
        bot_id: int,
        method: str,
        params: dict[str, Any],
        message: JsonObject,
        text: str | None,
        outcome: str,
        now: float,
    ) -> None:
        """Record a delivered message and count it in the windows."""
        chat_id = message["chat"]["id"]
        self.store.remember(bot_id, message)
        record = MessageRecord(
            seq=self.messages.next_seq(),
            ts=self.wall(now),
            mono=now,
            bot_id=bot_id,
            chat_id=chat_id,
            method=method,
            message_id=message["message_id"],
            text=text,
            params=params,
            outcome=outcome,
        )
        self.messages.append(record)
        self.stats.delivered += 1
        if self.limiter.record(self.rules, bot_id, chat_id, now):
            self.stats.limit_violations += 1

    def note_request(
        self, bot_id: int | None, chat_id: int | None, method: str, status: int, outcome: str
    ) -> None:
        """Count an answered API request and keep it in the request ring."""
        stats = self.stats
        stats.requests += 1
        if status == 429:
            stats.too_many_requests += 1
        elif status >= 500:
            if outcome == "timeout":
                stats.timeouts += 1
            elif outcome == "5xx_after_send":
                stats.after_send_errors += 1
            else:
                stats.server_errors += 1
        elif status >= 400:
            stats.client_errors += 1
        self.requests.add(
            ts=time.time(),
            bot_id=bot_id,
            chat_id=chat_id,
            method=method,
            status=status,
            outcome=outcome,
        )

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake early when the sandbox shuts down."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.closing.wait()

    def start_webhook_worker(self, bot_id: int) -> None:
        """Make sure the bot's webhook worker runs (it idles while no webhook is set)."""
        task = self._workers.get(bot_id)
        if task is not None and not task.done():
            return
        if self.session is None or self.closing.is_set():
            return
        self._workers[bot_id] = asyncio.create_task(
            run_webhook_worker(bot_id, self.updates(bot_id), self.session, lambda: self.config),
            name=f"sandbox-webhook-{bot_id}",
        )

    def begin_close(self) -> None:
        """Release long polls and injected timeouts so shutdown does not wait for them."""
        self.closing.set()
        for updates in self.bots.values():
            updates.close()

    async def stop_workers(self) -> None:
        """Cancel the webhook workers and wait for them to end."""
        tasks = list(self._workers.values())
        self._workers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


STATE_KEY = web.AppKey("sandbox_state", SandboxState)
