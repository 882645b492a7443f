"""getUpdates long polling, for bots without a public webhook URL.

One ingest replica polls a bot at a time: it holds a lease in Redis, renewed on every round, so a
second replica stands by and takes over when the first stops renewing. The updates of a round
and the next offset are stored in one atomic step, so a restart neither loses an update (the
offset moves only with the updates it confirms) nor stores one twice (update ids are claimed).
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from services.ingest.webhook import URGENT_TTL, WebhookMetrics, add_update
from shared.broker import BrokerUnavailable, Commit, NotReplicated
from shared.context import Context
from shared.http_errors import field_errors, summary
from shared.loops import BACKOFF_FIRST, BACKOFF_MAX, sleep_or_stop
from shared.telegram import Outcome, TelegramClient
from shared.updates import Update, unreadable_update, usable_update_id

log = logging.getLogger("floodgate.ingest")

BATCH = 100


class Poller:
    """Polls one bot's updates while this replica holds its lease."""

    def __init__(
        self,
        ctx: Context,
        bot_id: int,
        client: TelegramClient,
        username: str | None,
        timeout_s: float,
        lease_ms: int,
        metrics: WebhookMetrics,
    ) -> None:
        self._ctx = ctx
        self._bot_id = bot_id
        self._client = client
        self._username = username
        self._timeout_s = timeout_s
        self._lease_ms = lease_ms
        self._metrics = metrics
        # a round stored on the primary that no replica confirmed (replicated durability): its
        # offset must not be given to Telegram, which would drop those updates for good, until
        # a replica has it
        self._unreplicated: Commit | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; back off on trouble, stand by while another replica polls."""
        backoff = BACKOFF_FIRST
        while not stop.is_set():
            try:
                if await self._ctx.broker.lease(
                    self._ctx.keys.of_bot(self._bot_id).poll_lease(self._bot_id),
                    self._ctx.consumer,
                    self._lease_ms,
                ):
                    await self._round()
                else:
                    await sleep_or_stop(stop, self._lease_ms / 3000)
                backoff = BACKOFF_FIRST
            except (BrokerUnavailable, PollError) as exc:
                log.warning(
                    "polling failed, backing off",
                    extra={"bot_id": self._bot_id, "reason": str(exc)},
                )
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception as exc:
                # A fault of ours or an answer nobody foresaw: this bot's polling backs off and
                # tries again; the ingest process, its API and the other bots' polling go on
                log.error(
                    "polling failed unexpectedly, backing off",
                    extra={"bot_id": self._bot_id, "reason": f"{type(exc).__name__}: {exc}"[:300]},
                )
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _round(self) -> None:
        keys = self._ctx.keys
        if self._unreplicated is not None:
            # the same commit again (its updates are claimed: stored once) waits for a replica
            # anew; NotReplicated again backs off, and getUpdates is not asked meanwhile
            await self._ctx.broker.commit(self._unreplicated)
            self._unreplicated = None
        record = await self._ctx.broker.get_record(keys.poll_offset(self._bot_id)) or {}
        offset = int(record.get("next", "0"))
        token = self._ctx.bots[self._bot_id]
        params = {"offset": offset, "timeout": self._timeout_s, "limit": BATCH}
        result = await self._client.call(token, "getUpdates", params)
        if result.outcome is not Outcome.OK or not isinstance(result.result, list):
            raise PollError(f"getUpdates: {result.description or result.status}")
        if not result.result:
            return
        updates: dict[int, Update] = {}  # by update_id: the first copy of one sent twice
        for raw in result.result:
            update_id = usable_update_id(raw)
            if update_id is None or update_id in updates:
                continue
            try:
                updates[update_id] = Update.model_validate(raw)
            except ValidationError as exc:
                # confirmed to Telegram with the rest: published as an unreadable update
                # (kind "other") rather than lost without a trace
                log.warning(
                    "unreadable update kept without its content",
                    # the fields at fault, not pydantic's text, which quotes what users wrote
                    extra={"bot_id": self._bot_id, "reason": summary(field_errors(exc))[:300]},
                )
                updates[update_id] = unreadable_update(update_id)
        if not updates:
            raise PollError("getUpdates answered no update with a usable update_id")
        newest = max(updates)
        commit = Commit(
            record_ttl=URGENT_TTL, replicated=self._ctx.settings.durability == "replicated"
        )
        for update in updates.values():
            add_update(self._ctx, commit, self._bot_id, update, self._username)
        commit.records.append((keys.poll_offset(self._bot_id), "", {"next": str(newest + 1)}))
        try:
            taken = await self._ctx.broker.commit(commit)
        except NotReplicated:
            self._unreplicated = commit
            raise
        self._metrics.updates.labels("stored").inc(len(updates) - len(taken))
        self._metrics.updates.labels("duplicate").inc(len(taken))


class PollError(Exception):
    """getUpdates did not answer with updates (a webhook is set, a bad token, a network fault)."""
