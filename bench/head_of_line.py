"""How long urgent work waits behind a crowd: a high message behind a bot's backlog, and
private chats behind a flooded group. Prints the waits; the tests
(`tests/e2e/test_fairness.py`) assert only the order.

    .venv/bin/python bench/head_of_line.py [--backlog 2000] [--group 300] [--private 60]

One process per service over one Redis (REDIS_URL, default redis://127.0.0.1:6379/0), the
sandbox at Telegram's limits (the group scenario with windows scaled by 0.2, as in the test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import code_version, delete_namespace
from floodgate.demo import demo_token
from floodgate.observe import Received
from tests.e2e.scenario import submit_bodies
from tests.helpers import AUTH
from tests.procs import Proc, floodgate

BOT = 701


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backlog", type=int, default=2000, help="normal messages ahead of the high")
    p.add_argument("--group", type=int, default=300, help="messages queued for one group")
    p.add_argument("--private", type=int, default=60, help="private messages behind the group")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return p.parse_args()


async def _pipeline(redis_url: str, scale: str, namespace: str) -> tuple[Proc, list[Proc]]:
    sandbox = floodgate("sandbox", ["sandbox", "--window-scale", scale], {})
    env = {
        "REDIS_URL": redis_url,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": demo_token(BOT),
        "FLOODGATE_NAMESPACE": namespace,
        "FLOODGATE_WINDOW_SCALE": scale,
        "FLOODGATE_LOG_LEVEL": "WARNING",
    }
    procs = [floodgate(name, ["run", name], env) for name in ("ingest", "scheduler", "sender")]
    await sandbox.wait_healthy()
    for proc in procs:
        await proc.wait_healthy()
    return sandbox, procs


async def _until(session: aiohttp.ClientSession, sandbox: Proc, done, within_s: float) -> Received:
    received = Received()
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        await received.refresh(session, sandbox.url)
        if done(received):
            return received
        await asyncio.sleep(0.02)
    raise RuntimeError(f"not done in {within_s} s")


async def _high_behind_backlog(args: argparse.Namespace, session, sandbox, ingest: str) -> None:
    backlog = [
        {"bot_id": BOT, "chat_id": 20_000 + i, "text": f"bulk-{i}"} for i in range(args.backlog)
    ]
    for start in range(0, len(backlog), 1000):
        await submit_bodies(session, ingest, backlog[start : start + 1000])
    await _until(session, sandbox, lambda r: len(r.messages) >= 90, 60)
    asked = time.time()
    await submit_bodies(
        session, ingest, [{"bot_id": BOT, "chat_id": 1, "text": "urgent", "priority": "high"}]
    )
    received = await _until(
        session, sandbox, lambda r: any(m.chat_id == 1 for m in r.messages), 120
    )
    urgent = next(m for m in received.messages if m.chat_id == 1)
    ahead = sum(1 for m in received.messages if m.ts >= asked and m.seq < urgent.seq)
    print(
        f"high behind {args.backlog - len(received.messages) + 1} waiting: delivered "
        f"{urgent.ts - asked:.3f} s after its request, {ahead} of the backlog went meanwhile"
    )


async def _private_behind_group(args: argparse.Namespace, session, sandbox, ingest: str) -> None:
    group = [{"bot_id": BOT, "chat_id": -1001, "text": f"flood-{i}"} for i in range(args.group)]
    private = [
        {"bot_id": BOT, "chat_id": 5000 + i, "text": f"private-{i}"} for i in range(args.private)
    ]
    await submit_bodies(session, ingest, group)
    asked = time.time()
    await submit_bodies(session, ingest, private)

    def all_private(r: Received) -> bool:
        return sum(m.text.startswith("private") for m in r.messages) >= args.private

    received = await _until(session, sandbox, all_private, 120)
    last = max(m.ts for m in received.messages if m.text.startswith("private"))
    print(
        f"{args.private} private chats behind {args.group} for one group (windows x0.2): "
        f"the last delivered {last - asked:.3f} s after their request"
    )


async def _run(args: argparse.Namespace) -> None:
    print(f"code {code_version()}; machine: {os.cpu_count()} cores")
    for scale, scenario in (("1.0", _high_behind_backlog), ("0.2", _private_behind_group)):
        namespace = f"bench{secrets.token_hex(3)}"
        sandbox, procs = await _pipeline(args.redis_url, scale, namespace)
        try:
            async with aiohttp.ClientSession(headers=AUTH) as session:
                await scenario(args, session, sandbox, procs[0].url)
        finally:
            for proc in [*procs, sandbox]:
                proc.terminate()
            await delete_namespace(args.redis_url, namespace)


if __name__ == "__main__":
    asyncio.run(_run(_args()))
