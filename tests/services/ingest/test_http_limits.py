"""Bodies read whole however they arrive; headers and bodies in bounded time; a connection cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
import pytest

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.ingest.webhook import SECRET_HEADER
from shared.context import Context, build_context
from shared.settings import CommonSettings
from shared.webhooks import derived_secret
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, raw_http, serving

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def _ingest(
    redis_url: str, namespace: str, **env: object
) -> AsyncIterator[tuple[str, Context]]:
    settings = CommonSettings(
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        **env,
    )
    ctx = build_context(settings, allow_memory=False)
    try:
        async with serving(ctx, [IngestService(ctx, IngestSettings())]) as url:
            yield url, ctx
    finally:
        await ctx.close()


def _request(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode() + body


def _answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


async def test_body_in_several_slow_writes_is_read_whole(redis_url, namespace, redis_client):
    async with _ingest(redis_url, namespace) as (url, _):
        body = orjson.dumps({"bot_id": 111, "chat_id": 5, "text": "slow " * 2000})
        raw = _request("/v1/messages", body)
        cut = len(raw) - len(body)
        parts = [raw[:cut], body[:100], body[100:5000], body[5000:]]
        status, doc = _answer(await raw_http(url, parts))
        assert (status, doc["status"]) == (202, "queued")


async def test_webhook_body_in_several_slow_writes_is_read_whole(
    redis_url, namespace, redis_client
):
    async with _ingest(redis_url, namespace) as (url, _):
        update = {
            "update_id": 7,
            "message": {
                "message_id": 1,
                "date": 1,
                "text": "x" * 3000,
                "chat": {"id": 5, "type": "private"},
            },
        }
        body = orjson.dumps(update)
        raw = _request(
            "/webhook/telegram/111", body, f"{SECRET_HEADER}: {derived_secret(TOKENS[111])}\r\n"
        )
        cut = len(raw) - len(body)
        status, doc = _answer(await raw_http(url, [raw[:cut], body[:50], body[50:]]))
        assert (status, doc["ok"]) == (200, True)


async def test_batch_of_750_kilobytes_is_read_whole(redis_url, namespace, redis_client):
    async with _ingest(redis_url, namespace) as (url, _):
        messages = [{"bot_id": 111, "chat_id": i + 1, "text": "m" * 720} for i in range(1000)]
        body = orjson.dumps({"messages": messages})
        assert len(body) > 750_000
        async with (
            aiohttp.ClientSession(headers=AUTH) as s,
            s.post(
                f"{url}/v1/messages/batch", data=body, headers={"Content-Type": "application/json"}
            ) as resp,
        ):
            assert resp.status == 202, await resp.text()
            results = (await resp.json())["results"]
        assert [r["status"] for r in results] == ["queued"] * 1000


async def test_headers_then_nothing_is_dropped(redis_url, namespace, redis_client):
    async with _ingest(redis_url, namespace, FLOODGATE_HTTP_HEADER_TIMEOUT=0.5) as (url, _):
        raw = await raw_http(url, [b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"])
        assert raw == b""  # hung up on, well before RAW_GIVE_UP_S


async def test_body_that_stops_coming_is_408(redis_url, namespace, redis_client):
    async with _ingest(redis_url, namespace, FLOODGATE_HTTP_BODY_TIMEOUT=0.5) as (url, _):
        raw = _request("/v1/messages", b'{"bot_id": 111, "chat_id": 5, "text": "never ends"}')
        status, doc = _answer(await raw_http(url, [raw[:-20]]))
        assert status == 408
        assert "body" in doc["error"]


async def test_connection_over_the_cap_is_503(redis_url, namespace, redis_client):
    async with _ingest(redis_url, namespace, FLOODGATE_HTTP_MAX_CONNECTIONS=2) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
        try:
            for reader, writer in held:  # answered: the server has taken the connection
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert b"200 OK" in await reader.readuntil(b"\r\n\r\n")
            status, doc = _answer(
                await raw_http(url, [b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"])
            )
            assert status == 503
            assert "too many connections" in doc["error"]
        finally:
            for _, writer in held:
                writer.close()


async def test_chunked_body_is_read_whole_and_limited(redis_url, namespace, redis_client):
    async with _ingest(redis_url, namespace) as (url, _):
        body = orjson.dumps({"bot_id": 111, "chat_id": 5, "text": "chunked " * 3000})

        async def pieces(data: bytes, size: int):
            for start in range(0, len(data), size):
                yield data[start : start + size]

        async with aiohttp.ClientSession(headers=AUTH) as s:
            async with s.post(f"{url}/v1/messages", data=pieces(body, 1000)) as resp:
                assert resp.status == 202, await resp.text()
            huge = b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'"}'
            async with s.post(f"{url}/v1/messages", data=pieces(huge, 64 * 1024)) as resp:
                assert resp.status == 413
                assert (await resp.json())["errors"]
