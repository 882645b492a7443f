"""Recording every message, in and out, in the PostgreSQL store, in batches.

The recorder reads the normalized updates and the sender's settled-message events in a consumer
group of its own and writes them with one ``executemany`` per table per batch. While PostgreSQL
is away the entries stay pending in Redis and the record catches up when it returns; delivery
never waits for the store.

A row the store cannot take (a NUL in a text, a number out of its range) spoils its batch's
transaction: the batch is then written one entry at a time, and an entry that fails on its own
is set aside (acknowledged, logged with the reason, counted in
``floodgate_store_rows_set_aside_total``) so that the entries behind it are recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from prometheus_client import CollectorRegistry, Counter

from shared.broker import Commit, Entry
from shared.context import Context
from shared.redact import redact

log = logging.getLogger("floodgate.store")

GROUP = "store"
BATCH = 500
BLOCK_MS = 1000
# A live recorder re-reads its own pending entries at every step, and a failing step backs off
# 5 s at most: an entry idle for a minute belongs to a recorder that is gone
CLAIM_IDLE_MS = 60_000
REASON_CHARS = 300
# What one bad entry raises: it is set aside. Anything else (the store is away) keeps the batch
# pending until the store is back.
ROW_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
    KeyError,
    OverflowError,
)

UPSERT_BOT = "INSERT INTO bots (id) VALUES ($1) ON CONFLICT (id) DO NOTHING"
UPSERT_CHAT = """
INSERT INTO chats (bot_id, telegram_chat_id, type) VALUES ($1, $2, $3)
ON CONFLICT (bot_id, telegram_chat_id) DO UPDATE SET type = COALESCE(EXCLUDED.type, chats.type)
"""
# One row per incoming message of a chat: the same update again changes nothing, an edit
# ($10) takes its text, and a mention or reply seen by either stays (the reply lookup)
INSERT_IN = """
INSERT INTO messages (direction, bot_id, chat_db_id, telegram_message_id,
                      reply_to_telegram_message_id, sender_id, text, mentions_bot, replies_to_bot,
                      created_at)
SELECT 'in', $1, c.id, $3, $4, $5, $6, $7, $8, to_timestamp($9)
FROM chats c WHERE c.bot_id = $1 AND c.telegram_chat_id = $2
ON CONFLICT (chat_db_id, telegram_message_id) WHERE direction = 'in' DO UPDATE
SET text = CASE WHEN $10::boolean THEN EXCLUDED.text ELSE messages.text END,
    mentions_bot = messages.mentions_bot OR EXCLUDED.mentions_bot,
    replies_to_bot = messages.replies_to_bot OR EXCLUDED.replies_to_bot,
    updated_at = CASE WHEN $10::boolean THEN now() ELSE messages.updated_at END
"""
UPSERT_OUT = """
INSERT INTO messages (message_uid, direction, bot_id, chat_db_id, telegram_message_id,
                      reply_to_telegram_message_id, text, status, priority, created_at, updated_at)
SELECT $1, 'out', $2, c.id, $4, $5, $6, $7, $8, to_timestamp($9), now()
FROM chats c WHERE c.bot_id = $2 AND c.telegram_chat_id = $3
ON CONFLICT (message_uid) DO UPDATE
SET status = EXCLUDED.status, telegram_message_id = EXCLUDED.telegram_message_id,
    updated_at = now()
"""


class RecorderMetrics:
    """Entries the store could not take."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.set_aside = Counter(
            "floodgate_store_rows_set_aside_total",
            "Entries the message store refused and that were skipped, by stream and error.",
            ["stream", "error"],
            registry=registry,
        )


class Recorder:
    """Moves updates and settled messages from Redis into PostgreSQL."""

    def __init__(
        self, ctx: Context, pool: asyncpg.Pool, metrics: RecorderMetrics | None = None
    ) -> None:
        self._ctx = ctx
        self._pool = pool
        self._metrics = metrics or RecorderMetrics(CollectorRegistry())
        # the updates stream and every partition's events
        self._events = {part.events for part in ctx.keys.shards}
        self._streams = [ctx.keys.updates, *sorted(self._events)]
        self._started = False
        self._next_claim = 0.0  # the first step looks at once

    async def start(self) -> None:
        """Create the consumer groups at the start of both streams."""
        for stream in self._streams:
            await self._ctx.broker.ensure_group(stream, GROUP)
        self._started = True

    async def step(self) -> bool:
        """Record one batch; True if there was anything to record. The first step (and every
        one until it succeeds) creates the consumer groups, so that a Redis away at start is
        waited for like any other outage. Entries left pending by a recorder that is gone (a
        replaced pod has a name of its own) are claimed once idle for ``CLAIM_IDLE_MS``, looked for
        every half of that."""
        if not self._started:
            await self.start()
        broker, me = self._ctx.broker, self._ctx.consumer
        entries: list[Entry] = []
        for stream in self._streams:
            entries += await broker.read_own_pending(stream, GROUP, me, BATCH)
        if not entries and time.monotonic() >= self._next_claim:
            # a look for a gone recorder's entries now and then, not a round trip per stream
            # on every step
            self._next_claim = time.monotonic() + CLAIM_IDLE_MS / 2000
            for stream in self._streams:
                entries += await broker.claim_stale(stream, GROUP, me, CLAIM_IDLE_MS, BATCH)
                if entries:
                    log.info(
                        "claimed entries of a recorder gone silent",
                        extra={"stream": stream, "count": len(entries)},
                    )
                    break
        if not entries:
            entries = await broker.read(self._streams, GROUP, me, BATCH, BLOCK_MS)
        if not entries:
            return False
        await self._write_apart(entries)
        # one commit per stream: on a Redis Cluster they lie in different slots
        commits: dict[str, Commit] = {}
        for entry in entries:
            commit = commits.setdefault(entry.stream, Commit(group=GROUP))
            if entry.stream in self._events:
                commit.acks.append((entry.stream, entry.entry_id))
            else:
                commit.seen.append((entry.stream, entry.entry_id))
        for commit in commits.values():
            await broker.commit(commit)
        return True

    async def _write_apart(self, entries: Sequence[Entry]) -> None:
        """Write the batch; if one of its entries spoils it, each on its own, setting aside
        those the store refuses."""
        try:
            await self._write(entries)
        except ROW_ERRORS:
            for entry in entries:
                try:
                    await self._write([entry])
                except ROW_ERRORS as exc:
                    self._set_aside(entry, exc)

    def _set_aside(self, entry: Entry, exc: Exception) -> None:
        stream = "events" if entry.stream in self._events else "updates"
        error = type(exc).__name__
        self._metrics.set_aside.labels(stream, error).inc()
        log.warning(
            "entry set aside: the message store refuses it",
            extra={
                "stream": stream,
                "entry_id": entry.entry_id,
                "error": error,
                "reason": redact(str(exc))[:REASON_CHARS],
            },
        )

    async def _write(self, entries: Sequence[Entry]) -> None:
        incoming, outgoing = [], []
        for entry in entries:
            doc = orjson.loads(entry.payload)
            if not isinstance(doc, dict):
                raise ValueError(f"entry {entry.entry_id} holds no JSON object")
            if not isinstance(doc.get("chat_id"), int):
                continue  # @channel usernames and updates without a chat are not recorded
            if entry.stream in self._events:
                outgoing.append(doc)
            elif doc.get("chat_id") is not None and doc.get("message_id") is not None:
                incoming.append(doc)
        async with self._pool.acquire() as conn, conn.transaction():
            await _chats(conn, incoming + outgoing)
            if incoming:
                await conn.executemany(INSERT_IN, [_in_row(d) for d in incoming])
            if outgoing:
                await conn.executemany(UPSERT_OUT, [_out_row(d) for d in outgoing])


async def _chats(conn: asyncpg.Connection, docs: list[dict[str, Any]]) -> None:
    bots = sorted({(d["bot_id"],) for d in docs})
    types: dict[tuple[int, int], str | None] = {}
    for d in docs:
        key = (d["bot_id"], d["chat_id"])
        types[key] = d.get("chat_type") or types.get(key)
    # sorted, so that concurrent recorders take the rows' locks in the same order
    chats = [(bot, chat, kind) for (bot, chat), kind in sorted(types.items())]
    if bots:
        await conn.executemany(UPSERT_BOT, bots)
    if chats:
        await conn.executemany(UPSERT_CHAT, chats)


def _in_row(d: dict[str, Any]) -> tuple[Any, ...]:
    return (
        d["bot_id"],
        d["chat_id"],
        d["message_id"],
        d.get("reply_to_message_id"),
        d.get("sender_id"),
        d.get("text"),
        d.get("mentions_bot", False),
        d.get("replies_to_bot", False),
        d.get("date") or 0,
        str(d.get("kind", "")).startswith("edited_"),
    )


def _out_row(d: dict[str, Any]) -> tuple[Any, ...]:
    return (
        d["id"],
        d["bot_id"],
        int(d["chat_id"]),
        d.get("telegram_message_id"),
        d.get("reply_to_message_id"),
        d.get("text"),
        d["status"],
        d.get("priority"),
        d.get("accepted_at") or 0,
    )
