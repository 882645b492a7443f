"""What the sandbox saw: delivered messages, recent requests and counters."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class MessageRecord:
    """One delivered message. ``ts`` is wall-clock seconds, ``mono`` the limiter's clock."""

    seq: int
    ts: float
    mono: float
    bot_id: int
    chat_id: int
    method: str
    message_id: int
    text: str | None
    params: dict[str, Any]
    outcome: str

    def as_json(self) -> dict[str, Any]:
        """The record as the control API shows it."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "mono": self.mono,
            "bot_id": self.bot_id,
            "chat_id": self.chat_id,
            "method": self.method,
            "message_id": self.message_id,
            "text": self.text,
            "params": self.params,
            "outcome": self.outcome,
        }


class MessageLog:
    """Delivered messages in order, by a global ``seq``; the oldest go over ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.last_seq = 0
        self._items: list[MessageRecord] = []
        self._first_seq = 1

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[MessageRecord]:
        return iter(self._items)

    def next_seq(self) -> int:
        """Allocate the seq of the next record."""
        self.last_seq += 1
        return self.last_seq

    def append(self, record: MessageRecord) -> None:
        """Add a record; trimming in chunks keeps appends O(1) amortized."""
        if not self._items:
            self._first_seq = record.seq
        self._items.append(record)
        if len(self._items) > self.capacity + max(1, self.capacity // 4):
            drop = len(self._items) - self.capacity
            del self._items[:drop]
            self._first_seq += drop

    def clear(self) -> None:
        """Forget every record; seq keeps increasing so readers' cursors stay valid."""
        self._items.clear()
        self._first_seq = self.last_seq + 1

    def select(
        self,
        bot_id: int | None = None,
        chat_id: int | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> list[MessageRecord]:
        """Records with seq above ``since_seq``, optionally of one bot and/or chat."""
        start = max(0, since_seq + 1 - self._first_seq)
        found: Iterator[MessageRecord] = itertools.islice(self._items, start, None)
        if bot_id is not None:
            found = (r for r in found if r.bot_id == bot_id)
        if chat_id is not None:
            found = (r for r in found if r.chat_id == chat_id)
        return list(itertools.islice(found, limit))


class RequestLog:
    """The last API requests, in a ring of bounded size."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[tuple[float, int | None, int | None, str, int, str]] = deque(
            maxlen=capacity
        )

    def __len__(self) -> int:
        return len(self._items)

    def add(
        self,
        *,
        ts: float,
        bot_id: int | None,
        chat_id: int | None,
        method: str,
        status: int,
        outcome: str,
    ) -> None:
        """Note one answered request."""
        self._items.append((ts, bot_id, chat_id, method, status, outcome))

    def resize(self, capacity: int) -> None:
        """Change the ring size, keeping the newest entries."""
        if capacity != self._items.maxlen:
            self._items = deque(self._items, maxlen=capacity)

    def clear(self) -> None:
        """Forget every entry."""
        self._items.clear()

    def last(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` requests, oldest first."""
        skip = max(0, len(self._items) - limit)
        return [
            {
                "ts": ts,
                "bot_id": bot_id,
                "chat_id": chat_id,
                "method": method,
                "status": status,
                "outcome": outcome,
            }
            for ts, bot_id, chat_id, method, status, outcome in itertools.islice(
                self._items, skip, None
            )
        ]


@dataclass(slots=True)
class Stats:
    """Counters since start or the last reset.

    ``too_many_requests`` counts every 429, ``sent_during_hold`` the subset that came while
    a hold was on; ``server_errors`` are 5xx that did not deliver, ``client_errors`` are
    4xx other than 429; ``limit_violations`` counts deliveries that broke a window (only
    possible with limits off: a self-check).
    """

    requests: int = 0
    delivered: int = 0
    too_many_requests: int = 0
    sent_during_hold: int = 0
    server_errors: int = 0
    after_send_errors: int = 0
    timeouts: int = 0
    client_errors: int = 0
    limit_violations: int = 0

    def as_json(self) -> dict[str, int]:
        """The counters under the control API's names."""
        return {
            "requests": self.requests,
            "delivered": self.delivered,
            "429": self.too_many_requests,
            "sent_during_hold": self.sent_during_hold,
            "5xx": self.server_errors,
            "5xx_after_send": self.after_send_errors,
            "timeouts": self.timeouts,
            "4xx": self.client_errors,
            "limit_violations": self.limit_violations,
        }
