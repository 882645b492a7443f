"""Loops that never die silently: each failure is logged, counted and backed off from."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import Counter

from shared.broker import BrokerUnavailable

log = logging.getLogger("floodgate.loop")

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def repeat(
    name: str,
    step: Callable[[], Awaitable[bool]],
    stop: asyncio.Event,
    errors: Counter,
    idle: float = 0.0,
) -> None:
    """Run ``step`` until ``stop``; sleep ``idle`` when it reports no work (returns False).

    A failing step is logged with the loop's name, counted in ``errors`` and retried after a
    backoff that doubles up to ``BACKOFF_MAX`` while the failures go on.
    """
    errors.labels(name)  # the series exists from the start, at 0 (alerts and tests read it)
    backoff = BACKOFF_FIRST
    while not stop.is_set():
        try:
            busy = await step()
        except BrokerUnavailable as exc:
            errors.labels(name).inc()
            log.warning(
                "backend unavailable, backing off",
                extra={"loop": name, "reason": str(exc), "retry_in_s": backoff},
            )
            await sleep_or_stop(stop, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        except Exception:
            errors.labels(name).inc()
            log.exception("loop step failed", extra={"loop": name, "retry_in_s": backoff})
            await sleep_or_stop(stop, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        if backoff > BACKOFF_FIRST:
            log.info("loop recovered", extra={"loop": name})
        backoff = BACKOFF_FIRST
        if not busy and idle:
            await sleep_or_stop(stop, idle)


class EachTried:
    """Steps of one round that are each tried even when another fails (one per partition, so
    a partition whose Redis is away holds up none of the others): ``step()`` keeps the first
    outage, ``done()`` raises it once every step has had its turn."""

    def __init__(self) -> None:
        self._first: BrokerUnavailable | None = None

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        try:
            yield
        except BrokerUnavailable as exc:
            self._first = self._first or exc

    def done(self) -> None:
        if self._first is not None:
            raise self._first
