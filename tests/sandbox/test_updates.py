"""Playing users: updates by getUpdates (long polling) and by webhook."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.sandbox.conftest import BOT_ID, BotClient

pytestmark = pytest.mark.timeout(15)


async def say(bot: BotClient, text: str = "hi", **fields: Any) -> Any:
    body = {"bot_id": BOT_ID, "chat_id": 42, "user_id": 42, "text": text, **fields}
    return await bot.control("users/say", body)


async def test_say_builds_a_realistic_update(bot: BotClient) -> None:
    said = await say(bot, "hello @bot123456 🙂 and @bot1234567", first_name="Ann", username="ann")
    assert said["update_id"] == 1
    [update] = (await bot.call("getUpdates")).result
    assert update["update_id"] == 1
    message = update["message"]
    assert message["message_id"] == said["message_id"]
    assert message["from"] == {
        "id": 42,
        "is_bot": False,
        "first_name": "Ann",
        "username": "ann",
        "language_code": "en",
    }
    assert message["chat"]["type"] == "private"
    assert message["text"].startswith("hello")
    assert isinstance(message["date"], int)
    assert message["entities"] == [{"offset": 6, "length": 10, "type": "mention"}]


async def test_group_messages_and_replies(bot: BotClient) -> None:
    group = {"chat_id": -500, "chat_title": "Friends"}
    await say(bot, "/start@bot123456 now", **group)
    sent = (await bot.send(-500, "welcome")).result
    await say(bot, "thanks", reply_to_message_id=sent["message_id"], **group)
    updates = (await bot.call("getUpdates")).result
    first, second = (u["message"] for u in updates)
    assert first["chat"] == {"id": -500, "type": "group", "title": "Friends"}
    assert first["entities"] == [{"offset": 0, "length": 16, "type": "bot_command"}]
    assert second["reply_to_message"]["message_id"] == sent["message_id"]
    assert second["reply_to_message"]["text"] == "welcome"
    assert second["message_id"] == sent["message_id"] + 1  # one id sequence per chat
    assert sent["chat"]["title"] == "Friends"


async def _delivered_by(bot: BotClient) -> dict[str, int]:
    return (await bot.control(f"updates?bot_id={BOT_ID}"))["delivered_by"]


async def test_long_poll_waits_and_offset_confirms(bot: BotClient) -> None:
    polling = asyncio.ensure_future(bot.call("getUpdates", timeout=30))
    await wait_for(lambda: bot.sandbox.state.updates(BOT_ID)._poll_generation == 1)
    assert not polling.done(), "the poll waits for an update"
    await say(bot, "wake up")
    updates = (await polling).result
    assert [u["message"]["text"] for u in updates] == ["wake up"]
    # Unconfirmed updates come again; an offset past them confirms them.
    await say(bot, "second")
    again = (await bot.call("getUpdates", offset=updates[0]["update_id"])).result
    assert [u["update_id"] for u in again] == [1, 2]
    assert await _delivered_by(bot) == {"getUpdates": 0, "webhook": 0}, "none confirmed yet"
    assert (await bot.call("getUpdates", offset=3, timeout=0.2)).result == []
    assert (await bot.call("getWebhookInfo")).result["pending_update_count"] == 0
    assert await _delivered_by(bot) == {"getUpdates": 2, "webhook": 0}


async def test_poll_limit_negative_offset_and_empty_timeout(bot: BotClient) -> None:
    for i in range(5):
        await say(bot, f"m{i}")
    assert len((await bot.call("getUpdates", limit=2)).result) == 2
    last_two = (await bot.call("getUpdates", offset=-2)).result
    assert [u["message"]["text"] for u in last_two] == ["m3", "m4"]
    began = time.monotonic()
    assert (await bot.call("getUpdates", offset=6, timeout=0.3)).result == []
    assert time.monotonic() - began >= 0.25


async def test_a_newer_poll_ends_the_older_one(bot: BotClient) -> None:
    older = asyncio.ensure_future(bot.call("getUpdates", timeout=30))
    await wait_for(lambda: bot.sandbox.state.updates(BOT_ID)._poll_generation == 1)
    newer = asyncio.ensure_future(bot.call("getUpdates", timeout=0.2))
    conflict = await older
    assert conflict.status == 409
    assert conflict.body["description"].startswith("Conflict: terminated by other getUpdates")
    assert (await newer).result == []


class Receiver:
    """A webhook endpoint that fails its first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.got: list[tuple[str | None, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500)
        secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
        self.got.append((secret, orjson.loads(await request.read())))
        self.arrived.set()
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver(failures=2)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield hook, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


async def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_webhook_delivery_with_secret_retries_and_order(bot: BotClient, receiver) -> None:
    hook, url = receiver
    await say(bot, "before the webhook")  # kept and pushed once the webhook is set
    answer = await bot.call("setWebhook", url=url, secret_token="s3cr3t_-X", max_connections=5)
    assert answer.body == {"ok": True, "result": True, "description": "Webhook was set"}
    for text in ("one", "two", "three"):
        await say(bot, text)
    await wait_for(lambda: len(hook.got) == 4)
    assert {secret for secret, _ in hook.got} == {"s3cr3t_-X"}
    texts = [update["message"]["text"] for _, update in hook.got]
    assert texts == ["before the webhook", "one", "two", "three"]
    assert await _delivered_by(bot) == {"getUpdates": 0, "webhook": 4}
    info = (await bot.call("getWebhookInfo")).result
    assert info["url"] == url
    assert info["pending_update_count"] == 0
    assert info["max_connections"] == 5
    assert info["last_error_message"].startswith("Wrong response from the webhook: 500")
    conflict = await bot.call("getUpdates")
    assert conflict.status == 409
    assert conflict.body["description"].startswith("Conflict: can't use getUpdates")


async def test_delete_webhook_returns_updates_to_polling(bot: BotClient) -> None:
    await bot.call("setWebhook", url="http://127.0.0.1:9/unreachable")
    await say(bot, "stuck")
    hook = bot.sandbox.state.updates(BOT_ID).webhook
    assert hook is not None
    await wait_for(lambda: hook.last_error_date is not None)
    deleted = await bot.call("deleteWebhook")
    assert deleted.body["description"] == "Webhook was deleted"
    [update] = (await bot.call("getUpdates")).result
    assert update["message"]["text"] == "stuck"
    assert (await bot.call("getWebhookInfo")).result == {
        "url": "",
        "has_custom_certificate": False,
        "pending_update_count": 1,
    }
    await bot.call("setWebhook", url="http://127.0.0.1:9/x", drop_pending_updates=True)
    assert (await bot.call("getWebhookInfo")).result["pending_update_count"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"url": "ftp://example.org"},
        {"url": "http://h/x", "secret_token": "no spaces"},
        {"url": "http://h/x", "max_connections": 101},
    ],
)
async def test_set_webhook_validates(bot: BotClient, params: dict[str, Any]) -> None:
    assert (await bot.call("setWebhook", **params)).status == 400


async def test_say_validates_its_body(bot: BotClient) -> None:
    url = f"{bot.sandbox.url}/_sandbox/users/say"
    async with bot.http.post(url, json={"bot_id": BOT_ID, "text": "no chat"}) as response:
        assert response.status == 422
        assert "chat_id" in str(await response.json())
