"""No head-of-line blocking, and a 429 holding its bot on every replica."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter

import aiohttp
import pytest
import redis.asyncio as redis

from floodgate.demo import demo_token
from floodgate.observe import Received
from shared.keys import Keys
from tests.e2e.scenario import submit_bodies, wait_drained
from tests.helpers import AUTH, eventually
from tests.procs import Proc, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

BOT = 701


def _env(sandbox: Proc, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": demo_token(BOT),
        "FLOODGATE_NAMESPACE": f"fair{secrets.token_hex(4)}",
        **extra,
    }


async def _start(procs: list[Proc]) -> None:
    for proc in procs:
        await proc.wait_healthy()


async def test_flooded_group_delays_no_other_chat(redis_url: str) -> None:
    """300 messages queued for one group (20 a minute) before 60 for private chats: every
    private message goes out before the group's window lets its 21st message go, not behind
    the group."""
    sandbox = floodgate("sandbox", ["sandbox", "--window-scale", "0.2"], {})
    env = _env(sandbox, redis_url, FLOODGATE_WINDOW_SCALE="0.2", FLOODGATE_LIMIT_MARGIN="0.03")
    procs = [
        floodgate("ingest", ["run", "ingest"], env),
        floodgate("scheduler", ["run", "scheduler"], env),
        floodgate("sender", ["run", "sender"], env),
        floodgate("stats", ["run", "stats"], env),
    ]
    group = [{"bot_id": BOT, "chat_id": -1001, "text": f"flood-{i}"} for i in range(300)]
    private = [{"bot_id": BOT, "chat_id": 5000 + i, "text": f"private-{i}"} for i in range(60)]
    try:
        await sandbox.wait_healthy()
        await _start(procs)
        async with aiohttp.ClientSession(headers=AUTH) as session:
            await submit_bodies(session, procs[0].url, group)
            await submit_bodies(session, procs[0].url, private)
            # the 60 private messages and the group's first two windows' worth begun: 81
            received, _ = await wait_drained(
                session, procs[3].url, sandbox.url, 81, 60, expect_queued=300 - 21
            )
        privates = [m.ts for m in received.messages if m.text.startswith("private")]
        flood = sorted(m.ts for m in received.messages if m.text.startswith("flood"))
        assert len(privates) == 60
        assert 21 <= len(flood) <= 40
        # the group's second window (12 s at this scale) opens after every private message
        assert max(privates) < flood[20], "a private message waited behind the group"
    finally:
        for proc in [*procs, sandbox]:
            proc.terminate()


async def test_429_holds_the_bot_on_every_replica(
    redis_url: str, namespace: str, keys: Keys, redis_client: redis.Redis
) -> None:
    """floodgate believes the bot may send 1000 a second; the sandbox allows 5 per second. After
    the first 429 with retry_after N, no replica sends anything of that bot for N seconds:
    neither a message that got the 429 nor one accepted while the hold is on.

    Requests already under way when the 429 came (the whole first burst) arrive during the
    hold however slow the machine is; they are told apart by what they carry, not by how soon
    after the 429 they arrive."""
    sandbox = floodgate("sandbox", ["sandbox", "--bot-rate", "5"], {})
    env = _env(
        sandbox,
        redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOT_RATE="1000",
        FLOODGATE_CHAT_RATE="1000",
        FLOODGATE_LIMIT_MARGIN="0",
    )
    procs = [
        floodgate("ingest", ["run", "ingest"], env),
        floodgate("scheduler", ["run", "scheduler"], env),
        floodgate("sender-a", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": "a"}),
        floodgate("sender-b", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": "b"}),
        floodgate("stats", ["run", "stats"], env),
    ]
    burst = [{"bot_id": BOT, "chat_id": 6000 + i, "text": f"m{i}"} for i in range(40)]
    try:
        await sandbox.wait_healthy()
        await _start(procs)
        async with aiohttp.ClientSession(headers=AUTH) as session:
            await submit_bodies(session, procs[0].url, burst)
            later, hold_ends = await _accepted_while_held(session, procs[0].url, redis_client, keys)
            total = len(burst) + 20 * ((later - 7000) // 100 + 1)
            await wait_drained(session, procs[4].url, sandbox.url, total, 60)
            async with session.get(
                f"{sandbox.url}/_sandbox/requests", params={"limit": "10000"}
            ) as resp:
                log = (await resp.json())["requests"]
            metrics = ""
            for proc in procs[2:4]:
                async with session.get(f"{proc.url}/metrics") as resp:
                    metrics += await resp.text()
        first = next(r for r in log if r["status"] == 429)
        # retry_after is 1 for a per-second limit: a message is never asked for twice within it
        in_hold = Counter(r["chat_id"] for r in log if first["ts"] <= r["ts"] < first["ts"] + 1)
        assert [c for c, n in in_hold.items() if n > 1] == [], "sent again within the hold"
        early = [r for r in log if later <= r["chat_id"] < later + 20 and r["ts"] < hold_ends]
        refused = [round(r["ts"], 3) for r in log if r["status"] == 429][:10]
        assert early == [], (
            f"{len(early)} sent while the bot was held (until {hold_ends:.3f}), e.g. {early[:3]};"
            f" 429s at {refused}"
        )
        # the series exists at 0 from the start: the hold must have counted
        holds = re.findall(r'^floodgate_limiter_holds_total\{scope="bot"\} (\S+)$', metrics, re.M)
        assert sum(float(v) for v in holds) >= 1, holds
        assert "floodgate_bot_rate_factor" in metrics
    finally:
        for proc in [*procs, sandbox]:
            proc.terminate()


async def _accepted_while_held(
    session: aiohttp.ClientSession, ingest_url: str, client: redis.Redis, keys: Keys
) -> tuple[int, float]:
    """Once a sender has put the bot on hold, submit 20 messages (chats from 7000) and return
    when the hold ends as it stands once they are accepted. The round counts only if the hold
    read before submitting had not ended when the 20 were accepted: then the bot was held
    throughout (a 429 coming back from the burst only lengthens a hold), and nothing of the 20
    may reach Telegram before the end read afterwards. Had it ended (a loaded machine), some of
    the 20 may rightly have gone out in the gap before a new 429 started another hold: 20 more
    (chats from 7100, 7200) once the bot is held again. The first chat of the 20 accepted
    while held, and when that hold ends."""
    for first_chat in (7000, 7100, 7200):
        await eventually(lambda: _held(client, keys), 30, step=0.01)
        _, held_until = await _hold_window(client, keys)
        later = [
            {"bot_id": BOT, "chat_id": first_chat + i, "text": f"late{first_chat + i}"}
            for i in range(20)
        ]
        await submit_bodies(session, ingest_url, later)
        now, hold_ends = await _hold_window(client, keys)
        if held_until and now < held_until and hold_ends:
            return first_chat, hold_ends
    raise AssertionError("no hold outlasted the acceptance of 20 messages, three times")


async def _held(client: redis.Redis, keys: Keys) -> bool:
    """Whether a sender has put the bot on hold in Redis."""
    return bool(await client.pttl(keys.bot_hold(BOT)) > 0)


async def _hold_window(client: redis.Redis, keys: Keys) -> tuple[float, float]:
    """Now and when the bot's hold ends, both on Redis's clock (the host clock the sandbox
    stamps requests with); the end is 0 if the bot is not held. The clock is read before the
    time left, so the end is never later than the true one: a round is never accepted on a
    hold that had in fact ended, and nothing sent after the true end is called early."""
    seconds, micros = await client.time()
    left_ms = await client.pttl(keys.bot_hold(BOT))
    now = seconds + micros / 1e6
    if left_ms <= 0:
        return now, 0.0
    return now, now + (left_ms - 1) / 1000


async def test_high_priority_overtakes_a_backlog(redis_url: str) -> None:
    """Behind 2,000 queued normal messages of one bot (a minute of its rate), a high message
    goes out before most of the backlog, not behind it."""
    sandbox = floodgate("sandbox", ["sandbox"], {})
    env = _env(sandbox, redis_url)
    procs = [
        floodgate("ingest", ["run", "ingest"], env),
        floodgate("scheduler", ["run", "scheduler"], env),
        floodgate("sender", ["run", "sender"], env),
    ]
    backlog = [{"bot_id": BOT, "chat_id": 20_000 + i, "text": f"bulk-{i}"} for i in range(2000)]
    try:
        await sandbox.wait_healthy()
        await _start(procs)
        async with aiohttp.ClientSession(headers=AUTH) as session:
            await submit_bodies(session, procs[0].url, backlog[:1000])
            await submit_bodies(session, procs[0].url, backlog[1000:])
            received = Received()

            async def busy() -> bool:  # the sender is busy with the backlog at 30 a second
                await received.refresh(session, sandbox.url)
                return len(received.messages) >= 60

            await eventually(busy, timeout=60)
            # two windows' worth of normal messages queued just before the high one
            fresh = [
                {"bot_id": BOT, "chat_id": 30_000 + i, "text": f"fresh-{i}"} for i in range(60)
            ]
            await submit_bodies(session, procs[0].url, fresh)
            await submit_bodies(
                session,
                procs[0].url,
                [{"bot_id": BOT, "chat_id": 1, "text": "urgent", "priority": "high"}],
            )
            deadline = time.monotonic() + 30
            urgent = []
            while not urgent and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                async with session.get(
                    f"{sandbox.url}/_sandbox/messages", params={"chat_id": "1"}
                ) as resp:
                    urgent = (await resp.json())["messages"]
            await received.refresh(session, sandbox.url)
            async with session.get(f"{sandbox.url}/_sandbox/stats") as resp:
                stats = await resp.json()
        assert urgent, "the high message was not delivered"
        before = [m for m in received.messages if m.seq < urgent[0]["seq"]]
        # at 30 a second the backlog lasts over a minute: the high message goes out while
        # most of it still waits (what it waited is printed by bench/head_of_line.py)
        assert len(before) < 1000, f"{len(before)} of the backlog went before the high message"
        # and ahead of the normal messages queued just before it, but for those that may have
        # had their tokens already (one window's worth)
        overtaken = [m for m in before if m.text.startswith("fresh")]
        assert len(overtaken) < 30, f"{len(overtaken)} of 60 normal messages went first"
        assert stats["429"] == 0
    finally:
        for proc in [*procs, sandbox]:
            proc.terminate()
