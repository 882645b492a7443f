"""Hostile requests get a 4xx JSON answer naming the field, never a 500; chats have one spelling."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.ingest.webhook import SECRET_HEADER
from shared.context import Context, build_context
from shared.logs import JsonFormatter, quiet_malformed_requests
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, raw_http, serving

pytestmark = pytest.mark.timeout(60)


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"chat_id": 5}
    inner = doc
    for _ in range(depth):
        inner["x"] = {}
        inner = inner["x"]
    return doc


def _photo(params: dict[str, Any]) -> dict[str, Any]:
    return {"bot_id": 111, "method": "sendPhoto", "params": {"photo": "p", **params}}


def _text(**fields: Any) -> dict[str, Any]:
    return {"bot_id": 111, "chat_id": 5, "text": "hi", **fields}


REFUSED = [
    (_text(bot_id=True), "bot_id"),
    (_text(bot_id="111"), "bot_id"),
    (_text(bot_id=1.5), "bot_id"),
    (_text(bot_id=-111), "bot_id"),
    (_text(chat_id="drop table"), "chat_id"),
    (_text(chat_id=0), "chat_id"),
    (_text(chat_id="0"), "chat_id"),
    (_text(chat_id=True), "chat_id"),
    (_text(chat_id=2**63), "chat_id"),
    (_text(chat_id=-(2**63) - 1), "chat_id"),
    (_text(chat_id="555001:normal|x"), "chat_id"),
    (_text(chat_id="@a|b"), "chat_id"),
    (_text(chat_id="@x"), "chat_id"),
    (_text(chat_id=[5]), "chat_id"),
    (_text(text="nul\x00byte"), "text"),
    (_text(idempotency_key="k\x00"), "idempotency_key"),
    (_text(reply_to_message_id="5"), "reply_to_message_id"),
    (_text(send_at="9999-12-31T00:00:00Z"), "send_at"),
    (_text(send_at=1e12), "send_at"),
    (_text(send_at=1_700_000_000_000), "send_at"),
    (_text(send_at="1700000000"), "send_at"),
    (_text(send_at="2026-11-28T12:00:00"), "send_at"),
    (_text(send_at=True), "send_at"),
    (_photo({"chat_id": {"a": 1}}), "params"),
    (_photo({"chat_id": "drop table"}), "params"),
    (_photo({"chat_id": 5, "from_chat_id": [1]}), "params"),
    (_photo({"chat_id": 5, "caption": "a\x00b"}), "params"),
    (_photo({"chat_id": 5, "reply_parameters": "abc"}), "params"),
    (_photo({"chat_id": 5, "x": "y" * 300_000}), "params"),
    ({"bot_id": 111, "method": "sendPhoto", "params": _nested(300)}, "params"),
]


@pytest.fixture(params=["redis", "memory"])
async def api(request, redis_url, namespace, redis_client) -> AsyncIterator[tuple[str, Context]]:
    settings = CommonSettings(
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        REDIS_URL=redis_url if request.param == "redis" else None,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
    )
    ctx = build_context(settings, allow_memory=True)
    async with serving(ctx, [IngestService(ctx, IngestSettings())]) as url:
        yield url, ctx
    await ctx.close()


async def _call(method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(headers=AUTH) as s, s.request(method, url, **kwargs) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def _queued(ctx: Context) -> int:
    return (await ctx.broker.depths([ctx.keys.ingest], []))[ctx.keys.ingest]


def _fields(doc: dict[str, Any]) -> list[str]:
    return [e["field"] for e in doc["errors"]]


@pytest.mark.parametrize(("payload", "field"), REFUSED, ids=range(len(REFUSED)))
async def test_hostile_message_is_422_naming_the_field(api, payload, field) -> None:
    url, ctx = api
    status, doc = await _call("POST", f"{url}/v1/messages", data=json.dumps(payload))
    assert status == 422, doc
    assert any(f == field or f.startswith(f"{field}.") for f in _fields(doc)), doc
    assert await _queued(ctx) == 0


async def test_one_bad_item_fails_only_its_slot(api) -> None:
    url, ctx = api
    batch = [
        _text(),
        _photo({"chat_id": 5, "reply_parameters": "abc"}),
        _photo({"chat_id": 5, "reply_parameters": {"message_id": 3}}),
        {"bot_id": 111, "method": "sendPhoto", "params": _nested(300)},
        _text(chat_id="7"),
    ]
    status, doc = await _call(
        "POST", f"{url}/v1/messages/batch", data=json.dumps({"messages": batch})
    )
    assert status == 202, doc
    statuses = [r["status"] for r in doc["results"]]
    assert statuses == ["queued", "rejected", "queued", "rejected", "queued"]
    assert await _queued(ctx) == 3


async def test_aliases_of_a_chat_share_one_spelling(api) -> None:
    """A private chat addressed as "5" is chat 5 (limited as a private chat, under 5's key);
    @Channel and @channel are one channel."""
    url, ctx = api
    for chat in (5, "5", "@Channel", "@channel"):
        status, _ = await _call("POST", f"{url}/v1/messages", json=_text(chat_id=chat))
        assert status == 202
    status, _ = await _call(
        "POST", f"{url}/v1/messages", json=_photo({"chat_id": "-1001", "from_chat_id": "@Source"})
    )
    assert status == 202
    await ctx.broker.ensure_group(ctx.keys.ingest, "check")
    entries = await ctx.broker.read([ctx.keys.ingest], "check", "c", 10, None)
    params = [orjson.loads(e.payload)["params"] for e in entries]
    assert [p["chat_id"] for p in params] == [5, 5, "@channel", "@channel", -1001]
    assert params[-1]["from_chat_id"] == "@source"
    assert [e.seq for e in entries] == [1, 2, 1, 2, 1], "aliases share one order"


async def test_send_at_as_unix_seconds_is_read_as_seconds(api) -> None:
    url, _ = api
    status, doc = await _call("POST", f"{url}/v1/messages", json=_text(send_at=1_700_000_000))
    assert status == 202, doc


async def test_send_at_horizon_is_configurable(redis_url, namespace, redis_client) -> None:
    settings = CommonSettings(
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=TOKENS[111],
    )
    ctx = build_context(settings, allow_memory=False)
    ingest = IngestSettings(FLOODGATE_MAX_SEND_AT_HORIZON=60)
    async with serving(ctx, [IngestService(ctx, ingest)]) as url:
        later = _text(send_at=f"{2100 + 0}-01-01T00:00:00Z")
        status, doc = await _call("POST", f"{url}/v1/messages", json=later)
        assert (status, _fields(doc)) == (422, ["send_at"])
    await ctx.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/webhook/telegram/%C2%B2", 401),
        ("POST", "/webhook/telegram/-1", 401),
        ("GET", "/v1/messages/%00%7C%7B", 404),
        ("GET", "/no/such/route", 404),
        ("DELETE", "/v1/messages", 405),
    ],
)
async def test_odd_paths_answer_json(api, method, path, status) -> None:
    url, _ = api
    got, doc = await _call(method, url + path, data=b"{}")
    assert got == status
    assert doc["errors"]


async def test_secret_header_of_any_bytes_is_401(api) -> None:
    url, _ = api
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"update_id": 1}'
    writer.write(
        b"POST /webhook/telegram/111 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + SECRET_HEADER.encode()
        + b": \xff\xfe\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    raw = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    head, _, answer = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"401", raw
    assert orjson.loads(answer)["errors"]


async def test_record_of_a_message_far_ahead_outlives_its_send_at(
    redis_url, namespace, redis_client
) -> None:
    """A record must not expire while its message still waits for its time."""
    settings = CommonSettings(
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=TOKENS[111],
    )
    ctx = build_context(settings, allow_memory=False)
    async with serving(ctx, [IngestService(ctx, IngestSettings())]) as url:
        later = time.time() + 30 * 86400
        status, doc = await _call("POST", f"{url}/v1/messages", json=_text(send_at=later))
        assert status == 202, doc
        ttl = await redis_client.ttl(ctx.keys.record(doc["id"]))
        assert ttl > 30 * 86400 + settings.record_ttl - 60
    await ctx.close()


async def test_thousands_of_bad_fields_get_a_short_answer(api) -> None:
    """A batch whose messages carry thousands of unknown fields each is answered in a few
    kilobytes, each message refused in its slot, not with an answer ten times the request."""
    url, ctx = api
    junk = {f"k{i}": 0 for i in range(5000)}
    batch = [{**_text(), **junk} for _ in range(20)] + [_text()]
    body = json.dumps({"messages": batch}).encode()
    async with (
        aiohttp.ClientSession(headers=AUTH) as s,
        s.post(f"{url}/v1/messages/batch", data=io.BytesIO(body)) as resp,
    ):
        raw = await resp.read()
    assert resp.status == 202
    assert len(raw) < 20_000 < len(body)
    results = orjson.loads(raw)["results"]
    assert [r["status"] for r in results] == ["rejected"] * 20 + ["queued"]
    assert "5003 fields" in results[0]["error"]
    assert await _queued(ctx) == 1


async def test_a_message_wrong_everywhere_lists_ten_errors_and_the_count(api) -> None:
    url, ctx = api
    wrong = {
        "bot_id": "x",
        "chat_id": [5],
        "text": 5,
        "method": 5,
        "params": 5,
        "priority": 5,
        "kind": 5,
        "reply_to_message_id": "x",
        "parse_mode": 5,
        "disable_notification": "x",
        "idempotency_key": 5,
        "send_at": "x",
    }
    status, doc = await _call("POST", f"{url}/v1/messages", data=json.dumps(wrong))
    assert status == 422
    assert len(doc["errors"]) == 11
    assert doc["errors"][-1]["reason"].startswith("and ")
    assert doc["errors"][-1]["reason"].endswith(" more errors")
    assert doc["error"].count(";") == 10
    assert await _queued(ctx) == 0


@pytest.mark.parametrize("bot_id", [[111], {"a": 1}], ids=["list", "object"])
async def test_batch_item_with_a_bot_id_of_no_number_fails_its_slot(api, bot_id) -> None:
    url, ctx = api
    batch = [_text(bot_id=bot_id), _text()]
    status, doc = await _call(
        "POST", f"{url}/v1/messages/batch", data=json.dumps({"messages": batch})
    )
    assert status == 202, doc
    assert [r["status"] for r in doc["results"]] == ["rejected", "queued"]
    assert await _queued(ctx) == 1


async def _raw_answer(url: str, request: bytes) -> tuple[bytes, dict[str, Any]]:
    raw = await raw_http(url, [request])
    head, _, answer = raw.partition(b"\r\n\r\n")
    return head.split(b" ", 2)[1], orjson.loads(answer)


async def test_authorization_of_any_bytes_is_401(api) -> None:
    url, ctx = api
    body = json.dumps(_text()).encode()
    status, doc = await _raw_answer(
        url,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert status == b"401", doc
    assert doc["errors"]
    assert await _queued(ctx) == 0


async def test_webhook_bot_id_of_thousands_of_digits_is_401(api) -> None:
    url, _ = api
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/webhook/telegram/{'1' * 5000}", json={"update_id": 1}) as resp,
    ):
        assert resp.status == 401
        assert (await resp.json())["errors"]


async def test_a_request_aiohttp_cannot_parse_is_logged_without_its_text(api, caplog) -> None:
    """A header aiohttp refuses to parse is quoted in the traceback it logs: a webhook secret
    or an admin key in it would reach the log, which no pattern can redact."""
    url, _ = api
    quiet_malformed_requests()
    caplog.set_level(logging.INFO)
    secret = "S3cr3tOfAnyShapeThatNoPatternKnows"
    request = (
        f"POST /webhook/telegram/111 HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {secret}\x01\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    ).encode()
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    raw = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    assert raw.split(b" ", 2)[1] == b"400"
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert server, "aiohttp logged nothing: the test no longer reaches its parser's error"
    for record in server:
        assert record.levelno == logging.INFO
        assert record.exc_info is None
        assert secret not in JsonFormatter().format(record)
    assert secret not in caplog.text
