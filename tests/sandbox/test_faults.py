"""Injected faults: reproducible from the seed, shaped like the real failures."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.sandbox.conftest import BotClient, StartSandbox

MIXED = {
    "limits_enabled": False,
    "fault_5xx_rate": 0.2,
    "fault_5xx_after_send_rate": 0.2,
    "fault_timeout_rate": 0.1,
    "timeout_seconds": 0.01,
}


async def outcomes(bot: BotClient, count: int = 60) -> list[int]:
    return [(await bot.send(-1, f"m{i}")).status for i in range(count)]


async def test_same_seed_same_faults(start: StartSandbox, http) -> None:
    first = BotClient(http, await start(seed=11, **MIXED))
    second = BotClient(http, await start(seed=11, **MIXED))
    other = BotClient(http, await start(seed=12, **MIXED))
    run = await outcomes(first)
    assert run == await outcomes(second)
    assert run != await outcomes(other)
    assert {200, 502, 504} <= set(run)
    await first.control("reset", {})
    assert await outcomes(first) == run  # a reset restarts the sequence


async def test_new_seed_by_config_restarts_the_sequence(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(seed=5, **MIXED))
    run = await outcomes(bot, 30)
    await bot.control("config", {"seed": 6})
    await bot.control("config", {"seed": 5})
    assert await outcomes(bot, 30) == run


async def test_5xx_is_an_html_page_and_not_delivered(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(fault_5xx_rate=1.0, limits_enabled=False))
    answers = [await bot.send(-1) for _ in range(20)]
    assert {a.status for a in answers} <= {500, 502, 503, 504}
    for answer in answers:
        assert answer.content_type == "text/html"
        page = answer.raw.decode()
        assert page.startswith("<html>")
        assert f"<title>{answer.status} " in page
    assert any(a.status == 502 and b"502 Bad Gateway" in a.raw for a in answers)
    stats = await bot.control("stats")
    assert (stats["5xx"], stats["delivered"]) == (20, 0)
    assert (await bot.control("messages"))["messages"] == []


async def test_5xx_after_send_delivers_then_answers_502(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(fault_5xx_after_send_rate=1.0))
    answer = await bot.send(-1, "dup?")
    assert answer.status == 502
    assert answer.content_type == "text/html"
    assert b"502 Bad Gateway" in answer.raw
    [message] = (await bot.control("messages"))["messages"]
    assert (message["text"], message["outcome"]) == ("dup?", "5xx_after_send")
    stats = await bot.control("stats")
    assert (stats["5xx_after_send"], stats["delivered"]) == (1, 1)
    requests = (await bot.control("requests"))["requests"]
    assert requests[-1]["outcome"] == "5xx_after_send"


async def test_timeout_hangs_and_does_not_deliver(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(fault_timeout_rate=1.0, timeout_seconds=0.3))
    began = time.monotonic()
    answer = await bot.send(-1)
    assert time.monotonic() - began >= 0.29
    assert answer.status == 504
    stats = await bot.control("stats")
    assert (stats["timeouts"], stats["delivered"]) == (1, 0)


@pytest.mark.timeout(10)
async def test_close_releases_a_hanging_request(start: StartSandbox, http, monkeypatch) -> None:
    sandbox = await start(fault_timeout_rate=1.0, timeout_seconds=60)
    hanging = asyncio.Event()
    pause = type(sandbox.state).pause

    async def noted(state: Any, seconds: float) -> None:
        hanging.set()
        await pause(state, seconds)

    monkeypatch.setattr(type(sandbox.state), "pause", noted)
    pending = asyncio.ensure_future(BotClient(http, sandbox).send(-1))
    await asyncio.wait_for(hanging.wait(), 5)  # the request hangs in the sandbox
    await sandbox.close()
    assert (await pending).status == 504, "released at once, not after its 60 s"


async def test_latency_delays_every_answer(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(latency_min_ms=40, latency_max_ms=60))
    began = time.monotonic()
    await bot.call("getMe")
    await bot.send(1)
    assert time.monotonic() - began >= 0.08


async def test_blocked_missing_and_migrated_chats(start: StartSandbox, http) -> None:
    bot = BotClient(
        http,
        await start(blocked_chats=[7], missing_chats=[-8], migrated_chats={"-9": -1009}),
    )
    blocked = await bot.send(7)
    assert blocked.status == 403
    assert blocked.body == {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    missing = await bot.send(-8)
    assert missing.status == 400
    assert missing.body["description"] == "Bad Request: chat not found"
    migrated = await bot.send(-9)
    assert migrated.status == 400
    assert migrated.body == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": -1009},
    }
    assert (await bot.send(-1009)).status == 200
    outcomes_seen = [r["outcome"] for r in (await bot.control("requests"))["requests"]]
    assert outcomes_seen == ["blocked", "missing", "migrated", "ok"]
    assert (await bot.control("stats"))["4xx"] == 3


async def test_faults_spare_other_methods(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(fault_5xx_rate=1.0, blocked_chats=[7]))
    assert (await bot.call("getMe")).status == 200
    assert (await bot.call("sendChatAction", chat_id=7, action="typing")).status == 200
