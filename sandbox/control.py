"""The control API under ``/_sandbox``: read what arrived, change the config, play users."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping
from pydantic import ValidationError

from sandbox.api import json_response
from sandbox.state import STATE_KEY
from sandbox.users import SayRequest, say

PREFIX = "/_sandbox"
DEFAULT_REQUEST_LIMIT = 1000


def _error(status: int, error: str, detail: Any = None) -> web.HTTPException:
    body: dict[str, Any] = {"error": error}
    if detail is not None:
        body["detail"] = detail
    kind = web.HTTPUnprocessableEntity if status == 422 else web.HTTPBadRequest
    return kind(text=orjson.dumps(body, default=str).decode(), content_type="application/json")


def _int_query(query: MultiMapping[str], name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise _error(400, f"{name} must be an integer") from None


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise _error(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _error(400, "body must be a JSON object")
    return body


def _invalid(exc: ValidationError) -> web.HTTPException:
    detail = exc.errors(include_url=False, include_context=False)
    return _error(422, "invalid body", detail)


async def get_messages(request: web.Request) -> web.Response:
    """Delivered messages, oldest first: ``{"count", "last_seq", "messages": […]}``."""
    state = request.app[STATE_KEY]
    query = request.query
    records = state.messages.select(
        bot_id=_int_query(query, "bot_id"),
        chat_id=_int_query(query, "chat_id"),
        since_seq=_int_query(query, "since_seq") or 0,
        limit=_int_query(query, "limit"),
    )
    return json_response(
        {
            "count": len(records),
            "last_seq": state.messages.last_seq,
            "messages": [record.as_json() for record in records],
        }
    )


async def get_requests(request: web.Request) -> web.Response:
    """The newest requests, oldest first: ``{"count", "requests": […]}``."""
    state = request.app[STATE_KEY]
    limit = _int_query(request.query, "limit") or DEFAULT_REQUEST_LIMIT
    entries = state.requests.last(max(limit, 0))
    return json_response({"count": len(entries), "requests": entries})


async def get_stats(request: web.Request) -> web.Response:
    """The counters since start or the last reset."""
    return json_response(request.app[STATE_KEY].stats.as_json())


async def get_config(request: web.Request) -> web.Response:
    """The active configuration."""
    return json_response(request.app[STATE_KEY].config.model_dump(mode="json"))


async def post_config(request: web.Request) -> web.Response:
    """Change some config fields; answers the whole new config (422 if invalid)."""
    state = request.app[STATE_KEY]
    changes = await _json_object(request)
    try:
        config = state.config.updated(changes)
    except ValidationError as exc:
        raise _invalid(exc) from None
    state.set_config(config)
    return json_response(config.model_dump(mode="json"))


async def post_reset(request: web.Request) -> web.Response:
    """Clear the log, counters, windows, holds and pending updates; keep the config."""
    request.app[STATE_KEY].reset()
    return json_response({"ok": True})


async def post_say(request: web.Request) -> web.Response:
    """A user writes to a bot: ``{"update_id", "message_id"}``."""
    state = request.app[STATE_KEY]
    try:
        said = SayRequest.model_validate(await _json_object(request))
    except ValidationError as exc:
        raise _invalid(exc) from None
    update = say(state, said)
    message = update.get("message") or update["channel_post"]
    return json_response({"update_id": update["update_id"], "message_id": message["message_id"]})


async def get_updates_view(request: web.Request) -> web.Response:
    """A bot's pending updates and webhook: ``{"bot_id", "pending": […], "webhook": {…}}``."""
    state = request.app[STATE_KEY]
    bot_id = _int_query(request.query, "bot_id")
    if bot_id is None:
        raise _error(400, "bot_id is required")
    updates = state.updates(bot_id)
    return json_response(
        {
            "bot_id": bot_id,
            "pending": list(updates.pending),
            "webhook": updates.info(),
            "delivered_by": {
                "getUpdates": updates.confirmed_by_poll,
                "webhook": updates.taken_by_webhook,
            },
        }
    )


def add_control_routes(app: web.Application) -> None:
    """Mount the control API."""
    router = app.router
    router.add_get(f"{PREFIX}/messages", get_messages)
    router.add_get(f"{PREFIX}/requests", get_requests)
    router.add_get(f"{PREFIX}/stats", get_stats)
    router.add_get(f"{PREFIX}/config", get_config)
    router.add_post(f"{PREFIX}/config", post_config)
    router.add_post(f"{PREFIX}/reset", post_reset)
    router.add_post(f"{PREFIX}/users/say", post_say)
    router.add_get(f"{PREFIX}/updates", get_updates_view)
