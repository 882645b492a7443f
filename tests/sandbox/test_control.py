"""The /_sandbox control API and the in-process handle."""

from __future__ import annotations

import pydantic
import pytest

from tests.sandbox.conftest import BOT_ID, OTHER_BOT_ID, OTHER_TOKEN, BotClient, StartSandbox


async def test_config_read_and_partial_update(bot: BotClient) -> None:
    config = await bot.control("config")
    assert config["bot_rate"] == 30
    assert config["group_window"] == 60.0
    assert config["limits_enabled"] is True
    changed = await bot.control("config", {"bot_rate": 2, "blocked_chats": [5, 6]})
    assert changed["bot_rate"] == 2
    assert sorted(changed["blocked_chats"]) == [5, 6]
    assert changed["chat_rate"] == 1  # untouched fields stay
    assert bot.sandbox.config.bot_rate == 2
    assert (await bot.send(5)).status == 403


@pytest.mark.parametrize(
    "changes",
    [{"no_such_field": 1}, {"bot_rate": 0}, {"fault_5xx_rate": 0.7, "fault_timeout_rate": 0.7}],
)
async def test_invalid_config_is_refused(bot: BotClient, changes) -> None:
    async with bot.http.post(f"{bot.sandbox.url}/_sandbox/config", json=changes) as response:
        assert response.status == 422
        assert (await response.json())["error"] == "invalid body"
    assert (await bot.control("config"))["bot_rate"] == 30


async def test_in_process_configure(bot: BotClient) -> None:
    bot.sandbox.configure(limits_enabled=False, window_scale=0.5)
    assert bot.sandbox.state.rules.group_window == 30.0
    with pytest.raises(pydantic.ValidationError):
        bot.sandbox.configure(window_scale=-1)


async def test_reset_clears_records_windows_holds_and_updates(start: StartSandbox, http):
    bot = BotClient(http, await start(chat_rate=1, group_rate=1))
    await bot.send(1)
    assert (await bot.send(1)).status == 429
    await bot.control("users/say", {"bot_id": BOT_ID, "chat_id": 1, "user_id": 1, "text": "x"})
    assert await bot.control("reset", {}) == {"ok": True}
    stats = await bot.control("stats")
    assert stats == dict.fromkeys(stats, 0)
    assert (await bot.control("messages"))["messages"] == []
    assert (await bot.control("requests"))["requests"] == []
    assert (await bot.call("getUpdates")).result == []
    sent = await bot.send(1)  # window and hold are gone
    assert sent.status == 200
    assert sent.result["message_id"] == 3  # ids keep counting (the user wrote 2)
    assert (await bot.control("messages"))["messages"][0]["seq"] == 2
    assert (await bot.control("config"))["chat_rate"] == 1


async def test_messages_filters(start: StartSandbox, http) -> None:
    sandbox = await start(limits_enabled=False)
    bot, other = BotClient(http, sandbox), BotClient(http, sandbox, OTHER_TOKEN)
    for chat in (1, 2, 1):
        await bot.send(chat, f"to {chat}")
    await other.send(1, "other bot")
    everything = await bot.control("messages")
    assert everything["count"] == 4
    assert everything["last_seq"] == 4
    first = everything["messages"][0]
    assert set(first) >= {"seq", "ts", "bot_id", "chat_id", "method", "message_id", "text"}
    assert first["params"] == {"chat_id": 1, "text": "to 1"}
    assert first["bot_id"] == BOT_ID
    by_chat = await bot.control(f"messages?chat_id=1&bot_id={BOT_ID}")
    assert [m["seq"] for m in by_chat["messages"]] == [1, 3]
    assert [m["seq"] for m in (await bot.control("messages?since_seq=2"))["messages"]] == [3, 4]
    mine = await bot.control(f"messages?bot_id={OTHER_BOT_ID}&limit=5")
    assert [m["text"] for m in mine["messages"]] == ["other bot"]
    assert [m["seq"] for m in (await bot.control("messages?limit=2"))["messages"]] == [1, 2]


async def test_requests_ring_and_limit(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(request_log_size=3))
    for chat in (-1, -2, -3, -4):
        await bot.send(chat)
    await bot.call("getMe")
    requests = (await bot.control("requests"))["requests"]
    assert [(r["method"], r["chat_id"]) for r in requests] == [
        ("sendMessage", -3),
        ("sendMessage", -4),
        ("getMe", None),
    ]
    assert set(requests[0]) == {"ts", "bot_id", "chat_id", "method", "status", "outcome"}
    assert len((await bot.control("requests?limit=1"))["requests"]) == 1
    assert (await bot.control("stats"))["requests"] == 5


async def test_bad_query_and_body(bot: BotClient) -> None:
    async with bot.http.get(f"{bot.sandbox.url}/_sandbox/messages?chat_id=x") as response:
        assert response.status == 400
    async with bot.http.post(f"{bot.sandbox.url}/_sandbox/config", data=b"[1]") as response:
        assert response.status == 400


async def test_updates_view(bot: BotClient) -> None:
    await bot.control("users/say", {"bot_id": BOT_ID, "chat_id": 3, "user_id": 3, "text": "q"})
    view = await bot.control(f"updates?bot_id={BOT_ID}")
    assert view["bot_id"] == BOT_ID
    assert [u["message"]["text"] for u in view["pending"]] == ["q"]
    assert view["webhook"]["url"] == ""
