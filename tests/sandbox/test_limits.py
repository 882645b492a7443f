"""Limits over HTTP: Telegram's 429, holds, exact windows, quota kept by refusals."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest

from tests.sandbox.conftest import BotClient, StartSandbox


def assert_429(answer, retry_after: int) -> None:
    assert answer.status == 429
    assert answer.content_type == "application/json"
    assert answer.body == {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after}",
        "parameters": {"retry_after": retry_after},
    }


async def test_429_shape_rounds_up_and_holds(start: StartSandbox, http) -> None:
    # Group window 0.3 s: the wait is under a second, so retry_after rounds up to 1.
    bot = BotClient(http, await start(group_rate=1, window_scale=0.005))
    assert (await bot.send(-100)).status == 200
    assert_429(await bot.send(-100), 1)
    # the window is free again and the hold (1 s) still on, with 0.65 s to spare
    await asyncio.sleep(0.35)
    assert_429(await bot.send(-100), 1)
    stats = bot.sandbox.state.stats
    assert (stats.too_many_requests, stats.sent_during_hold) == (2, 1)
    await asyncio.sleep(0.7)
    assert (await bot.send(-100)).status == 200
    assert stats.delivered == 2


async def test_retry_after_counts_whole_seconds_of_a_long_window(start, http) -> None:
    bot = BotClient(http, await start(group_rate=2, window_scale=0.05))  # 3 s window
    for _ in range(2):
        assert (await bot.send(-1)).status == 200
    assert_429(await bot.send(-1), 3)
    await asyncio.sleep(0.3)
    assert_429(await bot.send(-1), 3)  # 2.7 s of hold left, rounded up
    assert (await bot.send(-2)).status == 200  # another group is not held


async def test_hold_is_scoped_to_the_bot_or_the_chat(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(bot_rate=3, chat_rate=1, window_scale=0.1))
    assert (await bot.send(1)).status == 200
    assert (await bot.send(1)).status == 429  # chat 1 held, bot not
    assert (await bot.send(2)).status == 200
    assert (await bot.send(3)).status == 200
    assert (await bot.send(4)).status == 429  # bot window full: bot held
    assert (await bot.send(5)).status == 429
    assert bot.sandbox.state.stats.sent_during_hold == 1


@pytest.mark.parametrize(
    ("changes", "chats", "rate"),
    [
        ({"bot_rate": 5}, range(1, 40), 5),
        ({"chat_rate": 3}, [7] * 40, 3),
        ({"group_rate": 4}, [-7] * 40, 4),
    ],
)
async def test_each_limit_is_reachable_in_one_burst(start, http, changes, chats, rate):
    bot = BotClient(http, await start(**changes))
    answers = await asyncio.gather(*(bot.send(chat) for chat in chats))
    statuses = [a.status for a in answers]
    assert statuses.count(200) == rate
    assert statuses.count(429) == len(statuses) - rate
    stats = bot.sandbox.state.stats
    # One refusal by the window, the rest during the hold it started.
    assert stats.sent_during_hold == len(statuses) - rate - 1


async def test_bot_rate_override(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(bot_rate=2, bot_rate_overrides={"123456": 6}))
    answers = await asyncio.gather(*(bot.send(chat) for chat in range(1, 11)))
    assert [a.status for a in answers].count(200) == 6


def _max_in_window(stamps: list[float], window: float) -> int:
    most, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window - 1e-9:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.timeout(30)
async def test_windows_are_exact_under_concurrent_load(start: StartSandbox, http) -> None:
    """Senders that ignore retry_after hammer a few chats; the log must obey every window."""
    sandbox = await start(bot_rate=6, chat_rate=2, group_rate=3, window_scale=0.25)
    bot = BotClient(http, sandbox)
    chats = [1, 2, 3, 4, -10, -20]
    rng = random.Random(3)
    deadline = asyncio.get_running_loop().time() + 2.5

    async def sender() -> None:
        while asyncio.get_running_loop().time() < deadline:
            await bot.send(rng.choice(chats))
            await asyncio.sleep(rng.uniform(0.0, 0.01))

    await asyncio.gather(*(sender() for _ in range(6)))
    records = sandbox.state.messages.select()
    by_scope: dict[object, list[float]] = defaultdict(list)
    for record in records:
        by_scope["bot"].append(record.mono)
        by_scope[record.chat_id].append(record.mono)
    rules = sandbox.state.rules
    assert _max_in_window(by_scope["bot"], rules.bot_window) <= rules.bot_rate
    for chat in chats:
        rate, window = rules.for_chat(chat)
        assert _max_in_window(by_scope[chat], window) <= rate
    # The same check on the wall-clock stamps the control API shows.
    shown = await bot.control("messages?chat_id=1")
    stamps = [m["ts"] for m in shown["messages"]]
    assert _max_in_window(stamps, rules.chat_window - 1e-6) <= rules.chat_rate
    assert sandbox.state.stats.limit_violations == 0
    # The bot's limit was reached, and sending resumed once holds were over.
    assert _max_in_window(by_scope["bot"], rules.bot_window) == rules.bot_rate
    assert by_scope["bot"][-1] - by_scope["bot"][0] > 1.0


async def test_refused_requests_do_not_consume_quota(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(chat_rate=1, window_scale=0.1, missing_chats=[9]))
    await bot.control("config", {"fault_5xx_rate": 1.0})
    assert (await bot.send(5)).status in {500, 502, 503, 504}
    await bot.control("config", {"fault_5xx_rate": 0.0})
    assert (await bot.send(5, "")).status == 400
    assert (await bot.send(5)).status == 200  # neither the 5xx nor the 400 counted
    for _ in range(5):
        assert (await bot.send(5)).status == 429
    await asyncio.sleep(1.05)  # the hold (1 s) is over; the 429s left no trace
    assert (await bot.send(5)).status == 200
    assert [r.chat_id for r in bot.sandbox.state.messages.select()] == [5, 5]


async def test_limits_off_let_everything_through_and_count_violations(start, http) -> None:
    bot = BotClient(http, await start(limits_enabled=False))
    answers = await asyncio.gather(*(bot.send(-1) for _ in range(30)))
    assert all(a.status == 200 for a in answers)
    stats = await bot.control("stats")
    assert stats["delivered"] == 30
    assert stats["429"] == 0
    assert stats["limit_violations"] == 10  # the 21st..30th broke the group window


async def test_only_sends_count(start: StartSandbox, http) -> None:
    bot = BotClient(http, await start(chat_rate=1))
    sent = (await bot.send(1)).result
    ref = {"chat_id": 1, "message_id": sent["message_id"]}
    assert (await bot.call("sendChatAction", chat_id=1, action="typing")).status == 200
    assert (await bot.call("editMessageText", text="edited", **ref)).status == 200
    assert (await bot.call("deleteMessage", **ref)).status == 200
    assert (await bot.send(1)).status == 429
