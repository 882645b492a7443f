"""Incoming updates of one bot: the pending queue, long polling and the webhook settings."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from sandbox.errors import poll_conflict, webhook_conflict

JsonObject = dict[str, Any]


@dataclass(slots=True)
class Webhook:
    """A bot's webhook as set by setWebhook, with the last delivery error."""

    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


class BotUpdates:
    """Updates not yet confirmed (getUpdates) or delivered (webhook), in update_id order."""

    def __init__(self) -> None:
        self.pending: deque[JsonObject] = deque()
        self.last_update_id = 0
        self.webhook: Webhook | None = None
        self.closed = False
        self._changed = asyncio.Event()
        self._poll_generation = 0
        # How updates left: confirmed by a getUpdates offset, or taken by the webhook.
        self.confirmed_by_poll = 0
        self.taken_by_webhook = 0

    def push(self, fields: JsonObject) -> JsonObject:
        """Queue a new update made of ``fields`` (e.g. ``{"message": …}``) and return it."""
        self.last_update_id += 1
        update = {"update_id": self.last_update_id, **fields}
        self.pending.append(update)
        self.notify()
        return update

    def notify(self) -> None:
        """Wake every waiter; each re-checks what it waits for."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Wait for the next change (a new update, a webhook change, a reset or closing)."""
        await self._changed.wait()

    def close(self) -> None:
        """Release long polls and the webhook worker for shutdown."""
        self.closed = True
        self.notify()

    def drop_pending(self) -> None:
        """Forget every pending update (drop_pending_updates, reset)."""
        self.pending.clear()
        self.notify()

    def acknowledge(self, update: JsonObject) -> None:
        """The webhook took ``update``: remove it unless it was dropped meanwhile."""
        if self.pending and self.pending[0] is update:
            self.pending.popleft()
            self.taken_by_webhook += 1

    def confirm(self, offset: int | None) -> None:
        """Apply getUpdates' offset: positive confirms lower ids, negative keeps the last -N."""
        if not offset:
            return
        if offset > 0:
            while self.pending and self.pending[0]["update_id"] < offset:
                self.pending.popleft()
                self.confirmed_by_poll += 1
            return
        while len(self.pending) > -offset:
            self.pending.popleft()

    async def poll(self, offset: int | None, limit: int, wait: float) -> list[JsonObject]:
        """getUpdates: confirm, then wait up to ``wait`` seconds for something to return.

        A newer call ends an older waiting one with 409, as Telegram does.
        """
        if self.webhook is not None:
            raise webhook_conflict()
        self.confirm(offset)
        self._poll_generation += 1
        generation = self._poll_generation
        self.notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self.pending and not self.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await self.changed()
            except TimeoutError:
                break
            if generation != self._poll_generation:
                raise poll_conflict()
            if self.webhook is not None:
                raise webhook_conflict()
        return list(itertools.islice(self.pending, limit))

    def info(self) -> JsonObject:
        """getWebhookInfo's WebhookInfo object."""
        hook = self.webhook
        if hook is None:
            return {
                "url": "",
                "has_custom_certificate": False,
                "pending_update_count": len(self.pending),
            }
        info: JsonObject = {
            "url": hook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending),
            "max_connections": hook.max_connections,
        }
        if hook.allowed_updates is not None:
            info["allowed_updates"] = hook.allowed_updates
        if hook.last_error_date is not None:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message
        return info
