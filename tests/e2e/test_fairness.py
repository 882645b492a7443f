"""No head-of-line blocking, and a 429 holding its bot on every replica."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import aiohttp
import pytest

from floodgate.demo import demo_token
from floodgate.observe import Received
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


async def test_429_holds_the_bot_on_every_replica(redis_url: str) -> None:
    """floodgate believes the bot may send 1000 a second; the sandbox allows 5 per second. After
    the first 429 with retry_after N, no replica sends anything of that bot for N seconds."""
    sandbox = floodgate("sandbox", ["sandbox", "--bot-rate", "5"], {})
    env = _env(
        sandbox,
        redis_url,
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
    msgs = [{"bot_id": BOT, "chat_id": 6000 + i, "text": f"m{i}"} for i in range(40)]
    try:
        await sandbox.wait_healthy()
        await _start(procs)
        async with aiohttp.ClientSession(headers=AUTH) as session:
            await submit_bodies(session, procs[0].url, msgs)
            await wait_drained(session, procs[4].url, sandbox.url, 40, 60)
            async with session.get(
                f"{sandbox.url}/_sandbox/requests", params={"limit": "10000"}
            ) as resp:
                log = (await resp.json())["requests"]
            metrics = ""
            for proc in procs[2:4]:
                async with session.get(f"{proc.url}/metrics") as resp:
                    metrics += await resp.text()
        first = next(r for r in log if r["status"] == 429)
        hold_ends = first["ts"] + 1.0  # retry_after 1 for a per-second limit
        inflight_slack = 0.05
        during = [r for r in log if first["ts"] + inflight_slack < r["ts"] < hold_ends]
        assert during == [], f"{len(during)} requests inside the hold, e.g. {during[:3]}"
        # the series exists at 0 from the start: the hold must have counted
        holds = re.findall(r'^floodgate_limiter_holds_total\{scope="bot"\} (\S+)$', metrics, re.M)
        assert sum(float(v) for v in holds) >= 1, holds
        assert "floodgate_bot_rate_factor" in metrics
    finally:
        for proc in [*procs, sandbox]:
            proc.terminate()


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
        assert all(m.text.startswith("bulk") for m in before)
        # at 30 a second the backlog lasts over a minute: the high message goes out while
        # most of it still waits (what it waited is printed by bench/head_of_line.py)
        assert len(before) < 1000, f"{len(before)} of the backlog went before the high message"
        assert stats["429"] == 0
    finally:
        for proc in [*procs, sandbox]:
            proc.terminate()
