"""Reading the normalized updates floodgate publishes on ``{namespace}:updates``, for the
inbound side of an application, in a consumer group of the application's own.

    async with Updates("redis://127.0.0.1:6379/0", group="my-app") as updates:
        async for batch in updates:
            for item in batch:
                handle(item.update)      # a dict: bot_id, chat_id, text, mentions_bot, ...
            await updates.ack(batch)

An update not acknowledged is read again by the same consumer after a restart (its own
pending entries come first), so handle updates idempotently and acknowledge after handling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from redis.exceptions import ResponseError

from shared.redis_client import connect

log = logging.getLogger("floodgate.client.updates")

BATCH = 100
BLOCK_MS = 500


@dataclass(frozen=True, slots=True)
class Incoming:
    """One update as read from the stream: its entry id (to acknowledge) and its fields."""

    entry_id: str
    update: dict[str, Any]


class Updates:
    """A consumer of the updates stream in ``group``; ``consumer`` names this process in it
    (default: host and pid), so that its pending entries are its own after a restart."""

    def __init__(
        self,
        redis_url: str,
        group: str,
        *,
        namespace: str = "fg",
        consumer: str | None = None,
        batch: int = BATCH,
        block_ms: int = BLOCK_MS,
    ) -> None:
        self._client = connect(redis_url)  # any REDIS_URL floodgate takes, a cluster's too
        self._stream = f"{namespace}:updates"
        self._group = group
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._batch = batch
        self._block_ms = block_ms
        self._start = "0"  # own pending entries first
        self._ready = False

    async def __aenter__(self) -> Updates:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the Redis connections."""
        await self._client.aclose()

    async def read(self) -> list[Incoming]:
        """The next updates, waiting up to ``block_ms`` for new ones; may be empty."""
        if not self._ready:
            with contextlib.suppress(ResponseError):  # the group exists already
                await self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
            self._ready = True
        entries = await self._read(self._start)
        if self._start != ">":
            # the pending list, a page at a time: the next page starts after this one
            if len(entries) < self._batch:
                self._start = ">"
            else:
                self._start = _text(entries[-1][0])
            if not entries:
                entries = await self._read(self._start)
        return await self._decoded(entries)

    async def _decoded(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Incoming]:
        """The updates of the entries; one that cannot be read (deleted meanwhile, no ``d``,
        not JSON) is logged and acknowledged, so that it is not read again forever."""
        items, poison = [], []
        for entry_id, fields in entries:
            try:
                items.append(_incoming(entry_id, fields))
            except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
                poison.append(_text(entry_id))
                log.warning(
                    "unreadable update entry %s skipped and acknowledged: %s",
                    _text(entry_id),
                    type(exc).__name__,
                )
        if poison:
            await self._client.xack(self._stream, self._group, *poison)
        return items

    async def _read(self, start: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        block = self._block_ms if start == ">" else None
        reply: Any = await self._client.xreadgroup(
            self._group, self._consumer, {self._stream: start}, self._batch, block
        )
        return reply[0][1] if reply else []

    async def ack(self, items: Sequence[Incoming]) -> None:
        """Acknowledge handled updates: they are not read again."""
        if items:
            await self._client.xack(self._stream, self._group, *[i.entry_id for i in items])

    async def __aiter__(self) -> AsyncIterator[list[Incoming]]:
        """Non-empty batches, forever."""
        while True:
            batch = await self.read()
            if batch:
                yield batch


def _text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def _incoming(entry_id: bytes | str, fields: dict[bytes, bytes] | None) -> Incoming:
    if not fields:
        raise KeyError("d")  # a pending entry deleted from the stream meanwhile
    update = orjson.loads(fields[b"d"])
    if not isinstance(update, dict):
        raise TypeError("an update is a JSON object")
    return Incoming(_text(entry_id), update)
