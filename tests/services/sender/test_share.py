"""Senders share the pipeline's partitions out by their beats in Redis."""

from __future__ import annotations

import asyncio
import os
from unittest import mock

import aiohttp
import redis.asyncio as redis

from floodgate.launch import SERVICE_NAMES, build_services
from sandbox import SandboxConfig, start_sandbox
from shared.runtime import serve
from tests.helpers import AUTH, eventually, free_port
from tests.services.sender.harness import BOT, SERVICE_ENV, pipeline_context


async def test_a_draining_sender_leaves_its_partitions_to_the_others(
    redis_client: redis.Redis, redis_url: str, namespace: str
) -> None:
    """A sender that stopped reading and waits for its last Bot API call no longer counts:
    counted, it would keep its partitions (and the messages it hands back into them) from
    the other senders until its drain is over."""
    slow = SandboxConfig(latency_min_ms=4000, latency_max_ms=4000, limits_enabled=False)
    sb = await start_sandbox(slow)
    ctx = pipeline_context(
        redis_url, namespace, sb.url, TELEGRAM_TIMEOUT=20, FLOODGATE_PARTITIONS=2
    )
    with mock.patch.dict(os.environ, SERVICE_ENV):
        services = build_services(ctx, SERVICE_NAMES)
    stop, port = asyncio.Event(), free_port()
    server = asyncio.create_task(serve(ctx, services, "127.0.0.1", port, stop))
    try:

        async def counted() -> bool:
            return await redis_client.zscore(ctx.keys.senders, ctx.consumer) is not None

        await eventually(counted, 10)
        body = {"bot_id": BOT, "chat_id": 48, "text": "slowly"}
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.post(f"http://127.0.0.1:{port}/v1/messages", json=body) as resp,
        ):
            assert resp.status == 202

        async def in_flight() -> bool:
            return len(sb.state.messages.select(chat_id=48)) >= 1

        await eventually(in_flight, 10, step=0.02)
        stop.set()

        async def left() -> bool:
            return await redis_client.zscore(ctx.keys.senders, ctx.consumer) is None

        await eventually(left, 3, step=0.02)
        assert not server.done(), "still draining: its Bot API call is under way"
        assert await server == 0
    finally:
        stop.set()
        await asyncio.gather(server, return_exceptions=True)
        await sb.close()
