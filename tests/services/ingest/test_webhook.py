"""Inbound: Telegram updates by webhook, secrets, dedupe, normalization, the updates stream."""

from __future__ import annotations

import argparse
import io
import secrets
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import orjson
import pytest

from floodgate import webhook_cli
from sandbox import SandboxConfig, start_sandbox
from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.stats.recorder import Recorder
from shared.context import Context, build_context
from shared.migrations import migrate
from shared.settings import CommonSettings
from shared.webhooks import derived_secret
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, eventually, serving

pytestmark = pytest.mark.timeout(60)

BOT = 111
SECRET = derived_secret(TOKENS[BOT])
HEADER = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
USER = {"id": 42, "is_bot": False, "first_name": "Ann", "username": "ann"}
BOT_USER = {"id": BOT, "is_bot": True, "first_name": "Bot", "username": "helper_bot"}


def _ctx(redis_url: str | None, namespace: str, base: str = "http://127.0.0.1:1") -> Context:
    settings = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        TELEGRAM_API_BASE=base,
    )
    return build_context(settings, allow_memory=True)


@pytest.fixture(params=["redis", "memory"])
async def inbound(
    request, redis_url: str, namespace: str, redis_client
) -> AsyncIterator[tuple[str, Context]]:
    ctx = _ctx(redis_url if request.param == "redis" else None, namespace)
    settings = IngestSettings(FLOODGATE_BOT_USERNAMES=f"{BOT}=@helper_bot")
    async with serving(ctx, [IngestService(ctx, settings)]) as url:
        yield url, ctx
    await ctx.close()


async def _post(url: str, body, headers=HEADER, bot: int = BOT) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{url}/webhook/telegram/{bot}",
            data=body if isinstance(body, (bytes, io.BytesIO)) else orjson.dumps(body),
            headers=headers,
        ) as resp,
    ):
        return resp.status, await resp.json()


async def _published(ctx: Context) -> list[dict]:
    await ctx.broker.ensure_group(ctx.keys.updates, "app")
    entries = await ctx.broker.read([ctx.keys.updates], "app", "t", 100, None)
    return [orjson.loads(e.payload) for e in entries]


def _msg(chat: dict, text: str, **extra) -> dict:
    return {
        "message_id": 10,
        "date": 1_790_000_000,
        "chat": chat,
        "from": USER,
        "text": text,
        **extra,
    }


PRIVATE = {"id": 42, "type": "private", "first_name": "Ann"}
GROUP = {"id": -100, "type": "group", "title": "G"}
SUPER = {"id": -1001234567890, "type": "supergroup", "title": "S"}
CHANNEL = {"id": -1009876543210, "type": "channel", "title": "C"}


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        (
            {"update_id": 1, "message": _msg(PRIVATE, "hi")},
            {
                "kind": "message",
                "chat_type": "private",
                "chat_id": 42,
                "text": "hi",
                "mentions_bot": False,
            },
        ),
        (
            {
                "update_id": 2,
                "message": _msg(
                    GROUP,
                    "hey @helper_bot!",
                    entities=[{"type": "mention", "offset": 4, "length": 11}],
                ),
            },
            {
                "kind": "message",
                "chat_type": "group",
                "mentions_bot": True,
                "sender_username": "ann",
            },
        ),
        (
            {
                "update_id": 3,
                "message": _msg(
                    SUPER,
                    "thanks",
                    reply_to_message={
                        "message_id": 7,
                        "date": 1,
                        "chat": SUPER,
                        "from": BOT_USER,
                        "text": "done",
                    },
                ),
            },
            {
                "chat_type": "supergroup",
                "replies_to_bot": True,
                "reply_to_message_id": 7,
                "mentions_bot": False,
            },
        ),
        (
            {"update_id": 4, "edited_message": _msg(GROUP, "fixed")},
            {"kind": "edited_message", "text": "fixed"},
        ),
        (
            {
                "update_id": 5,
                "channel_post": {
                    "message_id": 3,
                    "date": 1,
                    "chat": CHANNEL,
                    "sender_chat": CHANNEL,
                    "text": "news",
                },
            },
            {"kind": "channel_post", "chat_type": "channel", "sender_id": CHANNEL["id"]},
        ),
        (
            {
                "update_id": 6,
                "message": _msg(
                    GROUP,
                    "/start@helper_bot",
                    entities=[{"type": "bot_command", "offset": 0, "length": 17}],
                ),
            },
            {"mentions_bot": True},
        ),
        (
            {
                "update_id": 7,
                "message": _msg(
                    GROUP,
                    "😀 @helper_bot",
                    entities=[{"type": "mention", "offset": 3, "length": 11}],
                ),
            },
            {"mentions_bot": True},
        ),
        (
            {"update_id": 8, "my_chat_member": {"chat": GROUP, "from": USER, "date": 1}},
            {"kind": "other", "raw_kind": "my_chat_member", "chat_id": None},
        ),
    ],
)
async def test_updates_are_normalized_and_published(inbound, update, expected) -> None:
    url, ctx = inbound
    status, body = await _post(url, update)
    assert (status, body) == (200, {"ok": True, "duplicate": False})
    [published] = await _published(ctx)
    assert published["bot_id"] == BOT
    assert published["update_id"] == update["update_id"]
    assert {k: published[k] for k in expected} == expected


async def test_unknown_fields_are_tolerated(inbound) -> None:
    url, ctx = inbound
    update = {
        "update_id": 9,
        "brand_new": {"x": 1},
        "message": {**_msg(PRIVATE, "hi"), "future_field": True},
    }
    assert (await _post(url, update))[0] == 200
    assert len(await _published(ctx)) == 1


@pytest.mark.parametrize("headers", [{}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}])
async def test_wrong_or_missing_secret_is_401_and_stores_nothing(inbound, headers) -> None:
    url, ctx = inbound
    status, body = await _post(
        url, {"update_id": 1, "message": _msg(PRIVATE, "x")}, headers=headers
    )
    assert status == 401
    assert "Secret-Token" in body["error"]
    assert await _published(ctx) == []


async def test_repeated_update_id_is_stored_once(inbound) -> None:
    url, ctx = inbound
    update = {"update_id": 77, "message": _msg(PRIVATE, "once")}
    assert await _post(url, update) == (200, {"ok": True, "duplicate": False})
    assert await _post(url, update) == (200, {"ok": True, "duplicate": True})
    other_bot = derived_secret(TOKENS[222])
    assert (await _post(url, update, {"X-Telegram-Bot-Api-Secret-Token": other_bot}, bot=222))[
        0
    ] == 200
    assert [(u["bot_id"], u["update_id"]) for u in await _published(ctx)] == [(BOT, 77), (222, 77)]


async def test_bad_requests(inbound) -> None:
    url, ctx = inbound
    assert (await _post(url, {"update_id": 1}, bot=999))[0] == 401  # as a wrong secret
    status, body = await _post(url, {"message": _msg(PRIVATE, "x")})
    assert status == 422
    assert "update_id" in body["error"]
    assert (await _post(url, b"{nope"))[0] == 422
    assert (await _post(url, io.BytesIO(b'{"update_id": 1, "x": "' + b"y" * (2 << 20) + b'"}')))[
        0
    ] == 413
    assert await _published(ctx) == []


async def test_webhook_set_then_users_reach_the_stream(
    redis_url: str, namespace: str, monkeypatch
) -> None:
    """`floodgate webhook set` registers ingest with the sandbox; a user's message is pushed
    with the secret header and lands on the updates stream, mention recognised."""
    async with await start_sandbox(SandboxConfig()) as sandbox:
        ctx = _ctx(redis_url, namespace, sandbox.url)
        settings = IngestSettings(FLOODGATE_BOT_USERNAMES=f"{BOT}=bot{BOT}")
        async with serving(ctx, [IngestService(ctx, settings)]) as url:
            monkeypatch.setenv("FLOODGATE_BOTS", ",".join(TOKENS.values()))
            monkeypatch.setenv("TELEGRAM_API_BASE", sandbox.url)
            args = argparse.Namespace(action="set", url=url, drop_pending=False, max_connections=40)
            assert await webhook_cli._run(args) == 0
            async with aiohttp.ClientSession() as s:
                say = {"bot_id": BOT, "chat_id": -500, "user_id": 9, "text": f"hello @bot{BOT}"}
                async with s.post(f"{sandbox.url}/_sandbox/users/say", json=say) as resp:
                    assert resp.status == 200
            got: list[dict] = []

            async def arrived() -> bool:
                got.extend(await _published(ctx))
                return bool(got)

            await eventually(arrived, 10)
            assert got[0]["chat_id"] == -500
            assert got[0]["mentions_bot"] is True
        await ctx.close()


async def test_answers_to_mentions_and_replies_go_high(inbound) -> None:
    url, _ = inbound
    mention = _msg(
        GROUP, "@helper_bot help", entities=[{"type": "mention", "offset": 0, "length": 11}]
    )
    reply = {
        **_msg(GROUP, "ok"),
        "message_id": 11,
        "reply_to_message": {"message_id": 7, "date": 1, "chat": GROUP, "from": BOT_USER},
    }
    plain = {**_msg(GROUP, "just chatting"), "message_id": 12}
    for n, message in enumerate((mention, reply, plain), start=100):
        assert (await _post(url, {"update_id": n, "message": message}))[0] == 200

    async def answer(to: int, **extra) -> str:
        body = {
            "bot_id": BOT,
            "chat_id": GROUP["id"],
            "text": "answer",
            "reply_to_message_id": to,
            **extra,
        }
        async with (
            aiohttp.ClientSession(headers=AUTH) as s,
            s.post(f"{url}/v1/messages", json=body) as resp,
        ):
            assert resp.status == 202
            return (await resp.json())["priority"]

    assert await answer(10) == "high", "answer to a mention"
    assert await answer(11) == "high", "answer to a reply to the bot"
    assert await answer(12) == "normal", "answer to a plain message"
    assert await answer(10, priority="low") == "low", "an explicit priority wins"
    assert await answer(10, kind="background") == "low"


MENTION_AT_4 = {"type": "mention", "offset": 4, "length": 11}
POST = {"message_id": 3, "date": 1, "chat": CHANNEL, "sender_chat": CHANNEL, "text": "news"}


async def test_posted_updates_become_stored_rows(inbound, database_url: str) -> None:
    """The same payloads, through the recorder into PostgreSQL: one row per message update."""
    url, ctx = inbound
    updates = [
        {"update_id": 1, "message": _msg(PRIVATE, "hi")},
        {
            "update_id": 2,
            "message": _msg(
                GROUP, "hey @helper_bot!", entities=[{"type": "mention", "offset": 4, "length": 11}]
            ),
        },
        {"update_id": 3, "edited_message": {**_msg(SUPER, "fixed"), "message_id": 11}},
        {
            "update_id": 4,
            "channel_post": {
                "message_id": 3,
                "date": 1,
                "chat": CHANNEL,
                "sender_chat": CHANNEL,
                "text": "news",
            },
        },
        {"update_id": 5, "my_chat_member": {"chat": GROUP, "from": USER, "date": 1}},
    ]
    for update in updates:
        assert (await _post(url, update))[0] == 200
    schema = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, server_settings={"search_path": schema}
    )
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        recorder = Recorder(ctx, pool)
        await recorder.start()
        while await recorder.step():
            pass
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT c.telegram_chat_id, c.type, m.text, m.mentions_bot FROM messages m"
                " JOIN chats c ON c.id = m.chat_db_id WHERE m.direction = 'in' ORDER BY m.id"
            )
        assert [tuple(r) for r in rows] == [
            (42, "private", "hi", False),
            (-100, "group", "hey @helper_bot!", True),
            (SUPER["id"], "supergroup", "fixed", False),
            (CHANNEL["id"], "channel", "news", False),
        ]
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def test_an_update_the_models_cannot_read_is_kept_not_refused(inbound) -> None:
    """Telegram sent it (the secret matched) and would retry a refusal until it gave up: it is
    kept as an unreadable update with its id, as polling keeps one."""
    url, ctx = inbound
    no_chat = {"update_id": 88, "message": {"message_id": 1, "date": 1, "text": "hi"}}
    assert await _post(url, no_chat) == (200, {"ok": True, "duplicate": False})
    [stored] = await _published(ctx)
    assert (stored["update_id"], stored["kind"], stored["raw_kind"]) == (88, "other", "unreadable")
