"""The drop-in Bot API endpoint in process: hostile requests get Telegram's error shape, bounded
and without the token; passed-through calls reach a stand-in Bot API unchanged, a 429 there is
waited out, and error pages echoing the token are redacted."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis
import yarl
from aiohttp import web

from services.ingest.app import IngestService
from services.ingest.passthrough import REPLAYABLE_BYTES
from services.ingest.settings import IngestSettings
from shared.context import Context, build_context
from shared.runtime import serve
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, TOKENS, eventually, free_port, serving
from tests.procs import RedisServer

pytestmark = pytest.mark.timeout(60)

TOKEN = TOKENS[111]
SECRET_PART = TOKEN.split(":", 1)[1]


@dataclass
class Upstream:
    """A stand-in Bot API that records what it was asked."""

    url: str
    calls: list[tuple[str, str, bytes, str]] = field(default_factory=list)
    throttle: int = 0  # answer this many calls 429 first
    receiving: list[str] = field(default_factory=list)  # methods whose body is being read


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream("")

    async def method(request: web.Request) -> web.StreamResponse:
        state.receiving.append(request.match_info["method"])
        body = await request.read()
        state.calls.append((request.method, request.path_qs, body, request.content_type))
        name = request.match_info["method"]
        if state.throttle:
            state.throttle -= 1
            doc = {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
            }
            return web.json_response({**doc, "parameters": {"retry_after": 1}}, status=429)
        if name == "getUpdates" and "dropin" not in request.query:
            await asyncio.sleep(1)  # floodgate's own poller: nothing new
            return web.json_response({"ok": True, "result": []})
        if name == "getSlow":
            await asyncio.sleep(1.5)
        if name == "getBroken":
            return web.Response(status=502, text=f"<html>bad gateway at {request.path}</html>")
        return web.json_response({"ok": True, "result": {"method": name}})

    async def file(request: web.Request) -> web.Response:
        if request.match_info["path"] == "moved.jpg":
            raise web.HTTPFound("/_sandbox/messages")
        if request.match_info["path"] == "gone.jpg":
            return web.Response(status=404, text=f"no such file at {request.path}")
        if state.throttle:
            state.throttle -= 1
            state.calls.append((request.method, request.path_qs, b"", "429"))
            doc = {"ok": False, "error_code": 429, "description": "Too Many Requests"}
            return web.json_response({**doc, "parameters": {"retry_after": 1}}, status=429)
        return web.Response(body=b"file bytes " + request.match_info["path"].encode())

    async def private(request: web.Request) -> web.Response:
        state.calls.append((request.method, request.path_qs, b"", ""))
        return web.Response(text="every message ever sent")

    app = web.Application(client_max_size=8 * REPLAYABLE_BYTES)
    app.router.add_route("*", "/bot{token}/{method}", method)
    app.router.add_get("/file/bot{token}/{path:.+}", file)
    app.router.add_get("/_sandbox/messages", private)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def api(upstream: Upstream, namespace: str) -> AsyncIterator[tuple[str, Context]]:
    settings = CommonSettings(
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        TELEGRAM_API_BASE=upstream.url,
    )
    ctx = build_context(settings, allow_memory=True)
    ingest = IngestSettings(
        FLOODGATE_MAX_BODY_BYTES=4096,
        FLOODGATE_PROXY_WAIT=5,
        FLOODGATE_PROXY_MAX_BODY_BYTES=2 * REPLAYABLE_BYTES,
    )
    service = IngestService(ctx, ingest)
    async with serving(ctx, [service]) as url:
        yield url, ctx
    await service._botapi.passthrough.close()
    await ctx.close()


async def _call(verb: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.request(verb, url, **kwargs) as resp:
        text = await resp.text()
        assert SECRET_PART not in text
        return resp.status, orjson.loads(text)


def _upload() -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("chat_id", "5")
    form.add_field("photo", b"\x89PNG...", filename="a.png", content_type="image/png")
    return form


def _many() -> dict[str, str]:
    return {f"p{i}": "x" for i in range(101)}


REFUSED = [
    ("json array", {"data": b"[1]", "headers": {"Content-Type": "application/json"}}, 400),
    ("not json", {"data": b"{", "headers": {"Content-Type": "application/json"}}, 400),
    ("too large", {"json": {"chat_id": 5, "text": "x" * 5000}}, 413),
    ("strange type", {"data": b"x", "headers": {"Content-Type": "text/csv"}}, 400),
    (
        "not utf-8 form",
        {"data": b"text=\xff", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        400,
    ),
    ("file upload", {"data": _upload()}, 400),
    ("too many params", {"json": _many()}, 400),
    ("bad param name", {"json": {"chat_id": 5, "te xt": "a"}}, 400),
    ("bad chat", {"json": {"chat_id": "drop table", "text": "a"}}, 400),
    ("nul", {"json": {"chat_id": 5, "text": "a\x00"}}, 400),
    (
        "priority",
        {"json": {"chat_id": 5, "text": "a"}, "headers": {"X-Floodgate-Priority": "now"}},
        400,
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "status"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_hostile_sends_get_telegrams_error_shape(
    api: tuple[str, Context], case: str, kwargs: dict[str, Any], status: int
) -> None:
    url, _ = api
    got, doc = await _call("POST", f"{url}/bot{TOKEN}/sendMessage", **kwargs)
    assert got == status, doc
    assert doc["ok"] is False
    assert doc["error_code"] == status
    assert isinstance(doc["description"], str)
    assert doc["description"]


@pytest.mark.parametrize(
    "token",
    [
        f"111:{'Z' * 35}",  # a configured bot, another secret
        f"999:{SECRET_PART}",  # the secret under another bot id
        "111",
        "garbage",
        f"\u0661\u0661\u0661:{SECRET_PART}",  # the bot id in other digits
        f"111:{SECRET_PART[:-1]}\u00e9",
    ],
)
async def test_tokens_other_than_the_configured_ones_get_401(
    api: tuple[str, Context], upstream: Upstream, token: str
) -> None:
    url, _ = api
    for path in (f"/bot{token}/getMe", f"/bot{token}/sendMessage", f"/file/bot{token}/a/b.jpg"):
        status, doc = await _call("GET", f"{url}{path}")
        assert (status, doc) == (
            401,
            {"ok": False, "error_code": 401, "description": "Unauthorized"},
        )
    assert upstream.calls == []


async def test_other_methods_pass_through_unchanged(
    api: tuple[str, Context], upstream: Upstream
) -> None:
    url, _ = api
    status, doc = await _call("GET", f"{url}/bot{TOKEN}/getMe")
    assert (status, doc) == (200, {"ok": True, "result": {"method": "getMe"}})
    form = {"url": "https://example.invalid/hook", "max_connections": "10"}
    status, doc = await _call("POST", f"{url}/bot{TOKEN}/setWebhook?secret_token=s", data=form)
    assert status == 200
    verb, path, body, content_type = upstream.calls[-1]
    assert (verb, path) == ("POST", f"/bot{TOKEN}/setWebhook?secret_token=s")
    assert content_type == "application/x-www-form-urlencoded"
    assert body == b"url=https%3A%2F%2Fexample.invalid%2Fhook&max_connections=10"


async def test_a_429_is_waited_out_not_passed_on(
    api: tuple[str, Context], upstream: Upstream
) -> None:
    url, _ = api
    upstream.throttle = 1
    status, doc = await _call("POST", f"{url}/bot{TOKEN}/getChat", json={"chat_id": 5})
    assert (status, doc["ok"]) == (200, True)
    assert len(upstream.calls) == 2


async def test_an_error_page_echoing_the_token_is_redacted(
    api: tuple[str, Context], upstream: Upstream
) -> None:
    url, _ = api
    status, doc = await _call("GET", f"{url}/bot{TOKEN}/getBroken")
    assert status == 502
    assert doc["ok"] is False
    assert doc["error_code"] == 502
    assert "bad gateway" in doc["description"]


async def test_files_are_streamed_from_the_bot_api(api: tuple[str, Context]) -> None:
    url, _ = api
    async with aiohttp.ClientSession() as s, s.get(f"{url}/file/bot{TOKEN}/photos/a.jpg") as resp:
        assert resp.status == 200
        assert await resp.read() == b"file bytes photos/a.jpg"


async def test_a_send_is_queued_with_its_form_values_decoded(api: tuple[str, Context]) -> None:
    url, ctx = api
    markup = '{"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}'
    form = {"chat_id": "5", "text": "[not json]", "reply_markup": markup}
    async with aiohttp.ClientSession() as s:
        # nothing delivers here: the request waits, so the client gives up after a moment
        with pytest.raises(TimeoutError):
            async with s.post(
                f"{url}/bot{TOKEN}/sendMessage",
                data=form,
                timeout=aiohttp.ClientTimeout(total=1),
            ):
                pass
    await ctx.broker.ensure_group(ctx.keys.ingest, "test")  # at id 0: sees what came before
    entries = await ctx.broker.read([ctx.keys.ingest], "test", "t", 10, None)
    assert len(entries) == 1
    envelope = orjson.loads(entries[0].payload)
    assert envelope["method"] == "sendMessage"
    assert envelope["keep_result"] is True
    assert envelope["params"] == {
        "chat_id": 5,
        "text": "[not json]",
        "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]},
    }


@pytest.mark.parametrize(
    "path",
    [
        "%252e%252e/%252e%252e/_sandbox/messages",  # decoded once: %2e%2e, which is ..
        "%2e%2e/%2e%2e/_sandbox/messages",
        "a/%252E%252E/%252E%252E/%252E%252E/_sandbox/messages",
        "a.jpg%253Fx=1",  # a query of one's own
        "a.jpg%3Fx=1",
        "a.jpg%23x",
        "a%5C..%5C..%5C_sandbox",
        "a//b.jpg",
        "./a.jpg",
        "a/%00.jpg",
    ],
)
async def test_file_paths_reach_nothing_but_the_bots_files(
    api: tuple[str, Context], upstream: Upstream, path: str
) -> None:
    url, _ = api
    async with (
        aiohttp.ClientSession() as s,
        s.get(yarl.URL(f"{url}/file/bot{TOKEN}/{path}", encoded=True)) as resp,
    ):
        text = await resp.text()
    assert resp.status == 404, text
    assert orjson.loads(text) == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert upstream.calls == []


async def test_a_redirect_of_the_bot_api_is_not_followed(
    api: tuple[str, Context], upstream: Upstream
) -> None:
    url, _ = api
    status, doc = await _call("GET", f"{url}/file/bot{TOKEN}/moved.jpg")
    assert status == 502
    assert doc["ok"] is False
    assert upstream.calls == []


@pytest.fixture
async def guarded(upstream: Upstream, namespace: str) -> AsyncIterator[str]:
    """Bot 222 gets its updates by floodgate's webhook, 333 by floodgate's polling, 111 itself."""
    settings = CommonSettings(
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        TELEGRAM_API_BASE=upstream.url,
    )
    ctx = build_context(settings, allow_memory=True)
    ingest = IngestSettings(
        FLOODGATE_PROXY_WAIT=5,
        FLOODGATE_WEBHOOK_SECRETS="222=secret-of-222",
        FLOODGATE_POLLING_BOTS="333",
        FLOODGATE_POLL_TIMEOUT=1,
    )
    service = IngestService(ctx, ingest)
    async with serving(ctx, [service]) as url:
        yield url
    await ctx.close()


def _dropin_calls(upstream: Upstream) -> list[str]:
    return [path for _, path, _, _ in upstream.calls if "dropin" in path]


@pytest.mark.parametrize("method", ["logOut", "close", "LOGOUT"])
async def test_ending_the_bots_session_is_refused(
    guarded: str, upstream: Upstream, method: str
) -> None:
    for token in TOKENS.values():
        status, doc = await _call("POST", f"{guarded}/bot{token}/{method}?dropin=1")
        assert status == 403
        assert doc["error_code"] == 403
        assert "floodgate owns this bot's session" in doc["description"]
    assert _dropin_calls(upstream) == []


@pytest.mark.parametrize("method", ["getUpdates", "setWebhook", "deleteWebhook"])
async def test_reading_updates_floodgate_takes_is_refused(
    guarded: str, upstream: Upstream, method: str
) -> None:
    for bot in (222, 333):
        status, doc = await _call("POST", f"{guarded}/bot{TOKENS[bot]}/{method}?dropin=1")
        assert status == 409, doc
        assert doc["error_code"] == 409
        assert "read them from floodgate" in doc["description"]
    assert _dropin_calls(upstream) == []
    # a bot that reads its updates itself still may
    status, doc = await _call("POST", f"{guarded}/bot{TOKENS[111]}/{method}?dropin=1")
    assert (status, doc["ok"]) == (200, True)
    assert len(_dropin_calls(upstream)) == 1


def _multipart(parts: list[tuple[str, str]], boundary: str = "b0undary") -> bytes:
    """A multipart body of (headers, value) parts, written by hand to be as odd as wanted."""
    body = b"".join(
        f"--{boundary}\r\n{headers}\r\n\r\n{value}\r\n".encode() for headers, value in parts
    )
    return body + f"--{boundary}--\r\n".encode()


async def _chunked(body: bytes) -> AsyncIterator[bytes]:
    """The body without a Content-Length, in pieces."""
    for start in range(0, len(body), 1000):
        yield body[start : start + 1000]


MULTIPART = {"Content-Type": "multipart/form-data; boundary=b0undary"}


async def test_repeated_multipart_names_are_refused(
    api: tuple[str, Context], upstream: Upstream
) -> None:
    url, _ = api
    same = [('Content-Disposition: form-data; name="a"', "")] * 60  # under the size limit
    status, doc = await _call(
        "POST", f"{url}/bot{TOKEN}/editMessageText", data=_multipart(same), headers=MULTIPART
    )
    assert status == 400, doc
    assert "a" in doc["description"]
    assert upstream.calls == []


async def test_multipart_headers_count_against_the_body_limit(
    api: tuple[str, Context], upstream: Upstream
) -> None:
    url, _ = api  # FLOODGATE_MAX_BODY_BYTES=4096
    padded = [
        (f'Content-Disposition: form-data; name="p{n}"\r\nX-Pad: {"x" * 1000}', "")
        for n in range(20)
    ]
    for data in (_multipart(padded), _chunked(_multipart(padded))):
        status, doc = await _call(
            "POST", f"{url}/bot{TOKEN}/editMessageText", data=data, headers=MULTIPART
        )
        assert status == 413, doc
        assert doc["error_code"] == 413
    assert upstream.calls == []


BIG = "99999999999999999999"  # 20 digits: over 64 bits


@pytest.mark.parametrize(
    ("method", "form"),
    [
        ("sendMessage", {"chat_id": "5", "text": "a", "reply_to_message_id": BIG}),
        ("editMessageText", {"inline_message_id": "x", "text": "a", "message_id": BIG}),
        ("sendMessage", {"chat_id": "5", "text": "a", "message_thread_id": f"-{BIG}"}),
    ],
)
async def test_integers_over_64_bits_are_a_400(
    api: tuple[str, Context], upstream: Upstream, method: str, form: dict[str, str]
) -> None:
    url, _ = api
    status, doc = await _call("POST", f"{url}/bot{TOKEN}/{method}", data=form)
    assert status == 400, doc
    assert doc["error_code"] == 400
    assert upstream.calls == []


@pytest.mark.parametrize(
    "headers",
    [
        'Content-Disposition: form-data; name="a"\r\nno colon here',
        f'Content-Disposition: form-data; name="a"\r\nX-Long: {"x" * 9000}',
        f'Content-Disposition: form-data; name="{"a" * 9000}"',
    ],
    ids=["malformed", "long header", "long name"],
)
async def test_broken_part_headers_are_a_400(
    api: tuple[str, Context], upstream: Upstream, headers: str
) -> None:
    url, _ = api
    body = _multipart([(headers, "x")])
    status, doc = await _call(
        "POST",
        f"{url}/bot{TOKEN}/editMessageText",
        data=_chunked(body),  # no Content-Length: the size check does not refuse it first
        headers=MULTIPART,
    )
    assert status == 400, doc
    assert doc["error_code"] == 400
    assert upstream.calls == []


async def test_a_json_integer_over_the_signed_64_bit_range_is_a_400(
    api: tuple[str, Context],
) -> None:
    url, _ = api
    body = b'{"chat_id": 5, "text": "a", "reply_to_message_id": 18446744073709551615}'
    status, doc = await _call(
        "POST",
        f"{url}/bot{TOKEN}/sendMessage",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400, doc
    assert "64 bits" in doc["description"]


async def test_a_download_waits_out_a_429(api: tuple[str, Context], upstream: Upstream) -> None:
    url, _ = api
    upstream.throttle = 1
    async with aiohttp.ClientSession() as s, s.get(f"{url}/file/bot{TOKEN}/a/b.jpg") as resp:
        assert resp.status == 200
        assert await resp.read() == b"file bytes a/b.jpg"
    assert len(upstream.calls) == 1  # the 429


async def test_a_failed_download_answers_in_telegrams_shape(api: tuple[str, Context]) -> None:
    url, _ = api
    status, doc = await _call("GET", f"{url}/file/bot{TOKEN}/gone.jpg")
    assert status == 404
    assert doc["ok"] is False
    assert doc["error_code"] == 404
    assert "no such file" in doc["description"]


@pytest.mark.parametrize(
    ("verb", "path"),
    [
        ("GET", f"/bot{TOKEN}"),
        ("GET", f"/bot{TOKEN}/"),
        ("PUT", f"/bot{TOKEN}/getMe"),
        ("DELETE", f"/file/bot{TOKEN}/a.jpg"),
        ("GET", f"/bot{TOKEN}/get/Me"),
        ("GET", "/bot"),
        ("GET", f"/file/bot{TOKEN}"),
    ],
)
async def test_unrouted_bot_api_paths_are_telegrams_404(
    api: tuple[str, Context], upstream: Upstream, verb: str, path: str
) -> None:
    url, _ = api
    status, doc = await _call(verb, f"{url}{path}")
    assert (status, doc) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})
    assert upstream.calls == []


@pytest.mark.parametrize(
    ("query", "form"),
    [
        ("?text=%ff%fe", {"inline_message_id": "x"}),
        ("", "inline_message_id=x&text=%ff%fe"),
        ("?inline_message_id=x&te%ffxt=a", {}),
    ],
)
async def test_invalid_utf_8_in_query_or_form_is_a_400(
    api: tuple[str, Context], upstream: Upstream, query: str, form: Any
) -> None:
    url, _ = api
    status, doc = await _call(
        "POST",
        yarl.URL(f"{url}/bot{TOKEN}/editMessageText{query}", encoded=True),
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400, doc
    assert doc["error_code"] == 400
    assert upstream.calls == []


async def test_a_queued_message_is_never_answered_retry_later(upstream: Upstream) -> None:
    """Redis goes away while the request waits: the message is queued already, so the answer
    must not invite the client to send it again (a 503 would)."""
    server = RedisServer(appendonly=False)
    server.start()
    try:
        settings = CommonSettings(
            FLOODGATE_ADMIN_KEY=ADMIN_KEY,
            FLOODGATE_NAMESPACE=f"botapi{secrets.token_hex(4)}",
            FLOODGATE_BOTS=",".join(TOKENS.values()),
            TELEGRAM_API_BASE=upstream.url,
            REDIS_URL=server.url,
        )
        ctx = build_context(settings, allow_memory=False)
        service = IngestService(ctx, IngestSettings(FLOODGATE_PROXY_WAIT=2))
        async with serving(ctx, [service]) as url:
            form = {"chat_id": "5", "text": "queued once"}
            waiting = asyncio.ensure_future(
                _call("POST", f"{url}/bot{TOKEN}/sendMessage", data=form)
            )
            probe = redis.Redis.from_url(server.url)
            try:

                async def queued() -> bool:
                    return bool(await probe.xlen(ctx.keys.ingest))

                await eventually(queued, 10)
            finally:
                await probe.aclose()
            server.stop(hard=True)
            status, doc = await waiting
        await ctx.close()
    finally:
        server.cleanup()
    assert status == 502, doc
    assert "stays queued" in doc["description"]


async def test_a_call_under_way_at_shutdown_is_answered(upstream: Upstream, namespace: str) -> None:
    """Stopping ingest while a passed-through call waits for the Bot API: the call still gets
    the Bot API's answer within the site's shutdown window (the pool closes after it)."""
    settings = CommonSettings(
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        TELEGRAM_API_BASE=upstream.url,
    )
    ctx = build_context(settings, allow_memory=True)
    service = IngestService(ctx, IngestSettings(FLOODGATE_PROXY_WAIT=5))
    port, stop = free_port(), asyncio.Event()
    served = asyncio.ensure_future(serve(ctx, [service], "127.0.0.1", port, stop))
    url = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        try:
            status, _ = await _call("GET", f"{url}/healthz")
        except aiohttp.ClientConnectionError:
            return False
        return status == 200

    await eventually(healthy, 10)
    call = asyncio.ensure_future(_call("GET", f"{url}/bot{TOKEN}/getSlow"))

    async def arrived() -> bool:
        return any("getSlow" in path for _, path, _, _ in upstream.calls)

    await eventually(arrived, 10)
    stop.set()
    status, doc = await call
    assert (status, doc) == (200, {"ok": True, "result": {"method": "getSlow"}})
    assert await served == 0


async def test_a_large_body_is_passed_on_as_it_arrives(
    api: tuple[str, Context], upstream: Upstream
) -> None:
    url, _ = api

    async def upload() -> AsyncIterator[bytes]:
        yield b"x" * (REPLAYABLE_BYTES + 1)

        async def receiving() -> bool:
            return "setChatPhoto" in upstream.receiving

        await eventually(receiving, 10)  # the Bot API reads it before the client is done
        yield b"end"

    headers = {"Content-Type": "application/octet-stream"}
    status, doc = await _call(
        "POST", f"{url}/bot{TOKEN}/setChatPhoto", data=upload(), headers=headers
    )
    assert (status, doc) == (200, {"ok": True, "result": {"method": "setChatPhoto"}})
    assert upstream.calls[-1][2] == b"x" * (REPLAYABLE_BYTES + 1) + b"end"


async def test_a_streamed_body_over_the_limit_is_a_413(
    api: tuple[str, Context], upstream: Upstream
) -> None:
    url, _ = api  # FLOODGATE_PROXY_MAX_BODY_BYTES=2 MiB

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * REPLAYABLE_BYTES

    headers = {"Content-Type": "application/octet-stream"}
    status, doc = await _call(
        "POST", f"{url}/bot{TOKEN}/setChatPhoto", data=upload(), headers=headers
    )
    assert status == 413, doc
    assert doc["error_code"] == 413
    assert not any(path.endswith("setChatPhoto") for _, path, _, _ in upstream.calls)
