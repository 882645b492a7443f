"""What a bare HTTP client pays for one sendMessage, as a yardstick for the sender: aiohttp
posting to the sandbox the way floodgate's Telegram client does (one session, keep-alive,
the body encoded with orjson), with nothing else: no queue, no limiter, no Redis. Prints the
CPU time of this process per message, from the first request to the last answer.

The sender's own figure means little alone on a machine whose speed drifts by a quarter in an
hour; against this yardstick, measured the same minute, it does (bench/pipeline_throughput.py
runs it after the pipeline, against the same sandbox).

    .venv/bin/python bench/bare_client.py --sandbox http://127.0.0.1:8081 --messages 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floodgate.demo import demo_token


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(sandbox: str, messages: int, concurrency: int, bot_id: int = 7000) -> float:
    """µs of this process's CPU per sendMessage answered."""
    url = f"{sandbox.rstrip('/')}/bot{demo_token(bot_id)}/sendMessage"
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    queue = iter(range(messages))
    answered = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal answered
        for n in queue:
            body = orjson.dumps({"chat_id": 20_000 + n, "text": f"bare {n} " + "x" * 60})
            async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                await resp.read()
                if resp.status == 200:
                    answered += 1

    async with aiohttp.ClientSession() as session:
        await _warm_up(session, url, headers)
        before = _cpu_s()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        spent = _cpu_s() - before
    if answered < messages:
        raise SystemExit(f"only {answered} of {messages} sendMessage calls answered 200")
    return spent * 1e6 / messages


async def _warm_up(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
    """Open the connections and warm the code paths before the clock starts."""
    body = orjson.dumps({"chat_id": 19_999, "text": "warm up"})
    for _ in range(50):
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sandbox", required=True, help="base URL of a sandbox run with --no-limits")
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--json", action="store_true", help="print the figure as JSON")
    args = p.parse_args()
    us = asyncio.run(measure(args.sandbox, args.messages, args.concurrency))
    if args.json:
        print(json.dumps({"bare_client_us_per_message": round(us, 1)}))
    else:
        print(f"bare aiohttp client: {us:.1f} µs of CPU per sendMessage ({args.messages} calls)")


if __name__ == "__main__":
    main()
