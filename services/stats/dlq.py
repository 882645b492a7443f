"""Dead-letter administration: list, replay, drop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from shared.broker import Broker, DeadLetter, routed
from shared.keys import Keys
from shared.models import Envelope, Status

REPLAY_PAGE = 1000


def describe(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as the API shows it: the message, its last error and its history."""
    meta = orjson.loads(letter.meta or b"{}")
    env = orjson.loads(letter.payload)
    return {
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


async def replay(broker: Broker, keys: Keys, ids: Sequence[str] | None, ttl: int) -> int:
    """Put dead letters (all, or those named) back on their send queue, attempts reset."""
    letters = await broker.dlq_list(REPLAY_PAGE if ids is None else 1_000_000)
    wanted = None if ids is None else set(ids)
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
    return await broker.dlq_requeue(keys.send_streams, items)
