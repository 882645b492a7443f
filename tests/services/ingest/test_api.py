"""The public send API: validation, answers, idempotency, batch, status, outage."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from shared.context import Context, build_context
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, free_port, serving


def _ctx(redis_url: str | None, namespace: str) -> Context:
    settings = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
    )
    return build_context(settings, allow_memory=True)


@pytest.fixture(params=["redis", "memory"])
async def api(
    request: pytest.FixtureRequest, redis_url: str, namespace: str, redis_client
) -> AsyncIterator[tuple[str, Context]]:
    ctx = _ctx(redis_url if request.param == "redis" else None, namespace)
    async with serving(ctx, [IngestService(ctx, IngestSettings())]) as url:
        yield url, ctx
    await ctx.close()


async def _post(url: str, path: str, **kwargs) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(url + path, **kwargs) as resp,
    ):
        return resp.status, await resp.json()


async def _queued(ctx: Context) -> int:
    return (await ctx.broker.depths([ctx.keys.ingest], []))[ctx.keys.ingest]


async def test_accepts_and_reports_status(api) -> None:
    url, ctx = api
    status, body = await _post(
        url, "/v1/messages", json={"bot_id": 111, "chat_id": 5, "text": "hi"}
    )
    assert status == 202
    assert body["status"] == "queued"
    assert body["priority"] == "normal"
    async with (
        aiohttp.ClientSession(headers=AUTH) as s,
        s.get(f"{url}/v1/messages/{body['id']}") as resp,
    ):
        assert resp.status == 200
        doc = await resp.json()
    assert (doc["id"], doc["status"], doc["priority"], doc["attempts"]) == (
        body["id"],
        "queued",
        "normal",
        0,
    )
    assert await _queued(ctx) == 1


@pytest.mark.parametrize(
    ("payload", "priority"),
    [
        ({"kind": "system"}, "high"),
        ({"kind": "background"}, "low"),
        ({"kind": "reply"}, "normal"),
        ({"priority": "low", "kind": "system"}, "low"),
    ],
)
async def test_priority_from_request_or_kind(api, payload, priority) -> None:
    url, _ = api
    status, body = await _post(
        url, "/v1/messages", json={"bot_id": 111, "chat_id": 5, "text": "x", **payload}
    )
    assert (status, body["priority"]) == (202, priority)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"chat_id": 5, "text": "hi"}, "bot_id"),
        ({"bot_id": 111, "chat_id": 5, "text": 42}, "text"),
        ({"bot_id": 111, "chat_id": 5, "text": ""}, "text"),
        ({"bot_id": 111, "chat_id": 5}, "text"),
        ({"bot_id": 111, "text": "hi"}, "chat_id"),
        ({"bot_id": 111, "chat_id": 5, "text": "hi", "priority": "urgent"}, "priority"),
        ({"bot_id": 111, "chat_id": 5, "text": "hi", "colour": "red"}, "colour"),
        ({"bot_id": 111, "method": "sendPhoto", "params": {"photo": "x"}}, "params.chat_id"),
        ({"bot_id": 111, "chat_id": 5, "text": "hi", "send_at": "tomorrow"}, "send_at"),
    ],
)
async def test_invalid_body_names_the_field(api, payload, field) -> None:
    url, ctx = api
    status, body = await _post(url, "/v1/messages", json=payload)
    assert status == 422
    assert field in body["error"]
    assert await _queued(ctx) == 0


async def test_unknown_bot_is_404(api) -> None:
    url, ctx = api
    status, body = await _post(
        url, "/v1/messages", json={"bot_id": 999, "chat_id": 5, "text": "hi"}
    )
    assert status == 404
    assert "999" in body["error"]
    assert await _queued(ctx) == 0


async def test_invalid_json_is_422(api) -> None:
    url, ctx = api
    status, body = await _post(
        url, "/v1/messages", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 422
    assert "invalid JSON" in body["error"]
    status, body = await _post(url, "/v1/messages", json=[1, 2])
    assert (status, "JSON object" in body["error"]) == (422, True)
    assert await _queued(ctx) == 0


async def test_five_megabyte_body_is_413(api) -> None:
    url, ctx = api
    big = b'{"bot_id": 111, "chat_id": 5, "text": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    status, body = await _post(
        url, "/v1/messages", data=io.BytesIO(big), headers={"Content-Type": "application/json"}
    )
    assert status == 413
    assert "too large" in body["error"]
    assert await _queued(ctx) == 0


async def test_idempotency_key_queues_once(api) -> None:
    url, ctx = api
    msg = {"bot_id": 111, "chat_id": 5, "text": "pay", "idempotency_key": "order-1"}
    _, first = await _post(url, "/v1/messages", json=msg)
    status, second = await _post(url, "/v1/messages", json=msg)
    assert status == 202
    assert second["id"] == first["id"]
    assert second.get("duplicate") is True
    _, other_bot = await _post(url, "/v1/messages", json={**msg, "bot_id": 222})
    assert other_bot["id"] != first["id"]
    assert await _queued(ctx) == 2


async def test_batch_results_in_order(api) -> None:
    url, ctx = api
    messages = [
        {"bot_id": 111, "chat_id": 1, "text": "a"},
        {"bot_id": 111, "chat_id": 1},
        {"bot_id": 999, "chat_id": 1, "text": "c"},
        {
            "bot_id": 222,
            "method": "sendPhoto",
            "params": {"chat_id": 2, "photo": "https://x/y.jpg"},
        },
    ]
    status, body = await _post(url, "/v1/messages/batch", json={"messages": messages})
    assert status == 202
    results = body["results"]
    assert [r["status"] for r in results] == ["queued", "rejected", "rejected", "queued"]
    assert (results[1]["code"], results[2]["code"]) == (422, 404)
    assert "text" in results[1]["error"]
    assert await _queued(ctx) == 2


async def test_batch_over_limit_is_422(api) -> None:
    url, _ = api
    msgs = [{"bot_id": 111, "chat_id": 1, "text": "a"}] * 1001
    status, body = await _post(url, "/v1/messages/batch", json={"messages": msgs})
    assert status == 422
    assert "messages" in body["error"]


async def test_unknown_id_is_404(api) -> None:
    url, _ = api
    async with aiohttp.ClientSession(headers=AUTH) as s, s.get(f"{url}/v1/messages/nope") as resp:
        assert resp.status == 404


async def test_redis_unreachable_is_503(namespace: str) -> None:
    ctx = _ctx(f"redis://127.0.0.1:{free_port()}/0", namespace)
    async with serving(ctx, [IngestService(ctx, IngestSettings())]) as url:
        status, body = await _post(
            url, "/v1/messages", json={"bot_id": 111, "chat_id": 5, "text": "hi"}
        )
        assert status == 503
        assert "nothing was accepted" in body["error"]
        async with aiohttp.ClientSession(headers=AUTH) as s, s.get(f"{url}/readyz") as resp:
            assert resp.status == 503
    await ctx.close()
