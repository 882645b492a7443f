"""A Bot API that echoes the token back in every error form it has: the token stays inside."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import web

from shared.context import build_context
from shared.logs import JsonFormatter
from shared.redact import redact
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, free_port
from tests.services.sender.harness import FAST_TELEGRAM, serving_pipeline

pytestmark = pytest.mark.timeout(60)

SECRETS = {7: "S3cretS3cretS3cretS3cretS3cretS3cr", 42: "An0therAn0therAn0therAn0ther_-x"}
TOKENS = {bot: f"{bot}:{secret}" for bot, secret in SECRETS.items()}


def _echo(path: str, chat: int) -> web.Response:
    """Every way an upstream may echo a request path (and with it the token) in its errors."""
    token = path.split("/")[1].removeprefix("bot")
    encoded = path.replace(":", "%3A")
    match chat:
        case 1:
            page = f"<html><body><pre>Cannot POST {path}</pre></body></html>"
            return web.Response(status=404, text=page, content_type="text/html")
        case 2:
            doc = {"ok": False, "error_code": 400, "description": f"Bad Request: {path}"}
            return web.json_response(doc, status=400)
        case 3:
            page = f"<html><body><h1>502 Bad Gateway</h1>upstream {path}</body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        case 4:
            doc = {"ok": False, "error_code": 403, "description": f"Forbidden: {encoded}"}
            return web.json_response(doc, status=403)
        case 5:
            doc = {"ok": False, "error_code": 500, "description": f"Internal: token {token}"}
            return web.json_response(doc, status=500)
        case _:
            return web.Response(status=401, text=f"Unauthorized: {token}")


@asynccontextmanager
async def _echoing_api() -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        return _echo(request.path, int(body["chat_id"]))

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextmanager
def _captured_logs() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def _redis_values(client: redis.Redis, namespace: str) -> bytes:
    """Every value under the namespace, whatever its type."""
    found: list[Any] = []
    async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        found.append(key)
        kind = (await client.type(key)).decode()
        if kind == "string":
            found.append(await client.get(key))
        elif kind == "hash":
            found.append(await client.hgetall(key))
        elif kind == "stream":
            found.append(await client.xrange(key))
        elif kind == "zset":
            found.append(await client.zrange(key, 0, -1))
        elif kind == "set":
            found.append(await client.smembers(key))
    return repr(found).encode()


def _assert_secret_free(where: str, text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    for secret in SECRETS.values():
        assert secret.encode() not in data, f"a token in {where}"
        assert secret[:20].encode() not in data, f"part of a token in {where}"


def test_redaction_matches_what_the_token_parser_accepts() -> None:
    for token in TOKENS.values():
        bot, secret = token.split(":")
        for text in (token, f"/bot{bot}%3A{secret}/x", f"/bot{bot}%3a{secret}/x", f"a{token}b"):
            _assert_secret_free(text, redact(text))
    assert redact("1:short") == "1:short", "not a token: too short a secret"


async def test_echoed_tokens_stay_inside(redis_url, namespace, redis_client) -> None:
    settings = CommonSettings(
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_CHAT_RATE=1000,
        **FAST_TELEGRAM,
    )
    with _captured_logs() as logs:
        async with _echoing_api() as api:
            settings.telegram_api_base = api
            ctx = build_context(settings, allow_memory=False)
            async with serving_pipeline(ctx, None) as p:  # type: ignore[arg-type]
                ids = [
                    await p.submit({"bot_id": bot, "chat_id": chat, "text": "hi"})
                    for bot in SECRETS
                    for chat in range(1, 7)
                ]
                answers = [await p.wait_status(ident, "dead", timeout=30) for ident in ids]
                _, dlq = await p.call("GET", "/v1/dlq?limit=100")
                metrics = await p.metrics()
            values = await _redis_values(redis_client, namespace)
    assert all(a["error"] for a in answers)
    _assert_secret_free("GET /v1/messages/{id}", repr(answers))
    assert len(dlq["items"]) == len(ids)
    _assert_secret_free("GET /v1/dlq", repr(dlq))
    _assert_secret_free("/metrics", metrics)
    _assert_secret_free("Redis", values)
    _assert_secret_free("logs", logs.getvalue())
    assert "<redacted>" in repr(answers)
