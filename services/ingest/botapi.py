"""The drop-in Bot API endpoint: ``/bot{token}/{method}`` and ``/file/bot{token}/{path}``.

A framework whose base URL points here gets Telegram's answers. Sending and editing methods
are queued like ``POST /v1/messages`` and answered with Telegram's own answer once the message
is delivered (or dead); every other method passes through (``passthrough``). The token in the
path is the credential: it must be one of the configured bots' tokens.

The same request sent again (bot, method and parameters alike) finds the earlier message
instead of queuing a second one when that message's client left without its answer (it gave
up, or was answered 502 when the wait ran out) within ``FLOODGATE_PROXY_DEDUP_WINDOW``: that is
a client retrying. Once a client got the outcome, the same request is a new message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import orjson
import yarl
from aiohttp import web
from prometheus_client import Counter
from pydantic import ValidationError

from services.ingest.botapi_request import BotApiError, read_params, telegram_error
from services.ingest.errors import field_errors, summary
from services.ingest.lookup import StoreLookup
from services.ingest.metrics import IngestMetrics
from services.ingest.passthrough import Passthrough
from services.ingest.settings import IngestSettings
from services.ingest.submit import submit
from services.ingest.waiters import POLL_S, Waiters
from shared.bots import TOKEN_RE
from shared.broker import BrokerUnavailable
from shared.context import Context
from shared.models import Priority, SendRequest, Status
from shared.redact import redact

log = logging.getLogger("floodgate.ingest.botapi")

ROUTE = "/bot{token}/{method}"
FILE_ROUTE = "/file/bot{token}/{path:.+}"
# what reaches neither route (no method, another verb, a slash too many) gets Telegram's 404
UNROUTED = ("/bot{rest:.*}", "/file/bot{rest:.*}")
PRIORITY_HEADER = "X-Floodgate-Priority"
_METHOD = re.compile(r"[A-Za-z]{2,64}")
# How long an identical request waits to learn that the earlier one's client left: a client that
# timed out and at once sends again may be heard before its closed connection is (a loaded
# process, or the replica that holds the earlier request recording it a poll later).
RETRY_GRACE_S = 0.5

SENDING_METHODS = (
    "sendMessage sendPhoto sendAudio sendDocument sendVideo sendAnimation sendVoice "
    "sendVideoNote sendPaidMedia sendMediaGroup sendLocation sendVenue sendContact sendPoll "
    "sendDice sendSticker sendInvoice sendGame copyMessage copyMessages forwardMessage "
    "forwardMessages editMessageText editMessageCaption editMessageMedia "
    "editMessageReplyMarkup editMessageLiveLocation stopMessageLiveLocation stopPoll"
)
QUEUED = {name.lower(): name for name in SENDING_METHODS.split(" ")}
# Ending the bot's session would end every send still queued for it.
SESSION_METHODS = frozenset({"logout", "close"})
# Another reader of the updates of a bot floodgate takes them for would take them away from it.
UPDATE_METHODS = frozenset({"getupdates", "setwebhook", "deletewebhook"})
WEBHOOK_METHODS = frozenset({"setwebhook", "deletewebhook"})


class BotApi:
    """Handlers of the drop-in routes."""

    def __init__(
        self,
        ctx: Context,
        settings: IngestSettings,
        metrics: IngestMetrics,
        lookup: StoreLookup | None = None,
        takes_updates: frozenset[int] = frozenset(),
    ) -> None:
        registry = ctx.registry
        self._takes_updates = takes_updates
        self._metrics = metrics
        self._ctx = ctx
        self._settings = settings
        self._lookup = lookup
        # marks written on a status record renew its lifetime: never one without an expiry
        self._record_ttl = ctx.settings.record_ttl
        self.waiters = Waiters(ctx, registry)
        self.passthrough = Passthrough(
            ctx.settings.telegram_api_base,
            settings.proxy_wait,
            ctx.settings.telegram_timeout + 60,  # getUpdates may hold the call up to 50 s
            settings.proxy_max_body_bytes,
        )
        self._answers = Counter(
            "floodgate_botapi_requests_total",
            "Drop-in Bot API requests, by how they were handled and answered.",
            ["handling", "outcome"],
            registry=registry,
        )

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        """GET and POST on the method route; GET on the file route; a 404 for the rest."""
        return [
            web.get(ROUTE, self.call),
            web.post(ROUTE, self.call),
            web.get(FILE_ROUTE, self.download),
            *(web.route("*", path, self.not_found) for path in UNROUTED),
        ]

    async def call(self, request: web.Request) -> web.StreamResponse:
        """``/bot{token}/{method}``: queued when it sends or edits, else passed through."""
        try:
            bot_id, token = self._bot(request.match_info["token"])
            method = request.match_info["method"]
            if not _METHOD.fullmatch(method):
                raise BotApiError(404, "Not Found")
            self._check_allowed(bot_id, method.lower())
            if method.lower() in WEBHOOK_METHODS:
                await self._check_webhook_not_ours(bot_id, token)
            queued = QUEUED.get(method.lower())
            body_s = self._ctx.settings.http_body_timeout
            if queued is None:
                self._answers.labels("passthrough", "forwarded").inc()
                return await self.passthrough.forward(request, token, method, body_s)
            params = await read_params(request, self._settings.max_body_bytes, body_s)
            return await self._send(request, bot_id, queued, params)
        except BotApiError as exc:
            self._answers.labels("refused", str(exc.code)).inc()
            return exc.response()
        except BrokerUnavailable:
            self._answers.labels("queued", "unavailable").inc()
            return telegram_error(503, "Service Unavailable: queue unavailable, retry later")

    async def download(self, request: web.Request) -> web.StreamResponse:
        """``/file/bot{token}/{path}``: the file, streamed from the Bot API."""
        try:
            _, token = self._bot(request.match_info["token"])
            self._answers.labels("download", "forwarded").inc()
            return await self.passthrough.download(request, token, request.match_info["path"])
        except BotApiError as exc:
            return exc.response()

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        """Telegram's answer to a path it has no method for."""
        self._answers.labels("refused", "404").inc()
        return telegram_error(404, "Not Found")

    async def _check_webhook_not_ours(self, bot_id: int, token: str) -> None:
        """Refuse to move or delete a webhook that points at floodgate's own route for the bot
        (set by `floodgate webhook set`, with a secret derived from the token, so no setting
        tells): it would silently stop the bot's updates reaching floodgate."""
        if bot_id in self._takes_updates:
            return  # refused already
        url = await self.passthrough.webhook_url(token)
        if url and yarl.URL(url).path.rstrip("/").endswith(f"/webhook/telegram/{bot_id}"):
            raise BotApiError(
                409,
                "Conflict: this bot's webhook delivers its updates to floodgate; read them from "
                "floodgate (the SDK's Updates) instead of setWebhook or deleteWebhook",
            )

    def _check_allowed(self, bot_id: int, method: str) -> None:
        """Refuse the calls that would take the bot's session or updates away from floodgate."""
        if method in SESSION_METHODS:
            raise BotApiError(
                403,
                "Forbidden: floodgate owns this bot's session; logOut and close are not passed on",
            )
        if method in UPDATE_METHODS and bot_id in self._takes_updates:
            raise BotApiError(
                409,
                "Conflict: floodgate takes this bot's updates (by polling or its webhook); "
                "read them from floodgate (the SDK's Updates) instead of getUpdates, "
                "setWebhook or deleteWebhook",
            )

    def _bot(self, token: str) -> tuple[int, str]:
        """The bot whose token this is; Telegram's 401 for any other string."""
        match = TOKEN_RE.fullmatch(token)
        expected = self._ctx.bots.get(int(match.group(1))) if match else None
        if (
            match is None
            or expected is None
            or not hmac.compare_digest(expected.encode(), token.encode())
        ):
            raise BotApiError(401, "Unauthorized")
        return int(match.group(1)), token

    async def _send(
        self, request: web.Request, bot_id: int, method: str, params: dict[str, Any]
    ) -> web.StreamResponse:
        if "chat_id" not in params:
            # inline messages are edited by inline_message_id: no chat to keep limits for
            self._answers.labels("passthrough", "forwarded").inc()
            return await self.passthrough.forward_json(self._ctx.bots[bot_id], method, params)
        try:
            req = SendRequest(
                bot_id=bot_id, method=method, params=params, priority=_priority(request)
            )
        except ValidationError as exc:
            raise BotApiError(400, f"Bad Request: {summary(field_errors(exc))}") from exc
        assert req.params is not None
        message_id = await self._find_retried(bot_id, method, req.params)
        if message_id is None:
            accepted = await submit(self._ctx, [req], self._lookup, keep_result=True)
            message_id = accepted[0].id
            self._metrics.accepted.labels(accepted[0].priority).inc()
            fingerprint = self._fingerprint_key(bot_id, method, req.params)
            await self._mark(fingerprint, {"id": message_id}, self._settings.proxy_dedup_window)
        return await self._answer(request, message_id)

    async def _mark(self, key: str, fields: dict[str, str], ttl: int) -> None:
        """Best effort: the message is queued already, so a failure here must not become an
        answer that invites the client to send it again; only the retry detection loses."""
        try:
            await self._ctx.broker.put_records({key: fields}, ttl)
        except BrokerUnavailable:
            log.warning("drop-in mark not written, queue unavailable", extra={"mark": [*fields]})
            self._answers.labels("queued", "mark_lost").inc()

    def _fingerprint_key(self, bot_id: int, method: str, params: dict[str, Any]) -> str:
        canonical = orjson.dumps([method, params], option=orjson.OPT_SORT_KEYS)
        return self._ctx.keys.of_bot(bot_id).proxy_request(
            bot_id, hashlib.sha256(canonical).hexdigest()[:32]
        )

    async def _find_retried(self, bot_id: int, method: str, params: dict[str, Any]) -> str | None:
        """The message an earlier, identical request queued, if its client left unanswered."""
        broker, keys = self._ctx.broker, self._ctx.keys
        found = await broker.get_record(self._fingerprint_key(bot_id, method, params))
        earlier = (found or {}).get("id")
        if not earlier:
            return None
        record = await broker.get_record(keys.of_message(earlier).record(earlier))
        if record is None or record.get("answered") == "1":
            return None
        if not await self._earlier_left(earlier, record):
            return None  # the earlier request still waits for it: this one is a second message
        await broker.put_records(
            {keys.of_message(earlier).record(earlier): {"orphaned": ""}}, self._record_ttl
        )
        self._answers.labels("queued", "retry_found").inc()
        self._metrics.duplicates.inc()
        return earlier

    async def _earlier_left(self, earlier: str, record: dict[str, str]) -> bool:
        """Whether the client of the earlier request left without its answer, given a moment
        to be found out."""
        deadline = time.monotonic() + RETRY_GRACE_S
        key = self._ctx.keys.of_message(earlier).record(earlier)
        while True:
            if record.get("orphaned") == "1" or self.waiters.abandoned(earlier):
                return True
            if record.get("answered") == "1" or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
            record = await self._ctx.broker.get_record(key) or {}

    async def _answer(self, request: web.Request, message_id: str) -> web.StreamResponse:
        """Wait for the message to settle; answer as Telegram answered it."""
        wait = self._settings.proxy_wait
        record = await self.waiters.wait(message_id, wait, lambda: _gone(request))
        key = self._ctx.keys.of_message(message_id).record(message_id)
        if record is None or _gone(request):
            await self._mark(key, {"orphaned": "1"}, self._record_ttl)
            self._answers.labels("queued", "timeout").inc()
            return telegram_error(
                502,
                f"Bad Gateway: not delivered within {wait:g} s; it stays queued, and the same "
                "request sent again waits for it instead of sending it twice",
            )
        await self._mark(key, {"answered": "1"}, self._record_ttl)
        if record.get("status") == Status.SENT.value:
            self._answers.labels("queued", "sent").inc()
            result = orjson.loads(record["result"]) if record.get("result") else True
            return web.json_response(
                {"ok": True, "result": result}, dumps=lambda o: orjson.dumps(o).decode()
            )
        self._answers.labels("queued", "dead").inc()
        code = int(record.get("error_code") or 0)
        description = redact(record.get("error") or "message could not be delivered")
        if 400 <= code < 500 and code != 429:
            return telegram_error(code, description)
        return telegram_error(502, f"Bad Gateway: {description}")


def _priority(request: web.Request) -> Priority | None:
    value = request.headers.get(PRIORITY_HEADER)
    if value is None or value.strip().lower() == "auto":
        return None
    try:
        return Priority(value.strip().lower())
    except ValueError as exc:
        raise BotApiError(
            400, f"Bad Request: {PRIORITY_HEADER} must be high, normal, low or auto"
        ) from exc


def _gone(request: web.Request) -> bool:
    """Whether the client closed its connection (it gave up waiting)."""
    transport = request.transport
    return transport is None or transport.is_closing()
