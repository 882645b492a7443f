"""A read whose reply never reached the sender (its connection dropped, as in a failover) left
entries pending under its name that none of its lanes holds: they are read again as soon as
Redis answers, not a claim idle time later."""

from __future__ import annotations

import time

import pytest

from shared.keys import SENDER_GROUP
from shared.models import Envelope, Priority
from shared.redis_broker import connect
from tests.helpers import eventually
from tests.procs import RedisServer
from tests.services.sender.harness import BOT, running

pytestmark = pytest.mark.timeout(60)


async def test_entries_of_a_lost_read_are_sent_once_redis_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no claim within the test: only re-reading its own pending entries can send it
    monkeypatch.setenv("FLOODGATE_SENDER_CLAIM_IDLE_MS", "600000")
    server = RedisServer(appendonly=False)
    server.start()
    client = connect(server.url)
    try:
        async with running(server.url, "lostread", names=["sender"]) as pipe:
            stream = pipe.ctx.keys.of_bot(BOT).send(Priority.NORMAL)
            envelope = Envelope(
                id="lost-read",
                bot_id=BOT,
                method="sendMessage",
                params={"chat_id": 5, "text": "held up"},
                accepted_at=time.time(),
                priority=Priority.NORMAL,
            )

            async def reading() -> bool:
                groups = await client.xinfo_groups(stream) if await client.exists(stream) else []
                return any(g["name"] == SENDER_GROUP.encode() for g in groups)

            await eventually(reading, 10)
            # in one transaction: the entry is appended and read under the sender's name, and
            # the sender's connections drop, so the read's reply is lost to it
            async with client.pipeline(transaction=True) as tx:
                tx.xadd(stream, {"d": envelope.dumps()})
                tx.xreadgroup(SENDER_GROUP, pipe.ctx.consumer, {stream: ">"}, count=10)
                tx.client_kill_filter(_type="normal", skipme=True)
                await tx.execute()
            pending = await client.xpending(stream, SENDER_GROUP)
            assert pending["pending"] == 1

            async def sent() -> bool:
                return [m.text for m in pipe.delivered(5)] == ["held up"]

            await eventually(sent, 10)
    finally:
        await client.aclose()
        server.cleanup()
