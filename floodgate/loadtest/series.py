"""Time series for the plots, from the ledger, the deliveries and the samples."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from floodgate.loadtest.ledger import ANSWER_PREFIX, Ledger
from floodgate.observe import Delivery, percentile

PRIORITIES = ("high", "normal", "low")
LATENCY_WINDOW_MAX_S = 5
LATENCY_WINDOWS = 30  # windows over a run, at least 1 s each


@dataclass(frozen=True, slots=True)
class Delivered:
    """One accepted message's first delivery: when (seconds from the start) and its latency."""

    t: float
    latency: float
    priority: str
    bot_id: int
    tag: str


def first_deliveries(
    ledger: Ledger, deliveries: list[Delivery], started_wall: float
) -> list[Delivered]:
    """Each accepted message's first delivery, in delivery order."""
    done: list[Delivered] = []
    seen: set[str] = set()
    for d in sorted(deliveries, key=lambda d: d.seq):
        tag = d.text.split(" ", 1)[0]
        if tag in seen or tag not in ledger.requested_at:
            continue
        seen.add(tag)
        latency = max(0.0, d.ts - ledger.requested_at[tag])
        done.append(Delivered(d.ts - started_wall, latency, ledger.priority[tag], d.bot_id, tag))
    return done


def per_second(done: list[Delivered], seconds: int) -> dict[str, list[int]]:
    """Deliveries in each second, by priority."""
    series = {p: [0] * seconds for p in PRIORITIES}
    for d in done:
        second = int(d.t)
        if 0 <= second < seconds and d.priority in series:
            series[d.priority][second] += 1
    return series


def busiest_bot(done: list[Delivered], seconds: int) -> list[int]:
    """In each second, the deliveries of the bot that had the most."""
    counts: dict[int, Counter[int]] = defaultdict(Counter)
    for d in done:
        counts[int(d.t)][d.bot_id] += 1
    return [max(counts[s].values(), default=0) for s in range(seconds)]


def latency_window(seconds: int) -> int:
    """Seconds per latency window: about LATENCY_WINDOWS over the run, 1 to 5 s each."""
    return max(1, min(LATENCY_WINDOW_MAX_S, seconds // LATENCY_WINDOWS))


def latency_windows(
    done: list[Delivered], seconds: int
) -> tuple[list[float], dict[str, dict[str, list[float]]]]:
    """p50 and p99 latency per priority in windows of ``latency_window`` (NaN where none)."""
    width = latency_window(seconds)
    windows = math.ceil(seconds / width)
    buckets: dict[str, list[list[float]]] = {p: [[] for _ in range(windows)] for p in PRIORITIES}
    for d in done:
        w = int(d.t // width)
        if 0 <= w < windows and d.priority in buckets:
            buckets[d.priority][w].append(d.latency)
    mids = [(w + 0.5) * width for w in range(windows)]
    out = {
        p: {
            q: [percentile(b, v) if b else math.nan for b in buckets[p]]
            for q, v in (("p50", 0.5), ("p99", 0.99))
        }
        for p in PRIORITIES
    }
    return mids, out


def answer_latencies(
    ledger: Ledger, done: list[Delivered], started_wall: float
) -> list[tuple[float, float]]:
    """(when the user wrote, seconds until the bot's answer reached the chat), per answer."""
    return [
        (ledger.said_at[d.tag] - started_wall, d.t + started_wall - ledger.said_at[d.tag])
        for d in done
        if d.tag.startswith(ANSWER_PREFIX) and d.tag in ledger.said_at
    ]


def backlog(ledger: Ledger, done: list[Delivered], started_wall: float, seconds: int) -> list[int]:
    """Low-priority messages accepted and not yet delivered, at the end of each second."""
    change = [0] * (seconds + 1)
    for tag, priority in ledger.priority.items():
        if priority == "low":
            change[min(seconds, max(0, int(ledger.requested_at[tag] - started_wall)))] += 1
    for d in done:
        if d.priority == "low":
            change[min(seconds, max(0, int(d.t)))] -= 1
    level, out = 0, []
    for delta in change[:seconds]:
        level += delta
        out.append(level)
    return out
