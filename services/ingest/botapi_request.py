"""Reading a Bot API request into its parameters, as Telegram takes them: the query string and
a JSON, urlencoded or multipart body (the body wins). Errors are answered in Telegram's shape.

Form bodies carry every value as a string and nested objects as JSON text; objects and lists
are decoded here (except in the parameters that are text), and message ids read as integers,
so that a request means the same whichever way a framework encodes it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from services.ingest.body import BodyError, read_body

MAX_PARAMS = 100
MAX_NAME_CHARS = 64
TEXT_PARAMS = frozenset(
    {"text", "caption", "question", "explanation", "title", "description", "payload", "emoji"}
)
INT_PARAMS = frozenset({"message_id", "reply_to_message_id", "message_thread_id"})
_INT = re.compile(r"-?[0-9]{1,20}")
INT64 = range(-(2**63), 2**63)
_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


class BotApiError(Exception):
    """A request answered with Telegram's error shape; the description names no token."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description

    def response(self) -> web.Response:
        """The answer as Telegram gives it."""
        return telegram_error(self.code, self.description)


def telegram_error(code: int, description: str, **extra: Any) -> web.Response:
    """``{"ok": false, "error_code": code, "description": ...}`` with ``code`` as HTTP status."""
    doc = {"ok": False, "error_code": code, "description": description, **extra}
    return web.json_response(doc, status=code, dumps=lambda o: orjson.dumps(o).decode())


async def read_params(request: web.Request, limit: int, seconds: float) -> dict[str, Any]:
    """Every parameter of the request, bounded by ``limit`` bytes of body read within
    ``seconds``; ``BotApiError`` for anything Telegram would refuse to read."""
    params = _form(request.rel_url.raw_query_string, "query string")
    if request.method == "POST" and request.body_exists:
        if request.content_type == "multipart/form-data":
            try:
                async with asyncio.timeout(seconds):
                    params.update(await _multipart(request, limit))
            except TimeoutError as exc:
                raise BotApiError(408, "Request Timeout: body not received in time") from exc
        else:
            params.update(await _plain_body(request, limit, seconds))
    _check_names(params)
    return params


async def _plain_body(request: web.Request, limit: int, seconds: float) -> dict[str, Any]:
    try:
        body = await read_body(request, limit, seconds)
    except BodyError as exc:
        status = exc.response.status
        what = "Request Entity Too Large" if status == 413 else "Request Timeout"
        raise BotApiError(status, f"{what}: body over {limit} bytes or too slow") from exc
    if not body.strip():
        return {}
    if request.content_type == "application/json":
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BotApiError(400, "Bad Request: can't parse JSON object") from exc
        if not isinstance(doc, dict):
            raise BotApiError(400, "Bad Request: JSON object expected")
        return doc
    if request.content_type in {"application/x-www-form-urlencoded", "application/octet-stream"}:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BotApiError(400, "Bad Request: can't parse the form body") from exc
        return _form(text, "form body")
    raise BotApiError(400, f"Bad Request: unsupported Content-Type {request.content_type[:64]}")


def _form(text: str, what: str) -> dict[str, Any]:
    """Fields of a urlencoded string; a 400 for what is not UTF-8 once percent-decoded (never
    replaced by U+FFFD: the message would say something else than what was sent)."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARAMS, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BotApiError(400, f"Bad Request: can't parse the {what}") from exc
    return {key: _from_form(key, value) for key, value in pairs}


async def _multipart(request: web.Request, limit: int) -> dict[str, Any]:
    """Fields of a multipart body; a file in it is refused, since a queued message carries its
    parameters as JSON (files go by file_id or URL)."""
    if request.content_length is not None and request.content_length > limit:
        raise BotApiError(413, f"Request Entity Too Large: body over {limit} bytes")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        raise BotApiError(400, "Bad Request: can't parse the multipart body") from exc
    fields: dict[str, Any] = {}
    budget = limit
    for _ in range(MAX_PARAMS + 1):
        named = await _next_part(reader)
        if named is None:
            return fields
        name, part = named
        if name in fields:
            raise BotApiError(400, f"Bad Request: {name[:MAX_NAME_CHARS]} given twice")
        raw, budget = await _bounded(part, budget, limit)
        # boundaries and part headers count too, however the body is framed (chunked or not)
        if request.content.total_bytes > limit:
            raise BotApiError(413, f"Request Entity Too Large: body over {limit} bytes")
        try:
            fields[name] = _from_form(name, raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BotApiError(400, f"Bad Request: {name[:64]} is not UTF-8") from exc
    raise BotApiError(400, f"Bad Request: more than {MAX_PARAMS} parameters")


async def _next_part(reader: MultipartReader) -> tuple[str, BodyPartReader] | None:
    """The next named field part; ``BotApiError`` for a nested, unnamed or file part."""
    try:
        part = await reader.next()
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        raise BotApiError(400, "Bad Request: can't parse the multipart body") from exc
    if part is None:
        return None
    if not isinstance(part, BodyPartReader) or part.name is None:
        raise BotApiError(400, "Bad Request: nested or unnamed multipart parts")
    if part.filename is not None:
        raise BotApiError(
            400,
            f"Bad Request: {part.name[:MAX_NAME_CHARS]}: floodgate queues sends as JSON; "
            "upload the file to Telegram once and send its file_id or a URL",
        )
    return part.name, part


async def _bounded(part: BodyPartReader, budget: int, limit: int) -> tuple[bytes, int]:
    """One part's bytes, counted against what is left of the body's limit."""
    data = bytearray()
    while chunk := await part.read_chunk():
        budget -= len(chunk)
        if budget < 0:
            raise BotApiError(413, f"Request Entity Too Large: body over {limit} bytes")
        data += chunk
    return bytes(data), budget


def _from_form(name: str, value: str) -> Any:
    """A form value as the JSON value it stands for, where the parameter takes one."""
    if name in INT_PARAMS and _INT.fullmatch(value):
        number = int(value)
        if number not in INT64:
            raise BotApiError(400, f"Bad Request: {name} is out of range")
        return number
    if name not in TEXT_PARAMS and value[:1] in {"{", "["}:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _check_names(params: dict[str, Any]) -> None:
    if len(params) > MAX_PARAMS:
        raise BotApiError(400, f"Bad Request: more than {MAX_PARAMS} parameters")
    for name in params:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BotApiError(400, "Bad Request: a parameter name is not [A-Za-z0-9_]{1,64}")
