"""Degrading to a local limiter while Redis is unreachable.

A sender that holds messages when Redis goes away can still send them: it switches to an
in-memory limiter that allows each bot a conservative share of its rate (the rate divided by the
expected number of replicas), logs and counts the switch, and goes back to the shared limiter as
soon as Redis answers again. Holds after a 429 are kept locally meanwhile.

The local logs also hold every send this process made through the shared limiter, so the first
local window counts them instead of starting empty; and on the way back the process hands its
recent sends to the shared logs (a Redis that restarted empty forgot them), so neither switch
lets a bot fill a window twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.broker import BrokerUnavailable
from shared.limiter import Grant, Limiter, Policy
from shared.memory_limiter import TICKET_PREFIX, MemoryLimiter

log = logging.getLogger("floodgate.limiter")

PROBE_EVERY_S = 1.0


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


class FallbackLimiter:
    """``Limiter`` that prefers the shared one and falls back to a local share of each rate."""

    def __init__(
        self, shared: Limiter, policy: Policy, replicas: int, metrics: FallbackMetrics
    ) -> None:
        share = max(1, replicas)
        local = dataclasses.replace(
            policy,
            bot_rate=policy.bot_rate / share,
            overrides={bot: rate / share for bot, rate in policy.overrides.items()},
        )
        self._shared = shared
        self._local = MemoryLimiter(local)
        self._forward: set[str] = set()  # local tokens handed over while under way
        self._longest_ms = max(policy.chat_window(-1).ms, policy.bot_window(0).ms)
        self._metrics = metrics
        self._degraded_since: float | None = None
        self._next_probe = 0.0

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        return (await self.acquire_many(bot_id, [chat_id]))[0]

    async def acquire_many(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        if self._degraded_since is not None and (
            time.monotonic() < self._next_probe or not await self._recover()
        ):
            return await self._local.acquire_many(bot_id, chat_ids)
        try:
            grants = await self._shared.acquire_many(bot_id, chat_ids)
        except BrokerUnavailable as exc:
            self._degrade(exc)
            return await self._local.acquire_many(bot_id, chat_ids)
        for chat_id, grant in zip(chat_ids, grants, strict=True):
            if grant.granted:  # known locally too, for a switch to come
                self._local.note(bot_id, chat_id, grant.ticket)
        return grants

    async def sent(self, bot_id: int, chat_id: int | str, ticket: str, age_ms: int = 0) -> None:
        await self._local.sent(bot_id, chat_id, ticket, age_ms)
        if ticket.startswith(TICKET_PREFIX) and ticket not in self._forward:
            return
        self._forward.discard(ticket)  # a local send under way at the switch back: ended now
        try:
            await self._shared.sent(bot_id, chat_id, ticket, age_ms)
        except BrokerUnavailable as exc:  # the token stays in flight until its lease runs out
            self._degrade(exc)

    async def flush(self) -> None:
        await self._shared.flush()

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        await self._local.hold(bot_id, chat_id, seconds)
        try:
            await self._shared.hold(bot_id, chat_id, seconds)
        except BrokerUnavailable as exc:
            self._degrade(exc)

    def _degrade(self, exc: BrokerUnavailable) -> None:
        self._next_probe = time.monotonic() + PROBE_EVERY_S
        if self._degraded_since is not None:
            return
        self._degraded_since = time.monotonic()
        self._metrics.switches.inc()
        self._metrics.active.set(1)
        log.warning(
            "redis unreachable: limiting locally with a share of each rate",
            extra={"reason": str(exc)},
        )

    async def _recover(self) -> bool:
        """Back to the shared limiter, first handing it this process's recent sends (those made
        on its own meanwhile, and those a restarted Redis forgot), so the shared logs count them
        and their windows are not filled a second time."""
        if self._degraded_since is None:
            return True
        own = self._local.recent(self._longest_ms)
        # A shared token still under way is in Redis's logs already, a lease ahead (unless Redis
        # restarted empty; then it is logged when its call ends). A local one still under way
        # is logged as sent now, and again when its call ends.
        moves = [
            (bot, chat, ticket, 0 if busy else age_ms)
            for bot, chat, ticket, age_ms, busy in own
            if not busy or ticket.startswith(TICKET_PREFIX)
        ]
        self._forward.update(t for _, _, t, _, busy in own if busy and t.startswith(TICKET_PREFIX))
        results = await asyncio.gather(
            *(self._shared.sent(bot, chat, ticket, age) for bot, chat, ticket, age in moves),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BrokerUnavailable):
                self._degrade(result)
                return False
            if isinstance(result, BaseException):
                raise result
        log.info(
            "redis back: shared limiter again",
            extra={
                "local_for_s": round(time.monotonic() - self._degraded_since, 1),
                "sends_handed_over": len(moves),
            },
        )
        self._degraded_since = None
        self._metrics.active.set(0)
        return True
