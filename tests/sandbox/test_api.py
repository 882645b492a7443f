"""The Bot API surface: answer shapes, parameters, authentication."""

from __future__ import annotations

import aiohttp
import pytest

from tests.sandbox.conftest import BOT_ID, TOKEN, BotClient, StartSandbox


async def test_get_me_is_the_bot(bot: BotClient) -> None:
    answer = await bot.call("getMe")
    assert answer.status == 200
    assert answer.content_type == "application/json"
    me = answer.result
    assert me["id"] == BOT_ID
    assert me["is_bot"] is True
    assert me["username"] == f"bot{BOT_ID}"


async def test_send_message_answers_a_message(bot: BotClient) -> None:
    first = (await bot.send(42, "hi")).result
    assert first["message_id"] == 1
    assert first["text"] == "hi"
    assert first["from"]["id"] == BOT_ID
    assert first["from"]["is_bot"] is True
    assert first["chat"]["id"] == 42
    assert first["chat"]["type"] == "private"
    assert isinstance(first["date"], int)
    assert "reply_to_message" not in first


@pytest.mark.parametrize(
    ("chat_id", "chat_type"),
    [(42, "private"), (-4242, "group"), (-1001234567890, "supergroup")],
)
async def test_chat_type_follows_the_id(bot: BotClient, chat_id: int, chat_type: str) -> None:
    chat = (await bot.send(chat_id)).result["chat"]
    assert chat["type"] == chat_type
    if chat_type != "private":
        assert chat["title"]


async def test_message_ids_count_per_chat(start: StartSandbox, http: aiohttp.ClientSession):
    bot = BotClient(http, await start(limits_enabled=False))
    ids = [(await bot.send(chat)).result["message_id"] for chat in (-1, -1, -2, -1)]
    assert ids == [1, 2, 1, 3]


async def test_reply_carries_the_replied_message(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(limits_enabled=False))
    original = (await bot.send(-5, "question")).result
    reply = (await bot.send(-5, "answer", reply_to_message_id=original["message_id"])).result
    assert reply["reply_to_message"]["message_id"] == original["message_id"]
    assert reply["reply_to_message"]["text"] == "question"
    unknown = (await bot.send(-5, "x", reply_to_message_id=999)).result
    assert unknown["reply_to_message"] == {"message_id": 999, "chat": unknown["chat"], "date": 0}


async def test_strict_refs_refuse_unknown_messages(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(strict_message_refs=True))
    answer = await bot.send(-5, "x", reply_to_message_id=999)
    assert answer.status == 400
    assert answer.body["description"] == "Bad Request: message to be replied not found"
    copy = await bot.call("copyMessage", chat_id=-5, from_chat_id=-6, message_id=1)
    assert copy.body["description"] == "Bad Request: message to copy not found"


@pytest.mark.parametrize(
    ("text", "description"),
    [
        ("", "Bad Request: message text is empty"),
        ("   ", "Bad Request: message text is empty"),
        ("x" * 4097, "Bad Request: message is too long"),
    ],
)
async def test_text_length_is_checked(bot: BotClient, text: str, description: str) -> None:
    answer = await bot.send(42, text)
    assert answer.status == 400
    assert answer.body == {"ok": False, "error_code": 400, "description": description}


async def test_text_of_4096_characters_and_html_markup_fits(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(limits_enabled=False))
    assert (await bot.send(42, "é" * 4096)).status == 200
    markup = "<b>" + "x" * 4096 + "</b>"
    assert (await bot.send(42, markup, parse_mode="HTML")).status == 200
    assert (await bot.send(42, markup)).status == 400


async def test_missing_chat_id(bot: BotClient) -> None:
    answer = await bot.call("sendMessage", text="hi")
    assert answer.status == 400
    assert answer.body["description"] == "Bad Request: chat_id is empty"


async def test_copy_and_forward(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(limits_enabled=False))
    source = (await bot.send(-7, "original")).result
    ref = {"from_chat_id": -7, "message_id": source["message_id"]}
    copied = (await bot.call("copyMessage", chat_id=-8, **ref)).result
    assert copied == {"message_id": 1}
    forwarded = (await bot.call("forwardMessage", chat_id=-9, **ref)).result
    assert forwarded["text"] == "original"
    assert forwarded["chat"]["id"] == -9
    assert forwarded["forward_origin"]["type"] == "user"
    log = bot.sandbox.state.messages.select()
    assert [(r.method, r.chat_id, r.text) for r in log] == [
        ("sendMessage", -7, "original"),
        ("copyMessage", -8, "original"),
        ("forwardMessage", -9, "original"),
    ]


async def test_edit_and_delete(bot: BotClient) -> None:
    sent = (await bot.send(-3, "before")).result
    ref = {"chat_id": -3, "message_id": sent["message_id"]}
    edited = (await bot.call("editMessageText", text="after", **ref)).result
    assert edited["text"] == "after"
    assert edited["message_id"] == sent["message_id"]
    assert "edit_date" in edited
    same = await bot.call("editMessageText", text="after", **ref)
    assert same.status == 400
    assert same.body["description"].startswith("Bad Request: message is not modified")
    assert (await bot.call("deleteMessage", **ref)).result is True


async def test_chat_action(bot: BotClient) -> None:
    assert (await bot.call("sendChatAction", chat_id=42, action="typing")).result is True
    wrong = await bot.call("sendChatAction", chat_id=42, action="dancing")
    assert wrong.status == 400


async def test_send_photo_by_url_and_file_id(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(limits_enabled=False))
    by_url = (
        await bot.call("sendPhoto", chat_id=-1, photo="https://example.org/a.png", caption="c")
    ).result
    assert by_url["caption"] == "c"
    sizes = by_url["photo"]
    assert len(sizes) >= 2
    assert all({"file_id", "file_unique_id", "width", "height"} <= set(s) for s in sizes)
    file_id = sizes[-1]["file_id"]
    again = (await bot.call("sendPhoto", chat_id=-1, photo=file_id)).result
    assert again["photo"][0]["file_id"].startswith(file_id)
    missing = await bot.call("sendPhoto", chat_id=-1)
    assert missing.status == 400


async def test_multipart_upload(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(limits_enabled=False))
    form = aiohttp.FormData()
    form.add_field("chat_id", "-1")
    form.add_field("caption", "uploaded")
    form.add_field("photo", b"\x89PNG fake bytes", filename="cat.png", content_type="image/png")
    async with http.post(bot.url("sendPhoto"), data=form) as response:
        body = await response.json()
    assert body["ok"] is True
    assert body["result"]["caption"] == "uploaded"
    record = bot.sandbox.state.messages.select()[-1]
    assert record.params["photo"].filename == "cat.png"
    stored = await bot.control("messages")
    assert stored["messages"][-1]["params"]["photo"]["size"] == 15


async def test_urlencoded_form_get_query_and_merge(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(limits_enabled=False))
    async with http.post(bot.url("sendMessage"), data={"chat_id": "-2", "text": "form"}) as r:
        assert (await r.json())["result"]["text"] == "form"
    async with http.get(bot.url("sendMessage"), params={"chat_id": "-2", "text": "get"}) as r:
        assert (await r.json())["result"]["text"] == "get"
    # Query and body merge; the body wins where both give a value.
    url = bot.url("sendMessage") + "?chat_id=-2&text=query"
    async with http.post(url, json={"text": "body"}) as r:
        assert (await r.json())["result"]["text"] == "body"
    reply_markup = '{"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}'
    data = {"chat_id": "-2", "text": "kb", "reply_markup": reply_markup}
    async with http.post(bot.url("sendMessage"), data=data) as r:
        result = (await r.json())["result"]
    assert result["reply_markup"]["inline_keyboard"][0][0]["text"] == "a"
    texts = [m.text for m in bot.sandbox.state.messages.select(chat_id=-2)]
    assert texts == ["form", "get", "body", "kb"]


async def test_invalid_json_body(bot: BotClient) -> None:
    headers = {"Content-Type": "application/json"}
    async with bot.http.post(bot.url("sendMessage"), data=b"{nope", headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["ok"] is False


@pytest.mark.parametrize(
    "token", ["123:short", "abc:AAAAAAAAAAAAAAAAAAAAAAAA", "123AAAAAAAAAAAAAAAAAAAAAAAAA"]
)
async def test_malformed_token_is_unauthorized(bot: BotClient, token: str) -> None:
    bot.token = token
    answer = await bot.call("getMe")
    assert answer.status == 401
    assert answer.body == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_revoked_tokens_and_bots(start: StartSandbox, http) -> None:
    other = "555:CCCCCCCCCCCCCCCCCCCCCCCC"
    sandbox = await start(revoked_tokens=[TOKEN], revoked_bot_ids=[555])
    for token in (TOKEN, other):
        assert (await BotClient(http, sandbox, token).call("getMe")).status == 401
    fine = BotClient(http, sandbox, "556:CCCCCCCCCCCCCCCCCCCCCCCC")
    assert (await fine.call("getMe")).status == 200


async def test_unknown_method_and_case_insensitive_names(bot: BotClient) -> None:
    unknown = await bot.call("sendTelepathy", chat_id=1)
    assert unknown.status == 404
    assert unknown.body == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert (await bot.call("GETME")).result["id"] == BOT_ID


async def test_other_media_sends(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(limits_enabled=False))
    document = (await bot.call("sendDocument", chat_id=-1, document="https://x.org/a.pdf")).result
    assert document["document"]["file_id"].startswith("sandbox-document-")
    video = (await bot.call("sendVideo", chat_id=-1, video="known-file-id")).result
    assert video["video"]["file_id"] == "known-file-id"
    assert [r.method for r in bot.sandbox.state.messages.select()] == ["sendDocument", "sendVideo"]
