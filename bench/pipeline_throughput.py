"""End-to-end throughput: N messages through ingest, scheduler, sender and stats, one process
each over one Redis, into the sandbox with its limits off. Prints messages per second.

    .venv/bin/python bench/pipeline_throughput.py --messages 20000 --senders 1

floodgate's own limits are raised out of the way (FLOODGATE_BOT_RATE and the chat rates), so
this measures the pipeline, not Telegram's rules. Needs Redis (REDIS_URL, default
redis://127.0.0.1:6379/0).
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

from bench._common import delete_namespace
from floodgate.demo import demo_token
from floodgate.observe import Received, percentile
from floodgate.workload import build_workload
from tests.helpers import AUTH
from tests.procs import Proc, floodgate


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--bots", type=int, default=10)
    p.add_argument("--senders", type=int, default=1, help="sender processes")
    p.add_argument("--batch", type=int, default=500, help="messages per batch request")
    p.add_argument("--concurrency", type=int, default=4, help="batch requests in flight")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return p.parse_args()


async def _submit(
    session: aiohttp.ClientSession, url: str, bodies: list[dict], concurrency: int
) -> None:
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            body = queue.pop()
            async with session.post(f"{url}/v1/messages/batch", json=body) as resp:
                if resp.status != 202:
                    raise RuntimeError(await resp.text())
                await resp.read()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _run(args: argparse.Namespace) -> None:
    bots = [7000 + i for i in range(args.bots)]
    per_bot = args.messages // len(bots)
    workload = build_workload(1, bots, private_chats=per_bot, per_chat=1, groups=0, per_group=0)
    bodies = [
        {"messages": [m.request() for m in workload.messages[i : i + args.batch]]}
        for i in range(0, len(workload.messages), args.batch)
    ]
    sandbox = floodgate("sandbox", ["sandbox", "--no-limits"], {})
    env = {
        "REDIS_URL": args.redis_url,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in bots),
        "FLOODGATE_NAMESPACE": f"bench{secrets.token_hex(3)}",
        "FLOODGATE_BOT_RATE": "1000000",
        "FLOODGATE_CHAT_RATE": "1000000",
        "FLOODGATE_GROUP_RATE": "1000000",
        "FLOODGATE_LOG_LEVEL": "WARNING",
    }
    procs: list[Proc] = [
        floodgate("ingest", ["run", "ingest"], env),
        floodgate("scheduler", ["run", "scheduler"], env),
        floodgate("stats", ["run", "stats"], env),
    ] + [floodgate(f"sender-{i}", ["run", "sender"], env) for i in range(args.senders)]
    try:
        await sandbox.wait_healthy()
        for proc in procs:
            await proc.wait_healthy()
        await _measure(args, procs[0].url, sandbox.url, bodies, len(workload.messages))
    finally:
        for proc in [*procs, sandbox]:
            proc.terminate()
        await delete_namespace(args.redis_url, env["FLOODGATE_NAMESPACE"])


async def _measure(args, ingest_url: str, sandbox_url: str, bodies: list[dict], total: int) -> None:
    received = Received()
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, headers=AUTH) as session:
        started_wall, started = time.time(), time.perf_counter()
        await _submit(session, ingest_url, bodies, args.concurrency)
        submitted = time.perf_counter() - started
        print(
            f"submitted {total} in {submitted:.2f} s ({total / submitted:,.0f} msg/s accepted by ingest)",
            flush=True,
        )
        deadline = time.monotonic() + 600
        while len(received.messages) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            await received.refresh(session, sandbox_url)
            print(f"  delivered {len(received.messages)}/{total}", flush=True)
    last = max(m.ts for m in received.messages)
    elapsed = last - started_wall
    stamps = sorted(m.ts for m in received.messages)
    steady = [stamps[i] for i in range(len(stamps) // 10, len(stamps) * 9 // 10)]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    print()
    print(
        f"machine: {os.cpu_count()} cores; processes: ingest, scheduler, stats, {args.senders} sender(s), sandbox, redis"
    )
    print(f"messages         {total}")
    print(f"delivered        {len(received.messages)}")
    print(f"end to end       {elapsed:.2f} s  ->  {total / elapsed:,.0f} messages/s")
    print(f"steady delivery  {steady_rate:,.0f} messages/s (middle 80% of deliveries)")
    lat = [m.ts - started_wall for m in received.messages]
    print(
        f"time to deliver  p50 {percentile(lat, 0.5):.2f} s, p99 {percentile(lat, 0.99):.2f} s after the first submit"
    )


if __name__ == "__main__":
    asyncio.run(_run(_args()))
