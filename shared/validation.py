"""What a send request's values may be: Telegram's id ranges, canonical chat ids, bounded params.

One chat has one spelling inside floodgate: a numeric string is the integer it spells and an
@username is case-folded, so every alias of a chat shares one limiter window and one order.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BeforeValidator

# Telegram: user, bot and chat ids have at most 52 significant bits.
MAX_ID = 2**52 - 1
MAX_BOT_ID = 2**63 - 1  # bot ids are matched against the configured tokens, which say more
MAX_PARAMS_DEPTH = 16
MAX_PARAMS_BYTES = 256 * 1024
DEFAULT_HORIZON_S = 365 * 86400
CHAT_PARAMS = ("chat_id", "from_chat_id")
OBJECT_PARAMS = ("reply_parameters", "link_preview_options")

_NUMERIC = re.compile(r"-?[0-9]{1,20}")
_USERNAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}")


def _strict_int(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer ({what})")
    if not low <= value <= high:
        raise ValueError(f"out of range: {what} is between {low} and {high}")
    return value


def bot_id(value: Any) -> int:
    """A bot id: a JSON integer, never a string or a boolean."""
    return _strict_int(value, 1, MAX_BOT_ID, "a bot id")


def chat_id(value: Any) -> int | str:
    """A chat: a non-zero integer within Telegram's range, a string spelling one (read as that
    integer), or an @username (case-folded)."""
    if isinstance(value, str):
        if _NUMERIC.fullmatch(value):
            value = int(value)
        elif _USERNAME.fullmatch(value):
            return value.lower()
        else:
            raise ValueError("must be an integer chat id or an @username")
    chat = _strict_int(value, -MAX_ID, MAX_ID, "a chat id")
    if chat == 0:
        raise ValueError("0 is no chat")
    return chat


def message_id(value: Any) -> int:
    """A Telegram message id."""
    return _strict_int(value, 1, MAX_ID, "a message id")


BotId = Annotated[int, BeforeValidator(bot_id)]
ChatId = Annotated[int | str, BeforeValidator(chat_id)]
MessageId = Annotated[int, BeforeValidator(message_id)]


def no_nul(value: str) -> str:
    """Refuse NUL: no store keeps it and Telegram has no use for it."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000)")
    return value


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Bounded depth and size, no NUL anywhere, chat ids canonical; returns the params."""
    _walk(params, 1)
    try:
        size = len(orjson.dumps(params))
    except TypeError as exc:  # what JSON cannot carry, e.g. an integer over 64 bits
        raise ValueError(f"not JSON: {exc}") from exc
    if size > MAX_PARAMS_BYTES:
        raise ValueError(f"too large: {size} bytes as JSON, at most {MAX_PARAMS_BYTES}")
    for name in OBJECT_PARAMS:
        if name in params and not isinstance(params[name], dict):
            raise ValueError(f"{name} must be an object")
    for name in CHAT_PARAMS:
        if name in params:
            try:
                params[name] = chat_id(params[name])
            except ValueError as exc:
                raise ValueError(f"{name} {exc}") from exc
    return params


def _walk(value: Any, depth: int) -> None:
    if depth > MAX_PARAMS_DEPTH:
        raise ValueError(f"nested deeper than {MAX_PARAMS_DEPTH} levels")
    if isinstance(value, str):
        no_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            no_nul(key)
            _walk(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    elif isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError("integers must fit in 64 bits (signed)")


def send_at(value: Any) -> Any:
    """An ISO 8601 time with a zone, or Unix seconds as a JSON number (never milliseconds)."""
    if isinstance(value, bool):
        raise ValueError("must be an ISO 8601 time or Unix seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 1e11:
            raise ValueError("Unix seconds out of range (milliseconds are not read)")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError("Unix seconds out of range") from exc
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("must be an ISO 8601 time, e.g. 2026-11-28T12:00:00Z") from exc
        if when.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-28T12:00:00Z")
        return when
    return value


def within_horizon(when: datetime, horizon_s: float, now: datetime | None = None) -> None:
    """Refuse a time further ahead than the horizon: it would outlive its status record."""
    latest = (now or datetime.now(UTC)) + timedelta(seconds=horizon_s)
    if when > latest:
        raise ValueError(f"more than {horizon_s:g} s ahead (FLOODGATE_MAX_SEND_AT_HORIZON)")


SendAt = Annotated[datetime, BeforeValidator(send_at)]
Text = Annotated[str, AfterValidator(no_nul)]
