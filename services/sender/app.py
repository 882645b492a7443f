"""The sender pool: reads the send queues by priority and delivers through the shared limiter."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Sequence

import orjson
from aiohttp import web

from services.sender.committer import Committer, lost_entries
from services.sender.decision import Decision, Verdict
from services.sender.deliver import Deliverer
from services.sender.lanes import Lanes
from services.sender.metrics import SenderMetrics
from services.sender.pacer import Pacer
from services.sender.settings import SenderSettings
from shared.broker import BrokerUnavailable, Entry
from shared.context import Context, policy_from
from shared.fallback_limiter import FallbackLimiter, FallbackMetrics
from shared.keys import SENDER_GROUP
from shared.limiter import Grant, Limiter
from shared.loops import BACKOFF_FIRST, BACKOFF_MAX, EachTried, repeat
from shared.models import Envelope
from shared.presence import BEAT_EVERY_S, Presence, share
from shared.redis_broker import RedisBroker
from shared.rereading import RETRY_S as REREAD_RETRY_S
from shared.rereading import Rereading, RereadPass
from shared.telegram import TelegramClient, new_session

log = logging.getLogger("floodgate.sender")

PROMOTE_LIMIT = 1000
# Which send queue a read tries first (0 high, 1 normal, 2 low): high most of the time, but
# normal and low get the first pick now and then, so neither starves behind a busy queue above.
READ_ORDERS = ((0, 1, 2),) * 5 + ((1, 0, 2),) * 2 + ((2, 0, 1),)
ROOM_WAIT_S = 1.0


class SenderService:
    """One sender process; any number of them share the queues and the limiter."""

    name = "sender"

    def __init__(self, ctx: Context, settings: SenderSettings) -> None:
        self._ctx = ctx
        self._settings = settings
        self._metrics = SenderMetrics(ctx.registry)
        self._claim_idle = settings.claim_idle(
            ctx.settings.telegram_timeout, ctx.settings.telegram_rate_limit_wait
        )
        self._held: dict[str, set[str]] = {}
        # Entries another sender claimed while this one was frozen: dropped, never sent here.
        self._lost: set[tuple[str, str]] = set()
        # When the last full heartbeat round began; until half the claim idle time after it,
        # no other sender can have claimed an entry this one holds.
        self._touched_at = time.monotonic()
        self._room = asyncio.Event()
        # every send stream of every partition first (a restart), not only of this sender's
        # share: what it held before may be of any
        self._unread = Rereading(s for keys in ctx.keys.shards for s in keys.send_streams)
        # Entries settled while their stream waits to be re-read: such an entry may be in the
        # re-reading's reply still, and is not run again
        self._settled_since: set[tuple[str, str]] = set()
        # held while pending entries are re-read or claimed, so the two never hand out one
        # entry at once
        self._rereading = asyncio.Lock()
        self._reads = itertools.count()
        self._share = ctx.keys.shards  # the partitions this sender reads
        self._limiter, self._presence = self._limiters()
        # a message sent while Redis was away settles only once Redis counts its send
        ready = self._limiter.ready if isinstance(self._limiter, FallbackLimiter) else None
        self._committer = Committer(ctx, self._metrics, self._settled, ready, self._lost_among)
        # Every held message may have a lane: waiting for a token costs nothing but a future, and
        # a lane slot held while waiting would make a high message queue behind normal ones for
        # a slot. Calls to Telegram are bounded by the session's connection pool instead.
        self._lanes: Lanes[Entry] = Lanes(self._handle, self._hand_back, settings.prefetch)
        self._deliverer: Deliverer | None = None
        self._tg: asyncio.TaskGroup | None = None

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return []

    async def run(self, stop: asyncio.Event) -> None:
        """Read, deliver, promote due messages and claim a dead sender's entries until stop."""
        s, errors = self._settings, self._metrics.errors
        async with new_session(self._settings.concurrency) as session:
            client = TelegramClient(
                session, self._ctx.settings.telegram_api_base, self._ctx.settings.telegram_timeout
            )
            limiter = self._limiter
            pacer = Pacer(
                limiter,
                policy_from(self._ctx.settings),
                self._ctx.settings.telegram_rate_limit_wait,
                self._observe_grant,
            )
            self._deliverer = Deliverer(
                self._ctx,
                client,
                self._metrics,
                pacer,
                limiter,
                self._settings.max_deliveries,
                self._settings.concurrency,
                self._still_mine,
            )
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                committer = tg.create_task(self._committer.run())
                loops = [
                    tg.create_task(repeat("sender.read", self._read, stop, errors)),
                    tg.create_task(
                        repeat("sender.reread", self._reread, stop, errors, REREAD_RETRY_S)
                    ),
                    tg.create_task(
                        repeat("sender.promote", self._promote, stop, errors, s.promote_interval)
                    ),
                    tg.create_task(
                        repeat("sender.claim", self._claim, stop, errors, self._claim_idle / 4000)
                    ),
                ]
                # The heartbeat goes on until the drain is over: the entries still in flight
                # must not look abandoned to the other senders while this one finishes them.
                drained = asyncio.Event()
                heartbeat = tg.create_task(
                    repeat(
                        "sender.heartbeat",
                        self._heartbeat,
                        drained,
                        errors,
                        self._claim_idle / 3000,
                    )
                )
                beats = tg.create_task(
                    repeat("sender.presence", self._beat, stop, errors, BEAT_EVERY_S)
                )
                await stop.wait()
                await asyncio.gather(*loops, beats)
                if self._presence is not None:
                    # no longer reading: its partitions, and what it hands back into them, go
                    # to the others now rather than once its last Bot API call has come back
                    await self._presence.leave()
                pacer.close()
                await self._lanes.close()
                self._committer.finish()
                await committer
                drained.set()
                await heartbeat
        if isinstance(self._limiter, FallbackLimiter):
            await self._limiter.close()
        log.info("sender drained")

    def _limiters(self) -> tuple[Limiter, Presence | None]:
        """The shared limiter, degrading to a local share of each rate while Redis is away, and
        this sender's beat, which tells that share."""
        ctx = self._ctx
        if not isinstance(ctx.broker, RedisBroker):
            return ctx.limiter, None
        limiter = FallbackLimiter(
            ctx.limiter,
            policy_from(ctx.settings),
            self._settings.expected_replicas,
            FallbackMetrics(ctx.registry),
            ctx.broker.ping,
            ctx.consumer,
        )
        return limiter, Presence(ctx.broker.client, ctx.keys.senders, ctx.consumer)

    async def _beat(self) -> bool:
        """Tell the other senders this one is alive, and learn how many are."""
        if self._presence is None:  # the embedded backend: one process, nothing to share
            return False
        alive = await self._presence.beat()
        if isinstance(self._limiter, FallbackLimiter):
            self._limiter.observe_senders(alive)
        shards = self._ctx.keys.shards
        self._share = tuple(shards[p] for p in share(len(shards), alive, self._ctx.consumer))
        return False

    def _observe_grant(self, bot_id: int, grant: Grant) -> None:
        self._metrics.decisions_by_scope[grant.scope or "granted"].inc()
        self._metrics.factor_by_bot[str(bot_id)].set(grant.factor)

    @property
    def _inflight(self) -> int:
        return sum(len(ids) for ids in self._held.values())

    def _settled(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            self._forget(decision.entry)
        self._metrics.inflight.set(self._inflight)
        self._room.set()

    async def _read(self) -> bool:
        s = self._settings
        self._room.clear()
        room = s.prefetch - self._inflight
        if room < min(s.batch, s.prefetch // 4):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), ROOM_WAIT_S)
            return True
        ctx = self._ctx
        turn = next(self._reads)
        order = READ_ORDERS[turn % len(READ_ORDERS)]
        # every partition of this sender's share, starting at a different one each time so no
        # partition waits behind a busy one; a stream waiting to be re-read is not read anew
        first = turn % len(self._share)
        shards = (*self._share[first:], *self._share[:first])
        unread = self._unread
        streams = [keys.send_streams[i] for i in order for keys in shards]
        streams = [stream for stream in streams if stream not in unread]
        if not streams:
            await unread.wait_done()
            return True
        try:
            entries = await ctx.broker.read(
                streams, SENDER_GROUP, ctx.consumer, min(room, s.batch), s.block_ms
            )
        except BrokerUnavailable as exc:
            # what the partitions that answered gave is run now; the streams whose reply may
            # have been lost (entries pending under this consumer that no lane holds) wait for
            # their re-reading
            self._dispatch(unread.read_failed(exc))
            raise
        self._dispatch(entries)
        return bool(entries)

    async def _reread(self) -> bool:
        """Re-read this consumer's own pending entries of the streams that wait for it (after
        a restart or a failed read) before they are read anew; those a lane holds already, or
        that settled meanwhile, are not run again. A stream whose partition does not answer is
        tried again a second later; the others go on."""
        ctx, s, unread = self._ctx, self._settings, self._unread
        if not unread:
            return False
        # the room there was when the pass began, for every stream: what the pass and the read
        # loop hand the lanes meanwhile must not leave later streams' entries unread
        room = max(s.prefetch - self._inflight, s.batch)
        async with self._rereading, RereadPass(log) as attempt:
            for stream, recount in unread.waiting():
                # the entries lanes hold come first (oldest): asked for past them
                wanted = room + len(self._held.get(stream, ()))
                entries: list[Entry] | None = None
                async with attempt.of(stream, recount, unread):
                    entries = await ctx.broker.read_own_pending(
                        stream, SENDER_GROUP, ctx.consumer, wanted, recount
                    )
                if attempt.over:
                    break
                if entries is None:  # failed: tried again later
                    continue
                settled = self._settled_since
                held = self._held.get(stream, ())
                entries = [
                    e
                    for e in entries
                    if (e.stream, e.entry_id) not in settled and e.entry_id not in held
                ]
                if settled:
                    self._settled_since = {k for k in settled if k[0] != stream}
                if entries:
                    log.info("re-reading own pending entries", extra={"count": len(entries)})
                    self._metrics.claimed.inc(len(entries))
                    self._dispatch(entries)
        return False

    def _dispatch(self, entries: list[Entry]) -> None:
        """Hand entries to their chats' lanes; one this process already holds (claimed back
        from itself after a long wait) is not run twice."""
        assert self._tg is not None
        for entry in entries:
            held = self._held.setdefault(entry.stream, set())
            if entry.entry_id in held:
                continue
            held.add(entry.entry_id)
            self._lost.discard((entry.stream, entry.entry_id))
            self._lanes.submit(self._tg, _lane_key(entry), entry)
        self._metrics.inflight.set(self._inflight)

    async def _heartbeat(self) -> bool:
        """Keep the entries this process holds from looking abandoned to the other senders,
        and learn which of them another sender claimed while this one was frozen."""
        ctx, began, each = self._ctx, time.monotonic(), EachTried()
        for stream, ids in list(self._held.items()):
            if ids:
                with each.step():
                    lost = await ctx.broker.touch(stream, SENDER_GROUP, ctx.consumer, list(ids))
                    self._mark_lost(stream, lost)
        each.done()
        self._touched_at = began
        return False

    def _mark_lost(self, stream: str, ids: set[str]) -> None:
        fresh = {(stream, i) for i in ids if i in self._held.get(stream, ())} - self._lost
        if fresh:
            log.warning(
                "entries claimed by another sender while this one was frozen; dropping them",
                extra={"count": len(fresh)},
            )
            self._lost |= fresh

    def _heartbeat_fresh(self) -> bool:
        """Whether no other sender can have claimed an entry this one holds since the last
        heartbeat round (which marks the ones that were)."""
        return (time.monotonic() - self._touched_at) * 1000 < self._claim_idle / 2

    async def _lost_among(self, decisions: Sequence[Decision]) -> set[tuple[str, str]]:
        """Which of these decisions' entries another sender claimed: known while the heartbeat
        is fresh, else asked of Redis; a hand-back is always asked (it runs at shutdown, when
        the heartbeat may have stopped)."""
        known = {(d.entry.stream, d.entry.entry_id) for d in decisions} & self._lost
        fresh = self._heartbeat_fresh()
        ask = [
            d
            for d in decisions
            if (d.entry.stream, d.entry.entry_id) not in known
            and (not fresh or d.verdict is Verdict.HAND_BACK)
        ]
        return known | (await lost_entries(self._ctx, ask) if ask else set())

    async def _still_mine(self, entry: Entry) -> bool:
        """Whether this sender still owns ``entry``: known without asking Redis while the last
        heartbeat is recent, else asked (and the entry touched if it is still ours)."""
        key = (entry.stream, entry.entry_id)
        if key in self._lost:
            return False
        if self._heartbeat_fresh():
            return True
        ctx = self._ctx
        lost = await ctx.broker.touch(entry.stream, SENDER_GROUP, ctx.consumer, [entry.entry_id])
        self._mark_lost(entry.stream, lost)
        return key not in self._lost

    def _forget(self, entry: Entry) -> None:
        """An entry settled or dropped: no longer held by this sender."""
        self._held.get(entry.stream, set()).discard(entry.entry_id)
        self._lost.discard((entry.stream, entry.entry_id))
        if entry.stream in self._unread:
            self._settled_since.add((entry.stream, entry.entry_id))

    def _drop(self, entry: Entry) -> None:
        """Forget an entry another sender owns now, without writing anything for it."""
        self._forget(entry)
        self._metrics.lost.inc()
        self._metrics.inflight.set(self._inflight)
        self._room.set()

    async def _handle(self, entry: Entry) -> None:
        """Deliver one entry, riding out a Redis outage in place so the chat's order holds; an
        entry that fails for a reason of its own is dead-lettered after a few tries."""
        assert self._deliverer is not None
        backoff, failures = BACKOFF_FIRST, 0
        while True:
            try:
                decision = await self._deliverer.deliver(entry)
                break
            except BrokerUnavailable as exc:
                self._metrics.errors.labels("sender.deliver").inc()
                log.warning(
                    "redis unavailable during delivery, waiting", extra={"reason": str(exc)}
                )
            except Exception as exc:
                self._metrics.errors.labels("sender.deliver").inc()
                failures += 1
                if failures >= self._settings.max_internal_failures:
                    log.exception(
                        "delivery failed unexpectedly; dead-lettered",
                        extra={"entry_id": entry.entry_id, "failures": failures},
                    )
                    decision = self._deliverer.poisoned(entry, exc)
                    break
                log.exception(
                    "delivery failed unexpectedly; retrying in place",
                    extra={"entry_id": entry.entry_id, "failures": failures},
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
        if decision.verdict is Verdict.LOST:
            log.info(
                "entry claimed by another sender; not sent here", extra={"entry_id": entry.entry_id}
            )
            self._drop(entry)
            return
        self._committer.put(decision)

    def _hand_back(self, entry: Entry) -> None:
        """Return an entry not yet started at shutdown to its queue for another sender."""
        if (entry.stream, entry.entry_id) in self._lost:
            self._drop(entry)
            return
        try:
            env = Envelope.loads(entry.payload)
        except ValueError:
            return
        if entry.seq is not None:
            env.seq = entry.seq
        self._committer.put(Decision(entry, env, Verdict.HAND_BACK))

    async def _promote(self) -> bool:
        moved, each = 0, EachTried()
        for keys in self._share:
            for name in ("deferred", "retry"):
                with each.step():
                    moved += await self._ctx.broker.promote_due(
                        keys.delayed(name), keys.send_streams, PROMOTE_LIMIT
                    )
        each.done()
        return moved > 0

    async def _claim(self) -> bool:
        async with self._rereading:
            await self._claim_stale()
        return False

    async def _claim_stale(self) -> None:
        ctx, s = self._ctx, self._settings
        room = max(0, s.prefetch - self._inflight)
        claimed: list[Entry] = []
        # Not from a stream before this sender has re-read its own pending entries of it: after
        # a restart under the same name those are claimable too once idle, and an entry both
        # claimed and re-read could run twice (the second time after the first settled it as
        # deferred or parked, so the chat's order gate lets it through, and both are sent).
        streams = (s for keys in self._share for s in keys.send_streams if s not in self._unread)
        each = EachTried()  # what was claimed is run even when a later stream fails
        for stream in streams:
            if room - len(claimed) <= 0:
                break
            with each.step():
                claimed += await ctx.broker.claim_stale(
                    stream, SENDER_GROUP, ctx.consumer, self._claim_idle, room - len(claimed)
                )
        if claimed:
            log.info("claimed entries of a silent sender", extra={"count": len(claimed)})
            self._metrics.claimed.inc(len(claimed))
            self._dispatch(claimed)
        each.done()


def _lane_key(entry: Entry) -> tuple[bytes, ...]:
    """Bot and chat of an entry, cheaply: parsed in full only when the lane runs it."""
    try:
        doc = orjson.loads(entry.payload)
        return (str(doc["bot_id"]).encode(), str(doc["params"]["chat_id"]).encode())
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return (entry.entry_id.encode(),)
