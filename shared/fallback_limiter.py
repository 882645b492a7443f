"""Degrading to a local limiter while Redis is unreachable, and back, without a window overrun.

A sender that holds messages when Redis goes away can still send them: it switches to an
in-memory limiter that allows each bot a share of its rate, logs and counts the switch, and goes
back to the shared limiter as soon as Redis answers again. Only a failed connection switches: a
pool with no connection free (``BrokerBusy``) is back-pressure, and the caller waits.

- **The share** (``shared.fallback_share``): the bot's rate divided by the senders alive just
  before Redis went away (each beats in Redis every second, ``shared/presence.py``),
  at least a configured floor, and only the chats this sender owns among them.
- **The switch** starts from what the shared logs may hold: every send granted through Redis by
  any sender is unknown here, and may have filled any window up to the switch. So the local
  windows count as full at the switch (plus ``QUIET_SLACK_S`` for requests still on their way)
  and the first local send of a bot, or to a chat, waits until that window has passed. Holds
  the shared limiter reported while Redis was up (refusals for a 429 hold) are kept here too.
- **The way back** hands Redis this process's recent sends (those made on its own meanwhile, and
  those a restarted Redis forgot) and the holds learnt from 429s meanwhile, before the first
  shared decision, and before any message sent meanwhile is settled (``ready``): the next message
  of its chat can only go once Redis counts this one. Other senders may still limit on their own
  for up to ``PROBE_EVERY_S`` and a window more, unknown to Redis: until then this process keeps
  to its local share and its own chats as well as to the shared logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.broker import BrokerBusy, BrokerUnavailable
from shared.fallback_share import Share
from shared.limiter import Grant, Limiter, Policy
from shared.memory_limiter import TICKET_PREFIX, MemoryLimiter

log = logging.getLogger("floodgate.limiter")

PROBE_EVERY_S = 0.2  # how soon after Redis is back a sender limiting on its own notices
NOT_MINE = Grant(1000, "chat")  # another sender's chat: wait for Redis
QUIET_SLACK_S = 0.25  # a request granted just before Redis went away may still be on its way
OWED_SWEEP_AT = 1_000  # holds owed to Redis kept before those that ended are dropped

Scope = tuple[int, int | str | None]


class FallbackMetrics:
    """How often and how long the sender limited on its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.switches = Counter(
            "floodgate_limiter_fallback_total",
            "Switches to the local limiter because Redis was unreachable.",
            registry=registry,
        )
        self.active = Gauge(
            "floodgate_limiter_fallback_active",
            "1 while this process limits on its own.",
            registry=registry,
        )
        self.senders = Gauge(
            "floodgate_limiter_fallback_share",
            "Senders whose share of each bot's rate this process would keep on its own.",
            registry=registry,
        )


class FallbackLimiter:
    """``Limiter`` that prefers the shared one and falls back to a local share of each rate."""

    def __init__(
        self,
        shared: Limiter,
        policy: Policy,
        floor: int,
        metrics: FallbackMetrics,
        ping: Callable[[], Awaitable[None]],
        name: str = "",
    ) -> None:
        self._shared = shared
        self._ping = ping  # BrokerUnavailable unless Redis answers
        self._policy = policy
        self._share = Share(name, floor)
        self._local = MemoryLimiter(self._share.policy(policy))
        self._forward: set[str] = set()  # local tokens handed over while under way
        self._owed: dict[Scope, float] = {}  # holds not yet in Redis: until (monotonic s)
        self._longest_ms = max(policy.chat_window(-1).ms, policy.bot_window(0).ms)
        self._metrics = metrics
        self._degraded_since: float | None = None
        self._prober: asyncio.Task[None] | None = None
        self._both_until = 0.0  # after a way back: the local share holds too until then
        self._recovering = asyncio.Lock()
        metrics.senders.set(self._share.senders)

    def observe_senders(self, names: Sequence[str]) -> None:
        """The senders alive as Redis says now, this one included: if Redis goes away, each
        keeps to its share of every bot's rate and sends only to its own part of the chats."""
        self._share.observe(names)
        if self._degraded_since is None:
            self._local.policy = self._share.policy(self._policy)
            self._metrics.senders.set(self._share.senders)

    async def _local_many(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        """Local decisions for the chats this sender owns; the others wait for Redis."""
        mine = [i for i, chat in enumerate(chat_ids) if self._share.owns(bot_id, chat)]
        grants = await self._local.acquire_many(bot_id, [chat_ids[i] for i in mine])
        return _place(len(chat_ids), mine, grants, NOT_MINE)

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        return (await self.acquire_many(bot_id, [chat_id]))[0]

    async def acquire_many(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        if self._degraded_since is not None:
            return await self._local_many(bot_id, chat_ids)
        if self._owed:
            await self._pay_owed()
            if self._degraded_since is not None:
                return await self._local_many(bot_id, chat_ids)
        if time.monotonic() < self._both_until:
            return await self._both(bot_id, chat_ids)
        return await self._shared_many(bot_id, chat_ids)

    async def _shared_many(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        try:
            grants = await self._shared.acquire_many(bot_id, chat_ids)
        except BrokerBusy:
            raise
        except BrokerUnavailable as exc:
            self._degrade(exc)
            return await self._local_many(bot_id, chat_ids)
        self._mirror(bot_id, chat_ids, grants)
        return grants

    async def _both(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        """While other senders may still limit on their own, unknown to Redis: only the chats
        this sender owns, and no more than its local share of the bot's window."""
        room, wait_ms = self._local.bot_room(bot_id)
        window = self._local.policy.bot_window(bot_id)
        mine = [i for i, chat in enumerate(chat_ids) if self._share.owns(bot_id, chat)]
        asked, later = mine[:room], set(mine[room:])
        grants = await self._shared_many(bot_id, [chat_ids[i] for i in asked]) if asked else []
        answers = _place(len(chat_ids), asked, grants, NOT_MINE)
        # a sender without a part of this bot's window (fewer sends than senders) waits a window
        per_send = window.ms / window.limit if window.limit else window.ms
        full = Grant(max(1, wait_ms, int(per_send)), "bot")
        return [full if i in later else answer for i, answer in enumerate(answers)]

    def _mirror(self, bot_id: int, chat_ids: Sequence[int | str], grants: list[Grant]) -> None:
        """Keep locally what the shared limiter said, for a switch to come: its grants as
        sends, its holds as holds."""
        for chat_id, grant in zip(chat_ids, grants, strict=False):
            if grant.granted:
                self._local.note(bot_id, chat_id, grant.ticket)
            elif grant.scope == "bot_hold":
                self._local.note_hold(bot_id, None, grant.wait_ms)
            elif grant.scope == "chat_hold":
                self._local.note_hold(bot_id, chat_id, grant.wait_ms)

    async def sent(self, bot_id: int, chat_id: int | str, ticket: str, age_ms: int = 0) -> None:
        await self._local.sent(bot_id, chat_id, ticket, age_ms)
        if ticket.startswith(TICKET_PREFIX) and ticket not in self._forward:
            return
        self._forward.discard(ticket)  # a local send under way at the switch back: ended now
        try:
            await self._shared.sent(bot_id, chat_id, ticket, age_ms)
        except BrokerBusy:  # the token stays in flight until its lease runs out
            return
        except BrokerUnavailable as exc:
            self._degrade(exc)

    async def flush(self) -> None:
        await self._shared.flush()

    async def close(self) -> None:
        """Stop probing for Redis (the process stops)."""
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        await self._local.hold(bot_id, chat_id, seconds)
        if self._degraded_since is not None:
            self._owe(bot_id, chat_id, seconds)
            return
        try:
            await self._shared.hold(bot_id, chat_id, seconds)
        except BrokerUnavailable as exc:
            self._owe(bot_id, chat_id, seconds)
            if not isinstance(exc, BrokerBusy):
                self._degrade(exc)

    def _owe(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        now = time.monotonic()
        if len(self._owed) >= OWED_SWEEP_AT:  # holds that ended meanwhile are owed no more
            self._owed = {scope: until for scope, until in self._owed.items() if until > now}
        until = now + seconds
        self._owed[(bot_id, chat_id)] = max(self._owed.get((bot_id, chat_id), 0.0), until)

    async def _pay_owed(self) -> None:
        """Hand Redis the holds it could not take when they came (no pooled connection was
        free: ``BrokerBusy`` switches nothing, so no way back hands them over), before the
        next shared decision: other senders learn of the 429 too."""
        now = time.monotonic()
        owed, self._owed = self._owed, {}
        for (bot_id, chat_id), until in owed.items():
            if until <= now:
                continue
            try:
                await self._shared.hold(bot_id, chat_id, until - now)
            except BrokerUnavailable as exc:
                self._owe(bot_id, chat_id, until - time.monotonic())
                if not isinstance(exc, BrokerBusy):
                    self._degrade(exc)
                return

    async def ready(self) -> None:
        """Return once Redis counts every send made here on its own; ``BrokerUnavailable`` while
        it cannot. A message sent on its own must not be settled before: the next message of
        its chat would go through Redis, which would not know of this one."""
        if self._degraded_since is not None and not await self._recover():
            raise BrokerUnavailable("redis unreachable: local sends not handed over yet")

    def _degrade(self, exc: BrokerUnavailable) -> None:
        now = time.monotonic()
        if self._degraded_since is not None:
            return
        self._prober = asyncio.get_running_loop().create_task(self._probe())
        self._degraded_since = now
        self._share.freeze()
        senders = self._share.senders
        self._local.policy = self._share.policy(self._policy)
        self._local.quiet(QUIET_SLACK_S * 1000)
        self._metrics.switches.inc()
        self._metrics.active.set(1)
        log.warning(
            "redis unreachable: limiting locally with a share of each rate",
            extra={"reason": str(exc), "senders": senders},
        )

    async def _probe(self) -> None:
        """Try the way back every PROBE_EVERY_S until it works, in the background: no local
        decision waits for a Redis that does not answer, and none is made long after it does."""
        while self._degraded_since is not None:
            await asyncio.sleep(PROBE_EVERY_S)
            try:
                await self._recover()
            except Exception:
                log.exception("probing for redis failed; trying again")

    async def _recover(self) -> bool:
        """Back to the shared limiter, first handing it this process's recent sends and the
        holds it learnt meanwhile, so their windows are not filled a second time."""
        async with self._recovering:
            if self._degraded_since is None:
                return True
            try:
                await self._ping()
            except BrokerUnavailable:
                return False
            own = self._local.recent(self._longest_ms)
            # A shared token still under way is in Redis's logs already, a lease ahead, or is
            # put back by its next renewal (Redis restarted empty, or trimmed it while away
            # longer than a lease: extend.lua adds it again). A local one still under way is
            # logged as sent now, and again when its call ends.
            moves = [
                (bot, chat, ticket, 0 if busy else age_ms)
                for bot, chat, ticket, age_ms, busy in own
                if not busy or ticket.startswith(TICKET_PREFIX)
            ]
            self._forward.update(
                t for _, _, t, _, busy in own if busy and t.startswith(TICKET_PREFIX)
            )
            now = time.monotonic()
            holds = [(scope, until - now) for scope, until in self._owed.items() if until > now]
            results = await asyncio.gather(
                *(self._shared.sent(bot, chat, ticket, age) for bot, chat, ticket, age in moves),
                *(self._shared.hold(bot, chat, left) for (bot, chat), left in holds),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BrokerUnavailable):
                    self._degrade(result)
                    return False
                if isinstance(result, BaseException):
                    raise result
            self._back(len(moves), [scope for scope, _ in holds])
            return True

    def _back(self, handed: int, holds: list[Scope]) -> None:
        assert self._degraded_since is not None
        now = time.monotonic()
        handed_holds = set(holds)  # and those that ended meanwhile are owed no more
        self._owed = {
            scope: until
            for scope, until in self._owed.items()
            if until > now and scope not in handed_holds
        }
        self._both_until = now + PROBE_EVERY_S + QUIET_SLACK_S + self._longest_bot_s()
        log.info(
            "redis back: shared limiter again",
            extra={
                "local_for_s": round(now - self._degraded_since, 1),
                "sends_handed_over": handed,
                "holds_handed_over": len(holds),
            },
        )
        self._degraded_since = None
        self._metrics.active.set(0)

    def _longest_bot_s(self) -> float:
        bots = [self._policy.bot_window(bot).ms for bot in (0, *self._policy.overrides)]
        return max(bots) / 1000


def _place(size: int, at: list[int], grants: list[Grant], other: Grant) -> list[Grant]:
    """``grants`` at the positions ``at`` of a list of ``size``, ``other`` everywhere else."""
    placed = [other] * size
    for i, grant in zip(at, grants, strict=True):
        placed[i] = grant
    return placed
