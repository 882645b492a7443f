"""Reading Bot API parameters from query strings, JSON, urlencoded and multipart bodies.

Form bodies carry every value as a string (nested objects as JSON text), so the typed
readers below accept both the JSON type and its string form, as Telegram does.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_request import FileField

from sandbox.errors import ApiError, bad_request

Params = dict[str, Any]

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_HTML_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent in a multipart body; only its description is kept."""

    filename: str
    content_type: str
    size: int


async def read_params(request: web.Request) -> Params:
    """Merge the query string with the body's parameters (the body wins)."""
    params: Params = dict(request.query) if request.query_string else {}
    if request.method != "POST" or not request.body_exists:
        return params
    content_type = request.content_type
    if content_type == "application/json":
        raw = await request.read()
        if raw.strip():
            params.update(_json_object(raw))
    elif content_type in FORM_TYPES:
        form = await request.post()
        for key, value in form.items():
            params[key] = _upload(value) if isinstance(value, FileField) else value
    return params


def _json_object(raw: bytes) -> Params:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("can't parse JSON object") from None
    if not isinstance(body, dict):
        raise bad_request("JSON object expected")
    return body


def _upload(field: FileField) -> Upload:
    # The file itself is of no use to the sandbox; closing it frees aiohttp's temp file.
    with field.file as file:
        size = file.seek(0, 2)
    return Upload(field.filename, field.content_type, size)


def chat_id_param(params: Params, name: str = "chat_id") -> int:
    """A required chat id; ``@username`` ids are unknown to the sandbox."""
    value = params.get(name)
    if value is None or value == "":
        raise bad_request(f"{name} is empty")
    number = _as_int(value)
    if number is None:
        raise ApiError(400, "Bad Request: chat not found", outcome="missing")
    return number


def int_param(params: Params, name: str) -> int | None:
    """An optional integer."""
    value = params.get(name)
    if value is None or value == "":
        return None
    number = _as_int(value)
    if number is None:
        raise bad_request(f"invalid {name} specified")
    return number


def _as_int(value: object) -> int | None:
    """An integer, or a string holding one (form and query values); None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def str_param(params: Params, name: str) -> str | None:
    """An optional string (numbers are taken as their text)."""
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise bad_request(f"invalid {name} specified")


def bool_param(params: Params, name: str) -> bool:
    """An optional flag, false when absent."""
    value = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def json_param(params: Params, name: str) -> Any:
    """An optional object or array, given as JSON or (in forms) as JSON text."""
    value = params.get(name)
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise bad_request(f"can't parse {name} JSON object") from None
    return value


def float_param(params: Params, name: str) -> float | None:
    """An optional number."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise bad_request(f"invalid {name} specified")


def visible_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram counts: HTML markup stripped, surrounding whitespace trimmed."""
    if parse_mode is not None and parse_mode.lower() == "html":
        text = html.unescape(_HTML_TAG.sub("", text))
    return text.strip()
