"""A message that fails for a reason of its own ends in the DLQ with it; the rest go on."""

from __future__ import annotations

import os
import time
from unittest import mock

import orjson
import pytest

from shared.broker import Commit
from shared.models import Envelope, Priority
from tests.helpers import eventually
from tests.services.sender.harness import BOT, backend, metric, running

__all__ = ["backend"]

pytestmark = pytest.mark.timeout(60)

PREFETCH = 8


def _poison(i: int) -> Envelope:
    """An entry queued before ingest checked chat ids: the limiter cannot take its chat."""
    return Envelope(
        id=f"poison{i}",
        bot_id=BOT,
        method="sendMessage",
        params={"chat_id": {"a": i}, "text": "x"},
        accepted_at=time.time(),
        priority=Priority.NORMAL,
    )


async def test_poison_is_dead_lettered_and_does_not_hold_the_queue(backend, namespace) -> None:
    env = {"FLOODGATE_SENDER_PREFETCH": str(PREFETCH), "FLOODGATE_SENDER_BATCH": "8"}
    with mock.patch.dict(os.environ, env):
        async with running(backend, namespace) as p:
            stream = p.ctx.keys.send(Priority.NORMAL)
            poison = [_poison(i) for i in range(PREFETCH)]
            adds = [(stream, e.id, e.dumps(), "") for e in poison]
            await p.ctx.broker.commit(Commit(adds=adds))
            good = [
                await p.submit({"bot_id": BOT, "chat_id": 100 + i, "text": f"good {i}"})
                for i in range(5)
            ]
            for ident in good:
                await p.wait_status(ident, "sent", timeout=30)
            for i in range(PREFETCH):
                doc = await p.wait_status(f"poison{i}", "dead", timeout=30)
                assert doc["error"].startswith("internal error: "), doc
            status, dlq = await p.call("GET", "/v1/dlq?limit=100")
            assert status == 200
            assert {d["id"] for d in dlq["items"]} == {f"poison{i}" for i in range(PREFETCH)}
            dead = metric(await p.metrics(), "floodgate_messages_dead_total", reason="internal")
            assert dead == PREFETCH


async def test_an_unreadable_message_with_a_place_gives_it_up(backend, namespace) -> None:
    """An entry that is no valid envelope (two versions disagreeing on it during an upgrade)
    but holds a place in its chat's order: dead-lettered, it gives the place up, and the chat's
    next message goes instead of waiting behind it forever."""
    async with running(backend, namespace) as p:
        keys = p.ctx.keys.of_bot(BOT)
        stream = keys.send(Priority.NORMAL)
        chat = keys.chat_state(BOT, 77, Priority.NORMAL)
        good = Envelope(
            id="after",
            bot_id=BOT,
            method="sendMessage",
            params={"chat_id": 77},
            parts=["after the unreadable one"],
            accepted_at=time.time(),
            priority=Priority.NORMAL,
        )
        unreadable = orjson.loads(good.dumps()) | {"id": "before", "accepted_at": "not a time"}
        adds = [
            (stream, "before", orjson.dumps(unreadable), chat),  # seq 1 of the chat
            (stream, "after", good.dumps(), chat),  # seq 2
        ]
        await p.ctx.broker.commit(Commit(adds=adds))

        # no status record: these entries were put in the stream directly
        async def delivered() -> bool:
            return bool(p.delivered(77))

        await eventually(delivered, timeout=30)
        assert [m.text for m in p.delivered(77)] == ["after the unreadable one"]
        status, dlq = await p.call("GET", "/v1/dlq?limit=10")
        assert status == 200
        assert [d["error"][:17] for d in dlq["items"]] == ["unreadable entry:"]
