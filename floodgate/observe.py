"""Reading what the sandbox received, for the demo, the benchmarks and the end-to-end tests."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Delivery:
    """What the sandbox recorded of one delivered message."""

    seq: int
    ts: float
    bot_id: int
    chat_id: int
    text: str
    message_id: int | None = None


@dataclass
class Received:
    """Every message the sandbox delivered, fetched incrementally."""

    messages: list[Delivery] = field(default_factory=list)
    last_seq: int = 0

    async def refresh(self, session: aiohttp.ClientSession, sandbox_url: str) -> None:
        """Fetch what arrived since the last call."""
        while True:
            params = {"since_seq": str(self.last_seq), "limit": "5000"}
            async with session.get(f"{sandbox_url}/_sandbox/messages", params=params) as resp:
                doc = await resp.json()
            batch: list[dict[str, Any]] = doc["messages"]
            for m in batch:
                self.messages.append(
                    Delivery(
                        m["seq"],
                        m["ts"],
                        m["bot_id"],
                        m["chat_id"],
                        m.get("text") or "",
                        m.get("message_id"),
                    )
                )
                self.last_seq = max(self.last_seq, m["seq"])
            if len(batch) < 5000:
                return

    def by_tag(self) -> dict[str, list[Delivery]]:
        """Deliveries grouped by the tag that starts their text."""
        found: dict[str, list[Delivery]] = defaultdict(list)
        for m in self.messages:
            found[m.text.split(" ", 1)[0]].append(m)
        return found


async def sandbox_stats(session: aiohttp.ClientSession, sandbox_url: str) -> dict[str, Any]:
    """The sandbox's counters (requests, delivered, 429, sent_during_hold, ...)."""
    async with session.get(f"{sandbox_url}/_sandbox/stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def out_of_order(deliveries: list[Delivery], order: dict[str, int], keyof: Any) -> int:
    """Deliveries that reached a (key) later than a message accepted after them."""
    last: dict[Any, int] = {}
    bad = 0
    for d in sorted(deliveries, key=lambda d: d.seq):
        tag = d.text.split(" ", 1)[0]
        if tag not in order:
            continue
        key = keyof(tag, d)
        if order[tag] < last.get(key, -1):
            bad += 1
        last[key] = max(last.get(key, -1), order[tag])
    return bad
