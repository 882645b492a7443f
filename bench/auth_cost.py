"""What access control costs: the key check per request on a cache hit, and ingest's
throughput with FLOODGATE_AUTH on and off, measured in one run.

    .venv/bin/python bench/auth_cost.py
    .venv/bin/python bench/auth_cost.py --checks 200000 --singles 4000 --rounds 3

The key check is timed in this process (``Authenticator.check`` with the key cached, as every
request but one per key and 5 s finds it). Throughput starts one ingest process per mode over
the same Redis and sends single-message requests (where a per-request cost shows most) and
batches of 100, alternating the modes round by round. Needs Redis (REDIS_URL, default
redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import code_version, delete_namespace
from floodgate.demo import demo_token
from shared.access import Authenticator
from shared.api_keys import Role, new_key
from shared.keys import Keys
from shared.redis_broker import connect
from shared.redis_keystore import RedisKeyStore
from tests.procs import floodgate

BOTS = [7100 + i for i in range(4)]
ADMIN = secrets.token_urlsafe(32)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checks", type=int, default=200_000, help="key checks timed")
    p.add_argument("--singles", type=int, default=3_000, help="single-message requests per round")
    p.add_argument("--batches", type=int, default=100, help="batches of 100 per round")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (off, on)")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return p.parse_args()


async def _check_cost(redis_url: str, namespace: str, count: int) -> dict[str, float]:
    client = connect(redis_url)
    store = RedisKeyStore(client, Keys(namespace))
    token, record = new_key(Role.PRODUCER, bots=BOTS)
    await store.add(record)
    auth = Authenticator(store, ADMIN)
    figures = {}
    for label, header in (("stored key", f"Bearer {token}"), ("admin key", f"Bearer {ADMIN}")):
        await auth.check(header)  # the miss that fills the cache
        started = time.perf_counter()
        for _ in range(count):
            await auth.check(header)
        figures[label] = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    for _ in range(2_000):
        auth._cache.clear()  # a miss every time: one HGETALL and one touch
        await auth.check(f"Bearer {token}")
    figures["stored key, cache miss"] = (time.perf_counter() - started) / 2_000 * 1e6
    await client.aclose()
    return figures


async def _post_all(
    url: str, key: str | None, path: str, bodies: list[dict], concurrency: int
) -> float:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with session.post(url + path, json=body) as resp:
                    if resp.status != 202:
                        raise RuntimeError(f"{resp.status} {await resp.text()}")
                    await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def _throughput(args: argparse.Namespace, auth: str, namespace: str) -> tuple[float, float]:
    env = {
        "REDIS_URL": args.redis_url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_NAMESPACE": namespace,
        "FLOODGATE_LOG_LEVEL": "WARNING",
        "FLOODGATE_AUTH": auth,
        "FLOODGATE_ADMIN_KEY": ADMIN,
    }
    key = None
    if auth == "on":
        client = connect(args.redis_url)
        key, record = new_key(Role.PRODUCER, bots=BOTS, name="bench")
        await RedisKeyStore(client, Keys(namespace)).add(record)
        await client.aclose()
    proc = floodgate(f"ingest-auth-{auth}", ["run", "ingest"], env)
    try:
        await proc.wait_healthy()
        singles = [
            {"bot_id": BOTS[i % len(BOTS)], "chat_id": 1 + i, "text": f"s{i}"}
            for i in range(args.singles)
        ]
        batches = [
            {
                "messages": [
                    {"bot_id": BOTS[j % 4], "chat_id": 1 + j, "text": "b"} for j in range(100)
                ]
            }
            for _ in range(args.batches)
        ]
        await _post_all(proc.url, key, "/v1/messages", singles[:200], args.concurrency)  # warm-up
        single_s = await _post_all(proc.url, key, "/v1/messages", singles, args.concurrency)
        batch_s = await _post_all(proc.url, key, "/v1/messages/batch", batches, 4)
    finally:
        proc.terminate()
    return args.singles / single_s, args.batches * 100 / batch_s


async def _run(args: argparse.Namespace) -> None:
    print(f"code {code_version()}; {os.cpu_count()} cores; Redis {args.redis_url}", flush=True)
    namespace = f"bauth{secrets.token_hex(3)}"
    try:
        costs = await _check_cost(args.redis_url, namespace, args.checks)
        for label, micros in costs.items():
            print(f"key check, {label:<24} {micros:8.2f} µs per request", flush=True)
        results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        for rnd in range(args.rounds):
            for auth in ("off", "on"):
                figures = await _throughput(args, auth, f"{namespace}{rnd}{auth}")
                results[auth].append(figures)
                print(
                    f"round {rnd + 1} auth {auth:<3}: single requests {figures[0]:8,.0f} msg/s,"
                    f" batches of 100 {figures[1]:8,.0f} msg/s",
                    flush=True,
                )
        for auth, rows in results.items():
            print(
                f"median auth {auth:<3}: single requests {statistics.median(r[0] for r in rows):8,.0f}"
                f" msg/s, batches of 100 {statistics.median(r[1] for r in rows):8,.0f} msg/s"
            )
    finally:
        await delete_namespace(args.redis_url, namespace)
        for rnd in range(args.rounds):
            for auth in ("off", "on"):
                await delete_namespace(args.redis_url, f"{namespace}{rnd}{auth}")


if __name__ == "__main__":
    asyncio.run(_run(_args()))
