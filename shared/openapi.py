"""The OpenAPI 3.1 description of the HTTP API, generated from the pydantic models.

Each process describes the routes it serves: the common ones, and those of ingest and of stats
when it runs them. Request bodies are the models the handlers validate with; answers are the
models of ``shared.api_models``. A status not listed for a route is a bug (the fuzz test in
``tests/test_openapi_fuzz.py`` sends what the description allows and checks the answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from shared import api_models as m
from shared.models import SendRequest
from shared.updates import Update

REF = "#/components/schemas/{model}"
JSON = "application/json"
Answers = dict[int, type[BaseModel] | None]


@dataclass(frozen=True)
class Route:
    """One operation: who serves it, what it takes, what it answers."""

    service: str
    method: str
    path: str
    summary: str
    answers: Answers
    body: type[BaseModel] | None = None
    body_required: bool = True
    params: list[dict[str, Any]] = field(default_factory=list)


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_ERR = m.ErrorAnswer
_SECRET = {
    "name": "X-Telegram-Bot-Api-Secret-Token",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {
        "type": "integer",
        "minimum": 1,
        "maximum": m.DLQ_LIMIT_MAX,
        "default": m.DLQ_LIMIT_DEFAULT,
    },
}

_TG = m.BotApiAnswer
# and whatever Telegram answers a method passed through
_BOTAPI: Answers = dict.fromkeys((200, 400, 401, 404, 408, 413, 502, 503, 504), _TG)
_BOTAPI_PARAMS = [_path("token"), _path("method")]

ROUTES: tuple[Route, ...] = (
    Route("", "get", "/healthz", "The process is alive.", {200: m.HealthAnswer}),
    Route("", "get", "/readyz", "Its backends answer.", {200: m.ReadyAnswer, 503: m.ReadyAnswer}),
    Route("", "get", "/metrics", "Prometheus metrics (text format).", {200: None}),
    Route("", "get", "/openapi.json", "This description.", {200: None}),
    Route(
        "ingest",
        "post",
        "/v1/messages",
        "Queue one message.",
        {202: m.AcceptedAnswer, 404: _ERR, 408: _ERR, 413: _ERR, 422: _ERR, 503: _ERR},
        body=SendRequest,
    ),
    Route(
        "ingest",
        "post",
        "/v1/messages/batch",
        "Queue up to 1000 messages, each accepted or refused on its own.",
        {202: m.BatchAnswer, 408: _ERR, 413: _ERR, 422: _ERR, 503: _ERR},
        body=m.BatchRequest,
    ),
    Route(
        "ingest",
        "get",
        "/v1/messages/{id}",
        "Where one accepted message is.",
        {200: m.MessageStatusAnswer, 404: _ERR, 503: _ERR},
        params=[_path("id")],
    ),
    Route(
        "ingest",
        "post",
        "/webhook/telegram/{bot_id}",
        "A Telegram update, with the bot's webhook secret.",
        {200: m.WebhookAnswer, 401: _ERR, 404: _ERR, 408: _ERR, 413: _ERR, 422: _ERR, 503: _ERR},
        body=Update,
        params=[_path("bot_id"), _SECRET],
    ),
    Route(
        "ingest",
        "get",
        "/bot{token}/{method}",
        "Drop-in Bot API: a sending or editing method is queued and answered with Telegram's "
        "answer once delivered; any other method passes through. The token authenticates.",
        _BOTAPI,
        params=_BOTAPI_PARAMS,
    ),
    Route(
        "ingest",
        "post",
        "/bot{token}/{method}",
        "Drop-in Bot API, parameters in a JSON, urlencoded or multipart body.",
        _BOTAPI,
        params=_BOTAPI_PARAMS,
    ),
    Route(
        "ingest",
        "get",
        "/file/bot{token}/{path}",
        "Drop-in Bot API file download, passed through.",
        {200: None, 401: _TG, 404: _TG, 502: _TG, 504: _TG},
        params=[_path("token"), _path("path")],
    ),
    Route(
        "stats",
        "get",
        "/queue/stats",
        "Depth of every queue.",
        {200: m.QueueStatsAnswer, 503: _ERR},
    ),
    Route(
        "stats",
        "get",
        "/v1/dlq",
        "Dead letters, oldest first.",
        {200: m.DlqAnswer, 422: _ERR, 503: _ERR},
        params=[_LIMIT],
    ),
    Route(
        "stats",
        "post",
        "/v1/dlq/replay",
        "Put dead letters back in their queues: all, or those named.",
        {200: m.ReplayAnswer, 413: _ERR, 422: _ERR, 503: _ERR},
        body=m.ReplayRequest,
        body_required=False,
    ),
    Route(
        "stats",
        "delete",
        "/v1/dlq/{id}",
        "Drop one dead letter.",
        {200: m.DropAnswer, 404: _ERR, 503: _ERR},
        params=[_path("id")],
    ),
)


def document(services: Sequence[str]) -> dict[str, Any]:
    """The description of the routes a process running ``services`` serves."""
    routes = [r for r in ROUTES if not r.service or r.service in services]
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for route in routes:
        if route.body is not None:
            wanted.append((route.body, "validation"))
        wanted += [(model, "serialization") for model in route.answers.values() if model]
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "floodgate", "version": "1"},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }


def _operation(route: Route, refs: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "responses": {}}
    if route.params:
        op["parameters"] = route.params
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {JSON: {"schema": refs[(route.body, "validation")]}},
        }
    for status, model in route.answers.items():
        answer: dict[str, Any] = {"description": str(status)}
        if model is not None:
            answer["content"] = {JSON: {"schema": refs[(model, "serialization")]}}
        op["responses"][str(status)] = answer
    return op
