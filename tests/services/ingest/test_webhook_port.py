"""FLOODGATE_WEBHOOK_PORT: the webhook on a listener of its own, and only there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from shared.context import Context, build_context
from shared.settings import CommonSettings
from shared.webhooks import derived_secret
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, eventually, free_port, raw_http, serving

pytestmark = pytest.mark.timeout(60)

BOT = 111
SECRET = {"X-Telegram-Bot-Api-Secret-Token": derived_secret(TOKENS[BOT])}
UPDATE = {
    "update_id": 5,
    "message": {"message_id": 1, "date": 0, "chat": {"id": 9, "type": "private"}, "text": "hi"},
}


@pytest.fixture
async def ports(
    redis_url: str, namespace: str, redis_client
) -> AsyncIterator[tuple[str, str, Context]]:
    """Ingest with its API on one port and its webhook on another: (api, webhook, ctx)."""
    async with _ports(redis_url, namespace) as running:
        yield running


@asynccontextmanager
async def _ports(
    redis_url: str, namespace: str, **env: object
) -> AsyncIterator[tuple[str, str, Context]]:
    settings = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        **env,
    )
    ctx = build_context(settings, allow_memory=False)
    port = free_port()
    ingest = IngestService(
        ctx, IngestSettings(FLOODGATE_WEBHOOK_PORT=port, FLOODGATE_WEBHOOK_HOST="127.0.0.1")
    )
    stop = asyncio.Event()
    async with serving(ctx, [ingest]) as api:
        running = asyncio.create_task(ingest.run(stop))
        webhook = f"http://127.0.0.1:{port}"
        await eventually(lambda: _listening(webhook), timeout=10)
        try:
            yield api, webhook, ctx
        finally:
            stop.set()
            await running
    await ctx.close()


async def _listening(url: str) -> bool:
    try:
        await _request(url, "GET", "/healthz")
    except aiohttp.ClientError:
        return False
    return True


async def _request(
    url: str, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers=headers) as s,
        s.request(method, url + path, json=body) as resp,
    ):
        return resp.status, await resp.json()


async def test_the_webhook_port_serves_the_webhook(ports) -> None:
    _, webhook, ctx = ports
    status, doc = await _request(webhook, "POST", f"/webhook/telegram/{BOT}", SECRET, UPDATE)
    assert (status, doc) == (200, {"ok": True, "duplicate": False})
    assert await ctx.broker.depths([ctx.keys.updates], []) == {ctx.keys.updates: 1}


async def test_unknown_bot_and_wrong_secret_answer_alike(ports) -> None:
    _, webhook, ctx = ports
    wrong = {"X-Telegram-Bot-Api-Secret-Token": "nope"}
    unknown = await _request(webhook, "POST", "/webhook/telegram/999", SECRET, UPDATE)
    bad_secret = await _request(webhook, "POST", f"/webhook/telegram/{BOT}", wrong, UPDATE)
    assert unknown == bad_secret
    assert unknown[0] == 401
    assert await ctx.broker.depths([ctx.keys.updates], []) == {ctx.keys.updates: 0}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/batch"),
        ("GET", "/v1/messages/x"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", f"/webhook/telegram/{BOT}"),
    ],
)
async def test_the_webhook_port_serves_nothing_else(ports, method, path) -> None:
    _, webhook, ctx = ports
    body = {"bot_id": BOT, "chat_id": 5, "text": "hi"} if method == "POST" else None
    status, doc = await _request(webhook, method, path, AUTH, body)
    assert status in {404, 405}
    assert "error" in doc
    assert await ctx.broker.depths([ctx.keys.ingest], []) == {ctx.keys.ingest: 0}


async def test_the_api_port_does_not_serve_the_webhook(ports) -> None:
    api, _, ctx = ports
    assert (await _request(api, "POST", f"/webhook/telegram/{BOT}", SECRET, UPDATE))[0] == 401
    headers = {**SECRET, **AUTH}
    assert (await _request(api, "POST", f"/webhook/telegram/{BOT}", headers, UPDATE))[0] == 404
    assert await ctx.broker.depths([ctx.keys.updates], []) == {ctx.keys.updates: 0}
    assert (
        await _request(
            api, "POST", "/v1/messages", AUTH, {"bot_id": BOT, "chat_id": 5, "text": "x"}
        )
    )[0] == 202


async def test_the_webhook_port_hangs_up_on_headers_that_never_end(
    redis_url, namespace, redis_client
) -> None:
    """The port that faces the internet drops a request whose headers stop coming, as the
    API's does, so a slow client cannot hold its connections open."""
    async with _ports(redis_url, namespace, FLOODGATE_HTTP_HEADER_TIMEOUT=0.5) as (_, webhook, _):
        raw = await raw_http(
            webhook, [f"POST /webhook/telegram/{BOT} HTTP/1.1\r\nHost: x\r\n".encode()]
        )
        assert raw == b""  # hung up on, well before RAW_GIVE_UP_S


async def test_the_webhook_port_turns_away_connections_over_the_cap(
    redis_url, namespace, redis_client
) -> None:
    async with _ports(redis_url, namespace, FLOODGATE_HTTP_MAX_CONNECTIONS=2) as (_, webhook, _):
        host, port = webhook.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
        try:
            for reader, writer in held:  # answered: the server has taken the connection
                writer.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
                assert b"404" in await reader.readuntil(b"\r\n\r\n")
            raw = await raw_http(webhook, [b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"])
            assert raw.split(b" ", 2)[1] == b"503"
            assert b"too many connections" in raw
        finally:
            for _, writer in held:
                writer.close()
