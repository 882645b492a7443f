"""Bot API calls that are not queued (getMe, getUpdates, getChat, setWebhook, file downloads):
forwarded unchanged to the Bot API with the caller's own token, and answered as it answers.

A 429 is not passed on: the call is made again once Telegram's wait is over, within the proxy
wait; past it the answer is a 502 in Telegram's shape. Error bodies are redacted, since an
upstream error page may echo the request path with the token in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from typing import Any

import aiohttp
import orjson
import yarl
from aiohttp import StreamReader, web

from services.ingest.body import BodyError, read_body
from services.ingest.botapi_request import BotApiError, telegram_error
from shared.redact import redact
from shared.telegram import new_session

log = logging.getLogger("floodgate.ingest.botapi")

FORWARDED_HEADERS = ("Content-Type",)
ANSWER_HEADERS = ("Content-Type", "Content-Length", "Content-Disposition", "Last-Modified")
MAX_FILE_PATH = 512
CHUNK = 64 * 1024
MAX_ERROR_CHARS = 200
REPLAYABLE_BYTES = 1024 * 1024
# Telegram's file paths are like "photos/file_12.jpg": plain segments only. Anything else
# (an encoded dot, a query, a backslash) could make the upstream URL reach another path.
_FILE_PATH = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")


class Passthrough:
    """Forwards calls to ``{base}/bot{token}/{method}`` and ``{base}/file/bot{token}/{path}``."""

    def __init__(self, base: str, wait: float, call_timeout: float, max_body: int) -> None:
        self._base = base.rstrip("/")
        self._wait = wait
        self._timeout = call_timeout
        self._max_body = max_body
        self._session: aiohttp.ClientSession | None = None
        self._under_way = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(256)
        return self._session

    @contextlib.asynccontextmanager
    async def _calling(self) -> AsyncIterator[aiohttp.ClientSession]:
        """The pool for one call, counted so that ``close`` waits for it."""
        if self._closing:
            raise BotApiError(503, "Service Unavailable: shutting down, retry later")
        self._under_way += 1
        self._idle.clear()
        try:
            yield self._client()
        finally:
            self._under_way -= 1
            if not self._under_way:
                self._idle.set()

    async def close(self, grace: float = 0.0) -> None:
        """Take no new calls, let those under way finish within ``grace`` seconds (the HTTP
        site's shutdown window comes after), then release the connection pool."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        if self._session is not None:
            await self._session.close()

    async def forward(
        self, request: web.Request, token: str, method: str, body_seconds: float
    ) -> web.Response:
        """Call ``method`` with the request's query and body; Telegram's answer, unchanged. A
        body up to ``REPLAYABLE_BYTES`` is read first (a 429 can then be waited out); a larger
        or chunked one is passed on as it arrives, counted against the limit, and sent once."""
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        verb, query = request.method, request.query
        if verb != "POST" or not request.body_exists:
            return await self._forward(verb, token, method, query, b"", headers)
        length = request.content_length
        if length is not None and length > self._max_body:
            raise BotApiError(413, f"Request Entity Too Large: body over {self._max_body} bytes")
        if length is not None and length <= REPLAYABLE_BYTES:
            try:
                body = await read_body(request, self._max_body, body_seconds)
            except BodyError as exc:
                raise BotApiError(
                    exc.response.status, "Request Entity Too Large or too slow"
                ) from exc
            return await self._forward(verb, token, method, query, body, headers)
        streamed = StreamedBody(request.content, self._max_body, body_seconds)
        try:
            return await self._forward(verb, token, method, query, streamed, headers)
        except BotApiError:
            if streamed.refused is not None:
                raise streamed.refused from None
            raise

    async def webhook_url(self, token: str) -> str | None:
        """The URL the bot's webhook is set to now (getWebhookInfo), "" for none; None when the
        Bot API does not tell (an error, an odd answer)."""
        try:
            status, answer, _ = await self._call(
                "GET", f"{self._base}/bot{token}/getWebhookInfo", {}, b"", {}
            )
            if status != 200:
                return None
            url = orjson.loads(answer)["result"]["url"]
        except (BotApiError, orjson.JSONDecodeError, KeyError, TypeError):
            return None
        return url if isinstance(url, str) else None

    async def forward_json(self, token: str, method: str, params: dict[str, Any]) -> web.Response:
        """Call ``method`` with parameters already read from a request, as JSON."""
        headers = {"Content-Type": "application/json"}
        return await self._forward("POST", token, method, {}, orjson.dumps(params), headers)

    async def _forward(
        self,
        verb: str,
        token: str,
        method: str,
        query: Mapping[str, str],
        body: bytes | StreamedBody,
        headers: dict[str, str],
    ) -> web.Response:
        url = f"{self._base}/bot{token}/{method}"
        deadline = time.monotonic() + self._wait
        while True:
            status, answer, content_type = await self._call(verb, url, query, body, headers)
            if status != 429:
                break
            if isinstance(body, StreamedBody):
                deadline = 0.0  # its bytes are gone: it cannot be sent again
            await _wait_out(answer, deadline)
        if status >= 400:
            return upstream_error(status, answer)
        return web.Response(body=answer, status=status, headers={"Content-Type": content_type})

    async def _call(
        self,
        verb: str,
        url: str,
        query: Mapping[str, str],
        body: bytes | StreamedBody,
        headers: dict[str, str],
    ) -> tuple[int, bytes, str]:
        data = body.chunks() if isinstance(body, StreamedBody) else body or None
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with (
                self._calling() as session,
                session.request(
                    verb,
                    url,
                    params=query,
                    data=data,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                ) as resp,
            ):
                if 300 <= resp.status < 400:
                    raise BotApiError(502, "Bad Gateway: the Bot API answered a redirect")
                answer = await resp.read()
                return resp.status, answer, resp.headers.get("Content-Type", "application/json")
        except TimeoutError as exc:
            raise BotApiError(504, "Gateway Timeout: the Bot API did not answer in time") from exc
        except aiohttp.ClientError as exc:
            log.warning("bot api unreachable", extra={"reason": type(exc).__name__})
            raise BotApiError(502, "Bad Gateway: the Bot API cannot be reached") from exc

    async def download(self, request: web.Request, token: str, path: str) -> web.StreamResponse:
        """Stream ``/file/bot{token}/{path}`` from the Bot API."""
        if not _plain_file_path(path):
            raise BotApiError(404, "Not Found")
        url = yarl.URL(f"{self._base}/file/bot{token}/{path}", encoded=True)
        deadline = time.monotonic() + self._wait
        while True:
            answer = await self._download(request, url)
            if not isinstance(answer, bytes):
                return answer
            await _wait_out(answer, deadline)

    async def _download(self, request: web.Request, url: yarl.URL) -> web.StreamResponse | bytes:
        """The streamed answer, or the body of a 429 to wait out."""
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._timeout)
        try:
            async with (
                self._calling() as session,
                session.get(url, timeout=timeout, allow_redirects=False) as resp,
            ):
                if resp.status == 429:
                    return await resp.read()
                if 300 <= resp.status < 400:
                    raise BotApiError(502, "Bad Gateway: the Bot API answered a redirect")
                if resp.status >= 400:
                    return upstream_error(resp.status, await resp.read())
                answer = web.StreamResponse(status=resp.status)
                for name in ANSWER_HEADERS:
                    if name in resp.headers:
                        answer.headers[name] = resp.headers[name]
                await answer.prepare(request)
                async for chunk in resp.content.iter_chunked(CHUNK):
                    await answer.write(chunk)
                await answer.write_eof()
                return answer
        except TimeoutError as exc:
            raise BotApiError(504, "Gateway Timeout: the Bot API did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise BotApiError(502, "Bad Gateway: the Bot API cannot be reached") from exc


class StreamedBody:
    """A request body passed on as it arrives, refused (``refused``) once it goes over
    ``limit`` bytes or past ``seconds``; the upstream call then fails and this says why."""

    def __init__(self, content: StreamReader, limit: int, seconds: float) -> None:
        self._content = content
        self._limit = limit
        self._seconds = seconds
        self.refused: BotApiError | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes, chunk by chunk."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._seconds
        sent = 0
        while True:
            try:
                chunk = await asyncio.wait_for(self._content.readany(), deadline - loop.time())
            except TimeoutError:
                self.refused = BotApiError(408, "Request Timeout: body not received in time")
                raise self.refused from None
            if not chunk:
                return
            sent += len(chunk)
            if sent > self._limit:
                self.refused = BotApiError(
                    413, f"Request Entity Too Large: body over {self._limit} bytes"
                )
                raise self.refused
            yield chunk


def upstream_error(status: int, answer: bytes) -> web.Response:
    """An error of the Bot API, redacted, in Telegram's shape even when it came as an HTML or
    text page (from a proxy in front of it)."""
    text = redact(answer.decode("utf-8", "replace"))
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and doc.get("ok") is False and "error_code" in doc:
        return web.Response(text=text, status=status, content_type="application/json")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    snippet = " ".join(text.split())[:MAX_ERROR_CHARS]
    return telegram_error(status, f"{phrase}: {snippet}" if snippet else phrase)


async def _wait_out(answer: bytes, deadline: float) -> None:
    """Sleep through a 429's retry_after, or 502 when that would pass the deadline."""
    wait = _retry_after(answer)
    if time.monotonic() + wait > deadline:
        raise BotApiError(502, f"Bad Gateway: Telegram asked to wait {wait:g} s")
    await asyncio.sleep(wait)


def _plain_file_path(path: str) -> bool:
    """Segments of ``[A-Za-z0-9_.-]`` only, none empty, ``.`` or ``..``."""
    if len(path) > MAX_FILE_PATH or not _FILE_PATH.fullmatch(path):
        return False
    return all(segment not in {".", ".."} for segment in path.split("/"))


def _retry_after(answer: bytes) -> float:
    try:
        doc = orjson.loads(answer)
        value = float(doc["parameters"]["retry_after"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 1.0
    return max(1.0, value)
