"""``POST /webhook/telegram/{bot_id}``: Telegram updates in, normalized updates out.

Telegram retries an update until it gets a 2xx (for up to 24 h), so the answer is 200 only once
the update is stored: the update_id is claimed (for 24 h) and the normalized update appended to
``{namespace}:updates`` in one atomic step, which also makes a repeated update_id a no-op.

To register the webhooks: ``floodgate webhook set --url https://your.host`` calls setWebhook for
every configured bot with ``{url}/webhook/telegram/{bot_id}`` and the bot's secret.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from services.ingest.body import BodyError, read_json
from services.ingest.errors import field_errors, problem, summary
from shared.broker import BrokerUnavailable, Commit, NotReplicated
from shared.context import Context
from shared.updates import Update, normalize, unreadable_update, usable_update_id
from shared.webhooks import matches

log = logging.getLogger("floodgate.ingest")

URGENT_TTL = 24 * 3600  # answers usually follow within minutes; older ones go by the store

NOT_REPLICATED = (
    "stored on the primary but no replica confirmed it within FLOODGATE_REPLICATION_TIMEOUT_MS:"
    " nothing is promised"
)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret


def add_update(
    ctx: Context, commit: Commit, bot_id: int, update: Update, username: str | None
) -> None:
    """Add storing one update to ``commit``: claimed by its update_id, so it is stored once
    however often it arrives; published normalized; a message that mentions or replies to the
    bot marked, so that answers to it go out first. The commit's ``record_ttl`` must be
    ``URGENT_TTL``."""
    normalized = normalize(update, bot_id, username)
    ident = f"u{bot_id}:{update.update_id}"
    commit.idempotency.append((ctx.keys.update_seen(bot_id, update.update_id), ident))
    commit.adds.append((ctx.keys.updates, ident, orjson.dumps(normalized.model_dump()), ""))
    if (normalized.mentions_bot or normalized.replies_to_bot) and normalized.message_id:
        chat = normalized.chat_id if normalized.chat_id is not None else 0
        key = ctx.keys.urgent(bot_id, chat, normalized.message_id)
        commit.records.append((key, ident, {"update_id": str(update.update_id)}))


class WebhookMetrics:
    """Updates received, by outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.updates = Counter(
            "floodgate_updates_received_total",
            "Telegram updates received by webhook, by outcome (stored, duplicate, refused).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("stored", "duplicate", "refused"):  # at 0 from the start, for alerts
            self.updates.labels(outcome)


class WebhookHandler:
    """Receives the updates of every configured bot."""

    def __init__(
        self,
        ctx: Context,
        secrets: dict[int, str],
        usernames: dict[int, str],
        max_bytes: int,
        metrics: WebhookMetrics,
    ) -> None:
        self._ctx = ctx
        self._secrets = secrets
        self._usernames = usernames
        self._max_bytes = max_bytes
        self._metrics = metrics

    async def receive(self, request: web.Request) -> web.Response:
        """Check the bot and its secret, validate, store once, answer 200."""
        raw_bot = request.match_info["bot_id"]
        # no bot's id is longer than 20 digits (and int() refuses over 4,300 of them)
        plain = raw_bot.isascii() and raw_bot.isdigit() and len(raw_bot) <= 20
        bot_id = int(raw_bot) if plain else -1
        # an unknown bot is answered as a wrong secret, so the answer does not tell which exist
        secret = self._secrets.get(bot_id)
        if secret is None or not matches(secret, request.headers.get(SECRET_HEADER)):
            self._metrics.updates.labels("refused").inc()
            return problem(401, f"missing or wrong {SECRET_HEADER}", field=SECRET_HEADER)
        try:
            doc = await read_json(request, self._max_bytes, self._ctx.settings.http_body_timeout)
            update = Update.model_validate(doc)
        except BodyError as exc:
            self._metrics.updates.labels("refused").inc()
            return exc.response
        except ValidationError as exc:
            update_id = usable_update_id(doc)
            if update_id is None:
                self._metrics.updates.labels("refused").inc()
                errors = field_errors(exc)
                return web.json_response({"error": summary(errors), "errors": errors}, status=422)
            # Telegram sent it (the secret matched) and would retry a refusal until it gives
            # up: kept as an unreadable update, as polling keeps one, rather than lost
            log.warning(
                "unreadable update kept without its content",
                # the fields at fault, not pydantic's text, which quotes what users wrote
                extra={"bot_id": bot_id, "reason": summary(field_errors(exc))[:300]},
            )
            update = unreadable_update(update_id)
        return await self._store(bot_id, update)

    async def _store(self, bot_id: int, update: Update) -> web.Response:
        replicated = self._ctx.settings.durability == "replicated"
        commit = Commit(record_ttl=URGENT_TTL, replicated=replicated)
        add_update(self._ctx, commit, bot_id, update, self._usernames.get(bot_id))
        try:
            taken = await self._ctx.broker.commit(commit)
        except NotReplicated as exc:
            log.warning(
                "update not replicated in time, Telegram will retry",
                extra={"bot_id": bot_id, "reason": str(exc)},
            )
            return problem(503, f"{NOT_REPLICATED}; Telegram retries it")
        except BrokerUnavailable as exc:
            log.warning(
                "update not stored, Telegram will retry",
                extra={"bot_id": bot_id, "reason": str(exc)},
            )
            return problem(503, "queue unavailable: not stored, retry")
        self._metrics.updates.labels("duplicate" if taken else "stored").inc()
        return web.json_response({"ok": True, "duplicate": bool(taken)})
