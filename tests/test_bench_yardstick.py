"""The Redis yardstick of bench/pipeline_throughput.py: it measures Redis's CPU on a real
server and leaves none of its keys behind (the bench runs it on a Redis that may be shared)."""

from __future__ import annotations

import redis.asyncio as redis

from bench import redis_yardstick


async def test_yardstick_measures_and_cleans_up(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        us = await redis_yardstick.measure(redis_url, messages=500)
        assert 0 < us < 100_000
        left = [key async for key in client.scan_iter(match="yardstick*", count=1000)]
        assert left == []
    finally:
        await client.aclose()
