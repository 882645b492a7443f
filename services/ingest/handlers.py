"""HTTP handlers of the public send API."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from services.ingest.access import (
    foreign_bots,
    give_back,
    origin_of,
    over_quota,
    refusal,
    take_quota,
    too_many,
)
from services.ingest.body import BodyError, read_json
from services.ingest.errors import field_errors, problem, summary
from services.ingest.lookup import StoreLookup
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings
from services.ingest.submit import Accepted, submit
from services.ingest.webhook import NOT_REPLICATED
from shared.access import Principal
from shared.broker import BrokerUnavailable, NotReplicated
from shared.context import Context
from shared.key_rate import Grant
from shared.models import MAX_BATCH, SendRequest
from shared.redact import redact
from shared.web_auth import principal_of

log = logging.getLogger("floodgate.ingest")

RECORD_FIELDS = ("priority", "bot_id", "chat_id", "accepted_at", "updated_at", "error_code")


class Handlers:
    """The routes of ``/v1/messages``."""

    def __init__(
        self,
        ctx: Context,
        settings: IngestSettings,
        metrics: IngestMetrics,
        lookup: StoreLookup | None = None,
    ) -> None:
        self._lookup = lookup
        self._ctx = ctx
        self._settings = settings
        self._metrics = metrics
        self._body_timeout = ctx.settings.http_body_timeout
        self._context = {"horizon_s": settings.max_send_at_horizon}

    def _validate(self, doc: Any, principal: Principal) -> SendRequest | tuple[int, dict[str, Any]]:
        if not isinstance(doc, dict):
            errors = [{"field": "body", "reason": "must be a JSON object"}]
            return 422, {"error": summary(errors), "errors": errors}
        if len(doc) > len(SendRequest.model_fields):
            # more fields than a message has: some are unknown, and validating thousands of
            # them would cost what the whole batch should
            errors = [
                {
                    "field": "body",
                    "reason": f"has {len(doc)} fields; a message has at most "
                    f"{len(SendRequest.model_fields)} ({', '.join(SendRequest.model_fields)})",
                }
            ]
            return 422, {"error": summary(errors), "errors": errors}
        try:
            req = SendRequest.model_validate(doc, context=self._context)
        except ValidationError as exc:
            errors = field_errors(exc)
            return 422, {"error": summary(errors), "errors": errors}
        if req.bot_id not in self._ctx.bots:
            return 404, {
                "error": f"unknown bot_id {req.bot_id}",
                "errors": [{"field": "bot_id", "reason": "no such bot is configured"}],
            }
        return refusal(principal, req) or req

    def _reject(self, status: int, count: int = 1) -> str:
        reasons = {403: "forbidden", 404: "unknown_bot", 413: "too_large", 429: "over_quota"}
        reason = {**reasons, 503: "unavailable"}.get(status, "invalid")
        self._metrics.rejected.labels(reason).inc(count)
        return reason

    async def post_message(self, request: web.Request) -> web.Response:
        """``POST /v1/messages``."""
        with self._metrics.request_seconds.labels("single").time():
            try:
                doc = await read_json(request, self._settings.max_body_bytes, self._body_timeout)
            except BodyError as exc:
                self._reject(exc.response.status)
                return exc.response
            principal = principal_of(request)
            checked = self._validate(doc, principal)
            if isinstance(checked, tuple):
                self._reject(checked[0])
                return web.json_response(checked[1], status=checked[0])
            grant = await self._quota(principal, 1)
            if isinstance(grant, web.Response):
                return grant
            accepted = await self._accept([checked], principal, grant)
            if isinstance(accepted, str):
                return problem(503, accepted)
            return web.json_response(accepted[0].body(), status=202)

    async def post_batch(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/batch``: each message accepted or refused on its own."""
        with self._metrics.request_seconds.labels("batch").time():
            try:
                doc = await read_json(
                    request, self._settings.max_batch_body_bytes, self._body_timeout
                )
            except BodyError as exc:
                self._reject(exc.response.status)
                return exc.response
            items = doc.get("messages") if isinstance(doc, dict) else None
            if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
                self._reject(422)
                return problem(
                    422,
                    f"messages: must be a list of 1 to {MAX_BATCH} messages",
                    errors=[
                        {
                            "field": "messages",
                            "reason": f"a list of 1 to {MAX_BATCH} messages is required",
                        }
                    ],
                )
            principal = principal_of(request)
            checked = [self._validate(item, principal) for item in items]
            foreign = foreign_bots(principal, items)
            if foreign:
                self._reject(403)
                return problem(
                    403,
                    f"bot_id: this key may not send as {foreign}; nothing accepted",
                    field="bot_id",
                )
            valid = [c for c in checked if isinstance(c, SendRequest)]
            grant = await self._quota(principal, len(valid))
            if isinstance(grant, web.Response):
                return grant
            admitted = valid if grant is None else valid[: grant.taken]
            accepted = await self._accept(admitted, principal, grant) if admitted else []
            if isinstance(accepted, str):
                return problem(503, accepted)
            return self._batch_answer(checked, accepted, grant)

    def _batch_answer(
        self,
        checked: list[SendRequest | tuple[int, dict[str, Any]]],
        accepted: list[Accepted],
        grant: Grant | None,
    ) -> web.Response:
        results: list[dict[str, Any]] = []
        taken = iter(accepted)
        for c in checked:
            if isinstance(c, tuple):
                self._reject(c[0])
                results.append({"status": "rejected", "code": c[0], **c[1]})
            elif (item := next(taken, None)) is not None and item.refused:
                results.append({"status": "rejected", "code": 503, "error": item.refused})
            elif item is not None:
                results.append(item.body())
            else:
                assert grant is not None  # only a quota leaves valid messages unaccepted
                self._reject(429)
                results.append({"status": "rejected", "code": 429, **over_quota(grant)})
        headers = {"Retry-After": str(grant.retry_after)} if grant and grant.wait_ms else None
        return web.json_response({"results": results}, status=202, headers=headers, dumps=_dumps)

    async def _quota(self, principal: Principal, wanted: int) -> Grant | web.Response | None:
        """The key's places for ``wanted`` messages; a 429 (or 503) answer when none is left."""
        try:
            grant = await take_quota(self._ctx, principal, wanted)
        except BrokerUnavailable:
            self._reject(503)
            return problem(503, "queue unavailable: nothing was accepted, retry later")
        if grant is not None and grant.taken == 0:
            self._reject(429, wanted)
            return too_many(grant)
        return grant

    async def _accept(
        self, requests: list[SendRequest], principal: Principal, grant: Grant | None = None
    ) -> list[Accepted] | str:
        """The accepted messages, or why the answer is 503."""
        try:
            accepted = await submit(self._ctx, requests, self._lookup, origin_of(principal))
        except NotReplicated as exc:
            log.warning("not replicated in time, answered 503", extra={"reason": str(exc)})
            self._metrics.rejected.labels("unavailable").inc(len(requests))
            return f"{NOT_REPLICATED}; retry with the same idempotency_key"
        except BrokerUnavailable as exc:
            await give_back(self._ctx, principal, grant)
            log.warning(
                "queue unavailable, refused with 503",
                extra={"count": len(requests), "reason": str(exc)},
            )
            self._metrics.rejected.labels("unavailable").inc(len(requests))
            return "queue unavailable: nothing was accepted, retry later"
        refused = sum(1 for item in accepted if item.refused)
        if refused:  # their partition was away: they take no place of the key's rate
            await give_back(self._ctx, principal, grant and replace(grant, taken=refused))
        for item in accepted:
            if item.refused:
                self._metrics.rejected.labels("unavailable").inc()
            elif item.duplicate:
                self._metrics.duplicates.inc()
            else:
                self._metrics.accepted.labels(item.priority).inc()
        return accepted

    async def get_message(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/{id}``."""
        message_id = request.match_info["id"]
        try:
            keys = self._ctx.keys.of_message(message_id)
            record = await self._ctx.broker.get_record(keys.record(message_id))
        except BrokerUnavailable:
            return problem(503, "queue unavailable")
        if record is None or not principal_of(request).owns(record.get("key_id")):
            return problem(404, f"no message with id {message_id[:64]}", field="id")
        return web.json_response(status_body(message_id, record), dumps=_dumps)


def status_body(message_id: str, record: dict[str, str]) -> dict[str, Any]:
    """The public view of a status record."""
    doc: dict[str, Any] = {
        "id": message_id,
        "status": record.get("status", "queued"),
        "priority": record.get("priority"),
        "attempts": int(record.get("attempts", "0")),
    }
    if "telegram_message_ids" in record:
        ids = [int(i) for i in record["telegram_message_ids"].split(",") if i]
        doc["telegram_message_id"] = ids[0] if ids and ids[0] else None
        doc["telegram_message_ids"] = ids
    if doc["status"] in {"dead", "retrying"} and record.get("error"):
        doc["error"] = redact(record["error"])
    for name in RECORD_FIELDS:
        if name in record:
            doc[name] = record[name]
    return doc


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
