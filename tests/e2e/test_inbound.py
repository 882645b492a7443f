"""Users talk to bots: the sandbox plays 100 users writing in group chats with 10 bots over
webhooks; the example application answers every mention; the answers go out as high priority
ahead of a normal backlog; the store holds every message in and out."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from floodgate.demo import demo_token
from floodgate.observe import Received
from tests.e2e.scenario import submit_bodies
from tests.helpers import ADMIN_KEY, AUTH
from tests.procs import Proc, floodgate
from tests.shared.test_store import DATABASE_URL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BOTS = list(range(1001, 1011))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A database of this test's own."""
    name = f"fg_e2e_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(DATABASE_URL)
    await admin.execute(f"CREATE DATABASE {name}")
    yield DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
    await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await admin.close()


@pytest.mark.parametrize("mode", ["webhook", "polling"])
async def test_users_mention_bots_and_get_answers_first(
    redis_url: str, database: str, mode: str
) -> None:
    """Over webhooks; or by polling, with two ingest replicas of which one is restarted."""
    sandbox = floodgate("sandbox", ["sandbox", "--seed", "4"], {})
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_BOT_USERNAMES": ",".join(f"{b}=bot{b}" for b in BOTS),
        "FLOODGATE_NAMESPACE": f"in{secrets.token_hex(4)}",
    }
    if mode == "polling":
        env |= {
            "FLOODGATE_POLLING_BOTS": "all",
            "FLOODGATE_POLL_TIMEOUT": "1",
            "FLOODGATE_POLL_LEASE_MS": "3000",
        }
    procs = [floodgate(n, ["run", n], env) for n in ("ingest", "scheduler", "sender", "stats")]
    ingest = procs[0]
    if mode == "polling":
        procs.append(
            floodgate("ingest-2", ["run", "ingest"], {**env, "FLOODGATE_CONSUMER": "ingest-2"})
        )
    responder = Proc(
        "responder",
        [
            sys.executable,
            str(ROOT / "examples" / "responder.py"),
            "--ingest-url",
            ingest.url,
            "--redis-url",
            redis_url,
            "--namespace",
            env["FLOODGATE_NAMESPACE"],
        ],
        {"FLOODGATE_API_KEY": ADMIN_KEY},
        None,
    )
    try:
        await sandbox.wait_healthy()
        for proc in procs:
            await proc.wait_healthy()
        registered = subprocess.run(
            [sys.executable, "-m", "floodgate.cli", "webhook", "set", "--url", ingest.url],
            env={**os.environ, **env},
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert registered.returncode == 0, registered.stderr.decode()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            backlog = [
                {"bot_id": b, "chat_id": 50_000 + i, "text": f"bulk-{b}-{i}"}
                for b in BOTS
                for i in range(150)
            ]
            for start in range(0, len(backlog), 500):
                await submit_bodies(session, ingest.url, backlog[start : start + 500])
            await asyncio.sleep(0.5)
            said_at = time.time()
            mentions = await _users_talk(session, sandbox.url, range(50))
            if mode == "polling":
                procs[-1].kill()  # the second replica dies; the first, or its restart, goes on
                procs.append(
                    floodgate(
                        "ingest-2b", ["run", "ingest"], {**env, "FLOODGATE_CONSUMER": "ingest-2"}
                    )
                )
                await procs[-1].wait_healthy()
            mentions += await _users_talk(session, sandbox.url, range(50, 100))
            received = await _until(session, sandbox.url, len(backlog) + mentions, 120)
        answers = [m for m in received.messages if m.text.startswith("answer-")]
        bulk = [m for m in received.messages if m.text.startswith("bulk-")]
        assert len(answers) == mentions, f"{len(answers)} answers for {mentions} mentions"
        assert len(bulk) == len(backlog)
        for bot in BOTS:
            last_bulk = max(m.ts for m in bulk if m.bot_id == bot)
            mine = [m.ts for m in answers if m.bot_id == bot]
            assert all(ts < last_bulk for ts in mine), (
                f"bot {bot}: an answer waited behind the backlog"
            )
        slowest = max(m.ts for m in answers) - said_at
        print(
            f"\n{mentions} answers to mentions, the last {slowest:.2f} s after the users wrote; "
            f"backlog done {max(m.ts for m in bulk) - said_at:.2f} s after"
        )
        await _store_holds(database, users=100, out=len(backlog) + mentions)
    finally:
        responder.terminate()
        for proc in [*procs, sandbox]:
            proc.terminate()


async def _users_talk(session: aiohttp.ClientSession, sandbox_url: str, users: range) -> int:
    """Users writing once each in one of 20 groups; every other one mentions the bot."""
    mentions = 0
    for user in users:
        bot = BOTS[user % len(BOTS)]
        mention = user % 2 == 0
        mentions += mention
        text = f"hi @bot{bot} can you help" if mention else "hi all"
        say = {"bot_id": bot, "chat_id": -2000 - user % 20, "user_id": 10_000 + user, "text": text}
        async with session.post(f"{sandbox_url}/_sandbox/users/say", json=say) as resp:
            assert resp.status == 200, await resp.text()
    return mentions


async def _until(
    session: aiohttp.ClientSession, sandbox_url: str, count: int, timeout: float
) -> Received:
    received = Received()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await received.refresh(session, sandbox_url)
        if len(received.messages) >= count:
            return received
        await asyncio.sleep(0.25)
    raise AssertionError(f"{len(received.messages)} of {count} delivered in {timeout} s")


async def _store_holds(url: str, users: int, out: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            rows = dict(
                await conn.fetch("SELECT direction, count(*) FROM messages GROUP BY direction")
            )
            if rows.get("in") == users and rows.get("out") == out:
                break
            assert time.monotonic() < deadline, (
                f"store holds {rows}, expected in {users}, out {out}"
            )
            await asyncio.sleep(0.5)
        sent = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE direction = 'out' AND status = 'sent'"
        )
        assert sent == out
        high = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE direction = 'out' AND priority = 'high'"
        )
        assert high == users // 2, "every answer to a mention was high priority"
    finally:
        await conn.close()
