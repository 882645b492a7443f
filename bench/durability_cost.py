"""What FLOODGATE_DURABILITY=replicated costs: ingest's answer time with local and replicated
durability, on a private Sentinel setup and a private Redis Cluster (replicas on this host, so
the replication round trip is a loopback one; across zones add the network's).

    .venv/bin/python bench/durability_cost.py
    .venv/bin/python bench/durability_cost.py --requests 2000 --rounds 3

Ingest runs in this process and takes single-message requests one after another (so each
answer waits for its own commit), alternating the modes round by round. Needs redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import code_version
from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from shared.context import build_context
from shared.settings import CommonSettings
from tests.cluster import RedisCluster, SentinelSetup
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, serving


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=500, help="requests per mode and round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (local, replicated)")
    return p.parse_args()


async def _latencies(url: str, durability: str, count: int) -> list[float]:
    settings = CommonSettings(
        REDIS_URL=url,
        FLOODGATE_NAMESPACE=f"bench{secrets.token_hex(3)}",
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_DURABILITY=durability,
    )
    ctx = build_context(settings, allow_memory=False)
    took: list[float] = []
    async with (
        serving(ctx, [IngestService(ctx, IngestSettings())]) as base,
        aiohttp.ClientSession(headers=AUTH) as session,
    ):
        for i in range(count):
            body = {"bot_id": 111, "chat_id": 1000 + i, "text": "x"}
            start = time.perf_counter()
            async with session.post(f"{base}/v1/messages", json=body) as resp:
                assert resp.status == 202, await resp.text()
            took.append((time.perf_counter() - start) * 1000)
    await ctx.close()
    return took


async def main() -> None:
    args = _args()
    print(f"code {code_version()}")
    for name, make in (("sentinel", SentinelSetup), ("cluster", RedisCluster)):
        setup = make()
        setup.start()
        try:
            found: dict[str, list[float]] = {"local": [], "replicated": []}
            for _ in range(args.rounds):
                for mode in found:
                    found[mode] += await _latencies(setup.url, mode, args.requests)
            for mode, took in found.items():
                took.sort()
                p95 = took[int(len(took) * 0.95)]
                print(
                    f"{name:8} {mode:10} median {statistics.median(took):.2f} ms  p95 {p95:.2f} ms"
                )
        finally:
            setup.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
