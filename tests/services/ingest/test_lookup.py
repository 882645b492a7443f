"""Automatic priority for answers to messages older than the Redis marks: the store decides."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.ingest.submit import _reply_target
from shared.context import build_context
from shared.migrations import migrate
from shared.models import Envelope
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, free_port, serving

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    name = f"fg_lookup_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.execute("INSERT INTO bots (id) VALUES (111)")
    chat = await conn.fetchval(
        "INSERT INTO chats (bot_id, telegram_chat_id) VALUES (111, -9) RETURNING id"
    )
    await conn.execute(
        "INSERT INTO messages (direction, bot_id, chat_db_id, telegram_message_id, mentions_bot)"
        " VALUES ('in', 111, $1, 70, true), ('in', 111, $1, 71, false)",
        chat,
    )
    await conn.close()
    yield url
    await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await admin.close()


async def _priority(url: str, to: int) -> str:
    body = {"bot_id": 111, "chat_id": -9, "text": "late answer", "reply_to_message_id": to}
    async with (
        aiohttp.ClientSession(headers=AUTH) as s,
        s.post(f"{url}/v1/messages", json=body) as resp,
    ):
        assert resp.status == 202
        return (await resp.json())["priority"]


@pytest.mark.parametrize("store", ["up", "down"])
async def test_store_decides_when_redis_has_no_mark(
    redis_url, namespace, redis_client, database, store
) -> None:
    db = database if store == "up" else f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    settings = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        DATABASE_URL=db,
    )
    ctx = build_context(settings, allow_memory=False)
    service = IngestService(ctx, IngestSettings())
    async with serving(ctx, [service]) as url:
        expected = "high" if store == "up" else "normal"
        assert await _priority(url, 70) == expected, "the old message mentioned the bot"
        assert await _priority(url, 71) == "normal"
        assert await _priority(url, 72) == "normal", "unknown to the store"
    if service._lookup is not None:
        await service._lookup.close()
    await ctx.close()


def test_a_reply_quoting_another_chat_is_no_answer_to_this_one() -> None:
    """reply_parameters may point at a message of another chat: its message id says nothing
    of this chat's messages, so it takes no automatic priority from them."""

    def envelope(reply: dict[str, object]) -> Envelope:
        params = {"chat_id": -9, "text": "x", "reply_parameters": reply}
        return Envelope(id="m", bot_id=111, method="sendMessage", params=params, accepted_at=0)

    assert _reply_target(envelope({"message_id": 70})) == 70
    assert _reply_target(envelope({"message_id": 70, "chat_id": -9})) == 70
    assert _reply_target(envelope({"message_id": 70, "chat_id": -10})) is None
