"""Users talk to bots: the sandbox plays 100 users writing in group chats with 10 bots, over
webhooks or by getUpdates; the example application answers every mention; the answers go out
as high priority ahead of a normal backlog; the store holds every message in and out."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from floodgate.demo import demo_token
from floodgate.observe import Delivery, Received
from shared.keys import Keys
from shared.layout import stored_partitions
from shared.redis_broker import connect
from tests.e2e.scenario import submit_bodies
from tests.helpers import ADMIN_KEY, AUTH, eventually
from tests.procs import Proc, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BOTS = list(range(1001, 1011))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    """A database of this test's own."""
    name = f"fg_e2e_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    yield database_url.rsplit("/", 1)[0] + f"/{name}"
    await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await admin.close()


BACKLOG_PER_BOT = 150
BOT_RATE = 10  # the backlog lasts 15 s per bot: every user writes while most of it waits


@pytest.mark.parametrize("mode", ["webhook", "polling"])
async def test_users_mention_bots_and_get_answers_first(
    redis_url: str, database: str, mode: str
) -> None:
    """Over webhooks; or by getUpdates (no webhook set), with two polling ingest replicas of
    which the one polling more bots is killed and restarted while users write (a third
    replica, not polling, serves the application's API calls)."""
    sandbox = floodgate("sandbox", ["sandbox", "--seed", "4"], {})
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_BOT_USERNAMES": ",".join(f"{b}=bot{b}" for b in BOTS),
        "FLOODGATE_NAMESPACE": f"in{secrets.token_hex(4)}",
        "FLOODGATE_BOT_RATE": str(BOT_RATE),
    }
    if mode == "polling":
        env |= {
            "FLOODGATE_POLLING_BOTS": "all",
            "FLOODGATE_POLL_TIMEOUT": "1",
            "FLOODGATE_POLL_LEASE_MS": "3000",
        }
    # The API replica the application talks to; when polling, two more replicas poll.
    api = {**env, "FLOODGATE_POLLING_BOTS": "", "FLOODGATE_CONSUMER": "ingest-api"}
    ingest = floodgate("ingest", ["run", "ingest"], api)
    procs = [ingest, *(floodgate(n, ["run", n], env) for n in ("scheduler", "sender", "stats"))]
    pollers = {}
    if mode == "polling":
        for name in ("poller-1", "poller-2"):
            pollers[name] = floodgate(name, ["run", "ingest"], {**env, "FLOODGATE_CONSUMER": name})
        procs += pollers.values()
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
        if mode == "webhook":
            _register_webhooks(env, ingest.url)
        async with aiohttp.ClientSession(headers=AUTH) as session:
            backlog = [
                {"bot_id": b, "chat_id": 50_000 + i, "text": f"bulk-{b}-{i}"}
                for b in BOTS
                for i in range(BACKLOG_PER_BOT)
            ]
            for start in range(0, len(backlog), 500):
                await submit_bodies(session, ingest.url, backlog[start : start + 500])
            said = await _users_talk(session, sandbox.url, range(50))
            if mode == "polling":
                procs.append(await _restart_busiest_poller(env, pollers, redis_url))
            said |= await _users_talk(session, sandbox.url, range(50, 100))
            received = await _until(session, sandbox.url, len(backlog) + len(said), 120)
            await _came_by(session, sandbox.url, mode, users=100)
        answers = [m for m in received.messages if m.text.startswith("answer-")]
        bulk = [m for m in received.messages if m.text.startswith("bulk-")]
        assert len(answers) == len(said), f"{len(answers)} answers for {len(said)} mentions"
        assert len(bulk) == len(backlog)
        _answers_overtook_the_backlog(answers, bulk, said)
        await _store_holds(database, users=100, out=len(backlog) + len(said))
    finally:
        responder.terminate()
        for proc in [*procs, sandbox]:
            proc.terminate()


def _register_webhooks(env: dict[str, str], ingest_url: str) -> None:
    registered = subprocess.run(
        [sys.executable, "-m", "floodgate.cli", "webhook", "set", "--url", ingest_url],
        env={**os.environ, **env},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert registered.returncode == 0, registered.stderr.decode()


async def _restart_busiest_poller(
    env: dict[str, str], pollers: dict[str, Proc], redis_url: str
) -> Proc:
    """Kill the polling replica that holds more bots' polling leases while it polls them, and
    start it again under the same name; returns the new process."""
    client = connect(redis_url)
    holders: Counter[str] = Counter()

    async def every_bot_polled() -> bool:
        nonlocal holders
        # the processes stored their number of partitions (FLOODGATE_PARTITIONS) at start
        keys = Keys(env["FLOODGATE_NAMESPACE"])
        keys = Keys(keys.namespace, await stored_partitions(client, keys) or 1)
        held = [await client.get(keys.of_bot(bot).poll_lease(bot)) for bot in BOTS]
        holders = Counter(h.decode() for h in held if h is not None)
        return sum(holders.values()) == len(BOTS)

    try:
        await eventually(every_bot_polled, 30)
    finally:
        await client.aclose()
    victim, _ = holders.most_common(1)[0]
    pollers[victim].kill()
    again = floodgate(f"{victim}-again", ["run", "ingest"], {**env, "FLOODGATE_CONSUMER": victim})
    await again.wait_healthy()
    return again


async def _came_by(session: aiohttp.ClientSession, sandbox_url: str, mode: str, users: int) -> None:
    """The sandbox's account of how every update left it: by getUpdates only when polling (no
    webhook set), by the webhook only otherwise."""
    path = "getUpdates" if mode == "polling" else "webhook"
    other = "webhook" if mode == "polling" else "getUpdates"
    counts: dict[str, int] = {}

    async def all_taken() -> bool:
        counts.clear()
        for bot in BOTS:
            async with session.get(f"{sandbox_url}/_sandbox/updates?bot_id={bot}") as resp:
                view = await resp.json()
            if mode == "polling":
                assert view["webhook"]["url"] == "", f"bot {bot} has a webhook set"
            for way, n in view["delivered_by"].items():
                counts[way] = counts.get(way, 0) + n
        return counts[path] == users

    await eventually(all_taken, 30)
    assert counts == {path: users, other: 0}


def _answers_overtook_the_backlog(
    answers: list[Delivery], bulk: list[Delivery], said: dict[tuple[int, int], float]
) -> None:
    """Each answer went ahead of its bot's backlog: of the bot's bulk messages still waiting
    when the user wrote, at least 60% went out after the answer (the rest went while the
    mention travelled to the application and its answer back). Answers of normal priority
    fail this: in a run with high priority switched off, 55% went out before one answer."""
    worst = 0.0
    for answer in answers:
        _, bot, update_id = answer.text.split()[0].split("-")
        written = said[int(bot), int(update_id)]
        waiting = [m.ts for m in bulk if m.bot_id == int(bot) and m.ts > written]
        assert len(waiting) >= BACKLOG_PER_BOT // 3, "the user wrote when the backlog was done"
        behind = sum(1 for ts in waiting if ts > answer.ts)
        worst = max(worst, 1 - behind / len(waiting))
        assert behind >= 0.6 * len(waiting), (
            f"{answer.text}: {len(waiting) - behind} of the {len(waiting)} bulk messages waiting"
            " when the user wrote went out before the answer"
        )
    print(f"\nat most {worst:.0%} of a bot's waiting backlog went out before an answer")


async def _users_talk(
    session: aiohttp.ClientSession, sandbox_url: str, users: range
) -> dict[tuple[int, int], float]:
    """Users writing once each in one of 20 groups; every other one mentions the bot. Returns
    when each mention was written, by (bot, update_id)."""
    said: dict[tuple[int, int], float] = {}
    for user in users:
        bot = BOTS[user % len(BOTS)]
        mention = user % 2 == 0
        text = f"hi @bot{bot} can you help" if mention else "hi all"
        say = {"bot_id": bot, "chat_id": -2000 - user % 20, "user_id": 10_000 + user, "text": text}
        written = time.time()
        async with session.post(f"{sandbox_url}/_sandbox/users/say", json=say) as resp:
            assert resp.status == 200, await resp.text()
            update = await resp.json()
        if mention:
            said[bot, update["update_id"]] = written
    return said


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
