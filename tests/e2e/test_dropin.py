"""The drop-in Bot API endpoint with real clients: python-telegram-bot pointed at floodgate,
which sends to the sandbox at Telegram's limits, every part a real process over Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
import yarl
from aiogram import Bot as AiogramBot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramUnauthorizedError
from telegram import Message
from telegram.error import BadRequest, InvalidToken, TimedOut

from floodgate.demo import demo_token
from floodgate.observe import Received, sandbox_stats
from tests.conftest import REDIS_URL
from tests.e2e.ptb_bot import bot_for
from tests.helpers import AUTH, eventually
from tests.procs import Proc, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BOT = 601
TOKEN = demo_token(BOT)
MISSING_CHAT = 999_001
SHORT_WAIT = 2  # FLOODGATE_PROXY_WAIT of the second ingest, for the 502 and the retries


@dataclass
class Stack:
    sandbox: Proc
    ingest: Proc  # FLOODGATE_PROXY_WAIT=60
    short: Proc  # FLOODGATE_PROXY_WAIT=2, same pipeline
    procs: list[Proc]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    sandbox = floodgate("sandbox", ["sandbox", "--missing-chats", str(MISSING_CHAT)], {})
    env = {
        "REDIS_URL": REDIS_URL,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": TOKEN,
        "FLOODGATE_NAMESPACE": f"dropin{secrets.token_hex(4)}",
        "FLOODGATE_LOG_LEVEL": "DEBUG",
    }
    ingest = floodgate("ingest", ["run", "ingest"], env)
    short = floodgate("ingest-short", ["run", "ingest"], {**env, "FLOODGATE_PROXY_WAIT": "2"})
    procs = [
        ingest,
        short,
        floodgate("scheduler", ["run", "scheduler"], env),
        floodgate("sender", ["run", "sender"], env),
    ]
    try:
        for proc in [sandbox, *procs]:
            asyncio.run(proc.wait_healthy())
        yield Stack(sandbox, ingest, short, procs)
    finally:
        for proc in procs:
            proc.terminate()
        sandbox.terminate()
    for proc in procs[:2]:
        log = proc.log_path.read_text(errors="replace")
        assert TOKEN.split(":", 1)[1] not in log, f"the token's secret is in {proc.name}'s log"


async def _received(sandbox: Proc) -> Received:
    received = Received()
    async with aiohttp.ClientSession() as session:
        await received.refresh(session, sandbox.url)
    return received


def _copies(received: Received, text: str) -> int:
    return sum(1 for m in received.messages if m.text == text)


async def test_send_message_answers_telegrams_message(stack: Stack) -> None:
    text = f"hello {secrets.token_hex(4)}"
    async with bot_for(stack.ingest.url, TOKEN, 90) as bot:
        assert bot.username == "bot601"  # initialize() called getMe, passed through
        message = await bot.send_message(70_001, text)
        assert isinstance(message, Message)
        assert message.text == text
        assert message.chat.id == 70_001
        delivered = [m for m in (await _received(stack.sandbox)).messages if m.text == text]
        assert [m.message_id for m in delivered] == [message.message_id]
        with pytest.raises(BadRequest, match="not found"):
            await bot.send_message(MISSING_CHAT, "nobody there")


async def test_aiogram_through_its_api_server_setting(stack: Stack) -> None:
    def bot(token: str) -> AiogramBot:
        server = TelegramAPIServer.from_base(stack.ingest.url)
        return AiogramBot(token, session=AiohttpSession(api=server, timeout=90))

    text = f"aiogram {secrets.token_hex(4)}"
    aiogram = bot(TOKEN)
    try:
        assert (await aiogram.get_me()).username == "bot601"
        message = await aiogram.send_message(70_010, text, reply_markup=None)
        assert message.text == text
        assert message.chat.id == 70_010
        with pytest.raises(TelegramBadRequest, match="not found"):
            await aiogram.send_message(MISSING_CHAT, "nobody there")
    finally:
        await aiogram.session.close()
    assert _copies(await _received(stack.sandbox), text) == 1
    stranger = bot(f"{BOT}:{'y' * 35}")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.send_message(70_010, "not mine")
    finally:
        await stranger.session.close()


async def test_unknown_token_is_telegrams_401(stack: Stack) -> None:
    wrong = f"{BOT}:{'x' * 35}"
    with pytest.raises(InvalidToken):
        async with bot_for(stack.ingest.url, wrong, 30):
            pass
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.ingest.url}/bot{wrong}/sendMessage", json={"chat_id": 1}) as resp,
    ):
        assert resp.status == 401
        assert await resp.json() == {
            "ok": False,
            "error_code": 401,
            "description": "Unauthorized",
        }


async def _post(session: aiohttp.ClientSession, url: str, text: str, chat: int) -> tuple:
    async with session.post(url, data={"chat_id": str(chat), "text": text}) as resp:
        return resp.status, await resp.json()


async def test_timeout_answers_502_and_the_retry_is_not_sent_twice(stack: Stack) -> None:
    # One private chat takes one message a second: the later ones outlast a 2 s wait.
    chat, tag = 70_002, secrets.token_hex(3)
    url = f"{stack.short.url}/bot{TOKEN}/sendMessage"
    texts = [f"{tag}-{n}" for n in range(6)]
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(_post(session, url, t, chat) for t in texts))
        late = [t for t, (status, _) in zip(texts, answers, strict=True) if status == 502]
        assert late, answers
        for status, doc in answers:
            if status == 502:
                assert doc["ok"] is False
                assert doc["error_code"] == 502
                assert "not delivered within 2 s" in doc["description"]
            else:
                assert status == 200
                assert doc["ok"] is True
        # the client retries each request that timed out: each gets the Message of the first
        for text in late:
            for _ in range(10):
                status, doc = await _post(session, url, text, chat)
                if status == 200:
                    break
            assert doc["result"]["text"] == text
    received = await _received(stack.sandbox)
    assert {t: _copies(received, t) for t in texts} == dict.fromkeys(texts, 1)


async def test_ptb_that_gives_up_and_retries_does_not_send_twice(stack: Stack) -> None:
    chat, tag = 70_003, secrets.token_hex(3)
    ahead = [f"{tag}-ahead-{n}" for n in range(4)]
    text = f"{tag}-retried"
    # four messages queued ahead in the same chat (one a second) keep the next one waiting
    body = {"messages": [{"bot_id": BOT, "chat_id": chat, "text": t} for t in ahead]}
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(f"{stack.ingest.url}/v1/messages/batch", json=body) as resp,
    ):
        assert resp.status == 202
    async with bot_for(stack.ingest.url, TOKEN, 0.5) as impatient:
        with pytest.raises(TimedOut):
            await impatient.send_message(chat, text)
    async with bot_for(stack.ingest.url, TOKEN, 90) as patient:
        message = await patient.send_message(chat, text)
    assert message.text == text
    received = await _received(stack.sandbox)
    assert _copies(received, text) == 1
    # and a request that did get its answer is a new message when sent again
    async with bot_for(stack.ingest.url, TOKEN, 90) as bot:
        again = await bot.send_message(chat, text)
    assert again.message_id != message.message_id
    assert _copies(await _received(stack.sandbox), text) == 2


def _ptb_process(stack: Stack, tag: str, chats: str, per_chat: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.e2e.ptb_bot", "--base", stack.ingest.url]
    argv += ["--token", TOKEN, "--chats", chats, "--per-chat", str(per_chat), "--tag", tag]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def test_two_ptb_processes_keep_the_limits_and_each_chats_order(stack: Stack) -> None:
    first, chats, per_chat = 80_000, 60, 5  # 2 processes x 300 messages, 60 chats
    tags = [f"p1{secrets.token_hex(2)}", f"p2{secrets.token_hex(2)}"]
    async with aiohttp.ClientSession() as session:
        before = await sandbox_stats(session, stack.sandbox.url)
    procs = [_ptb_process(stack, tag, f"{first}:{first + chats}", per_chat) for tag in tags]
    outputs = []
    for proc in procs:
        out, err = await asyncio.to_thread(proc.communicate, timeout=200)
        assert proc.returncode == 0, err.decode()[-2000:]
        outputs.append(json.loads(out))
    for doc in outputs:
        assert doc["errors"] == []
        assert len(doc["messages"]) == chats * per_chat
        assert all(isinstance(m["message_id"], int) for m in doc["messages"])
    async with aiohttp.ClientSession() as session:
        after = await sandbox_stats(session, stack.sandbox.url)
    assert after["429"] == before["429"] == 0
    assert after["limit_violations"] == 0
    received = await _received(stack.sandbox)
    order: dict[tuple[str, int], list[int]] = defaultdict(list)
    for m in sorted(received.messages, key=lambda m: m.seq):
        tag, _, n = m.text.rpartition("-")
        if tag.split("-")[0] in tags:
            order[(tag.split("-")[0], m.chat_id)].append(int(n))
    assert len(order) == 2 * chats
    assert all(seen == list(range(per_chat)) for seen in order.values()), order


async def test_the_ingest_metrics_count_drop_in_answers(stack: Stack) -> None:
    async def counted() -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{stack.ingest.url}/metrics") as resp,
        ):
            text = await resp.text()
        return 'floodgate_botapi_requests_total{handling="queued",outcome="sent"}' in text

    await eventually(counted, 10)


async def test_identical_requests_under_way_together_are_two_messages(stack: Stack) -> None:
    text = f"twice {secrets.token_hex(3)}"
    url = f"{stack.ingest.url}/bot{TOKEN}/sendMessage"
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(_post(session, url, text, 70_004) for _ in range(2)))
    assert [status for status, _ in answers] == [200, 200]
    ids = {doc["result"]["message_id"] for _, doc in answers}
    assert len(ids) == 2
    assert _copies(await _received(stack.sandbox), text) == 2


async def test_stopping_ingest_answers_waiting_requests_502_and_exits(stack: Stack) -> None:
    # an ingest of its own pipeline with no sender: its drop-in requests can only wait
    env = {
        "REDIS_URL": REDIS_URL,
        "TELEGRAM_API_BASE": stack.sandbox.url,
        "FLOODGATE_BOTS": TOKEN,
        "FLOODGATE_NAMESPACE": f"dropin{secrets.token_hex(4)}",
    }
    lonely = floodgate("ingest-lonely", ["run", "ingest"], env)
    try:
        await lonely.wait_healthy()
        async with aiohttp.ClientSession() as session:
            url = f"{lonely.url}/bot{TOKEN}/sendMessage"
            waiting = asyncio.ensure_future(_post(session, url, "never sent", 70_005))

            async def accepted() -> bool:
                async with session.get(f"{lonely.url}/metrics") as resp:
                    text = await resp.text()
                return 'floodgate_messages_accepted_total{priority="normal"} 1.0' in text

            await eventually(accepted, 10)
            lonely.popen.terminate()
            status, doc = await waiting
        assert status == 502
        assert doc["error_code"] == 502
        # one SIGTERM, and a clean exit once the drain is over (a second signal while it drains
        # would end it by its default action, which is not what is tested here)
        assert await asyncio.to_thread(lonely.popen.wait, 30) == 0
    finally:
        lonely.terminate()


async def test_the_sandbox_behind_is_out_of_reach_and_the_session_is_kept(stack: Stack) -> None:
    base = f"{stack.ingest.url}/file/bot{TOKEN}"
    async with aiohttp.ClientSession() as session:
        for path in ("%252e%252e/%252e%252e/_sandbox/messages", "a.jpg%253F", "%2e%2e/x"):
            url = yarl.URL(f"{base}/{path}", encoded=True)
            async with session.get(url) as resp:
                assert resp.status == 404, path
                doc = await resp.json()
            assert doc == {"ok": False, "error_code": 404, "description": "Not Found"}
        for method in ("logOut", "close"):
            async with session.post(f"{stack.ingest.url}/bot{TOKEN}/{method}") as resp:
                assert resp.status == 403
                assert (await resp.json())["error_code"] == 403
    async with bot_for(stack.ingest.url, TOKEN, 30) as bot:
        assert bot.username == "bot601"  # the session still works


async def test_a_webhook_pointing_at_floodgate_is_not_moved_or_deleted(stack: Stack) -> None:
    """`floodgate webhook set` points a bot's webhook at floodgate with a secret derived from the
    token, so no setting tells ingest it takes the bot's updates: it asks getWebhookInfo."""
    direct = f"{stack.sandbox.url}/bot{TOKEN}"
    dropin = f"{stack.ingest.url}/bot{TOKEN}"
    ours = f"{stack.ingest.url}/webhook/telegram/{BOT}"
    async with aiohttp.ClientSession() as session:

        async def webhook() -> str:
            async with session.get(f"{direct}/getWebhookInfo") as resp:
                return str((await resp.json())["result"]["url"])

        try:
            async with session.post(f"{direct}/setWebhook", data={"url": ours}) as resp:
                assert resp.status == 200
            for method, params in (
                ("deleteWebhook", {}),
                ("setWebhook", {"url": "https://x.test/h"}),
            ):
                async with session.post(f"{dropin}/{method}", data=params) as resp:
                    assert resp.status == 409, await resp.text()
                    assert "delivers its updates to floodgate" in (await resp.json())["description"]
            assert await webhook() == ours
            # a webhook elsewhere is the bot's own business: passed through
            elsewhere = "https://elsewhere.test/hook"
            async with session.post(f"{direct}/setWebhook", data={"url": elsewhere}) as resp:
                assert resp.status == 200
            async with session.post(f"{dropin}/deleteWebhook") as resp:
                assert resp.status == 200, await resp.text()
            assert await webhook() == ""
        finally:
            async with session.post(f"{direct}/deleteWebhook") as resp:
                assert resp.status == 200
