"""Dead-letter administration: list, replay, drop."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from shared.broker import Broker, DeadLetter, routed
from shared.context import dlq_keys
from shared.keys import Keys
from shared.models import Envelope, Status
from shared.redact import redact

REPLAY_PAGE = 1000


def _loads(raw: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def describe(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as the API shows it: the message, its last error and its history.

    An entry that could not be read at all is shown with its raw bytes, so it can be looked at
    and dropped.
    """
    meta = _loads(letter.meta or b"{}")
    env = _loads(letter.payload)
    if not env:
        env = {"raw": letter.payload.decode("utf-8", "replace")}
    doc = {
        "id": letter.message_id,
        "priority": letter.priority.value,
        "bot_id": env.get("bot_id"),
        "chat_id": (env.get("params") or {}).get("chat_id"),
        "method": env.get("method"),
        "attempts": env.get("attempts", 0),
        "error": meta.get("error"),
        "reason": meta.get("reason"),
        "history": meta.get("history", []),
        "dead_at": letter.dead_at_ms / 1000,
        "message": env,
    }
    # errors are redacted where they are made; this catches letters stored before that
    redacted: dict[str, Any] = orjson.loads(redact(orjson.dumps(doc).decode()))
    return redacted


async def replay(broker: Broker, keys: Keys, ids: Sequence[str] | None, ttl: int) -> int:
    """Put dead letters (all, or those named) back on their send queue, attempts reset.

    All of them are replayed page by page until a page moves nothing more (what is left then
    cannot be read as a message and stays for a person to look at).
    """
    if ids is not None:
        wanted = set(ids)
        return sum([await _replay_page(broker, k, wanted, ttl, 1_000_000) for k in keys.shards])
    # only what was dead when the replay began: a letter that dies again meanwhile stays
    cutoff = int(time.time() * 1000)
    moved = 0
    for part in keys.shards:
        while True:
            page = await _replay_page(broker, part, None, ttl, REPLAY_PAGE, cutoff)
            moved += page
            if page == 0:
                break
    return moved


async def list_letters(broker: Broker, keys: Keys, limit: int) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters over every partition, oldest first."""
    letters: list[DeadLetter] = []
    for part in keys.shards:
        letters += await broker.dlq_list(limit, dlq_keys(part))
    letters.sort(key=lambda letter: letter.dead_at_ms)
    return letters[:limit]


async def drop_letter(broker: Broker, keys: Keys, message_id: str) -> bool:
    """Remove one dead letter, from whichever partition holds it (its id's first)."""
    first = keys.of_message(message_id)
    for part in (first, *(k for k in keys.shards if k != first)):
        if await broker.dlq_drop(message_id, dlq_keys(part)):
            return True
    return False


async def _replay_page(
    broker: Broker,
    keys: Keys,
    wanted: set[str] | None,
    ttl: int,
    limit: int,
    cutoff_ms: int | None = None,
) -> int:
    letters = await broker.dlq_list(limit, dlq_keys(keys))
    if cutoff_ms is not None:
        letters = [letter for letter in letters if letter.dead_at_ms <= cutoff_ms]
    items: list[tuple[str, bytes]] = []
    for letter in letters:
        if wanted is not None and letter.message_id not in wanted:
            continue
        try:
            env = Envelope.loads(letter.payload)
        except ValueError:
            continue
        env.attempts, env.errors, env.seq = 0, [], None
        chat = keys.chat_state(env.bot_id, env.order_key, letter.priority)
        items.append((letter.message_id, routed(letter.priority, env.dumps(), chat)))
    records = {
        keys.record(ident): {"status": Status.SCHEDULED.value, "attempts": "0"}
        for ident, _ in items
    }
    await broker.put_records(records, ttl)
    return await broker.dlq_requeue(keys.send_streams, items, dlq_keys(keys))
