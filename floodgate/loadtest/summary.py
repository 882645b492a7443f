"""``summary.json``: the figures of a run and its verdicts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from floodgate.loadtest.ledger import Ledger
from floodgate.loadtest.plan import Plan
from floodgate.loadtest.sampler import Sample
from floodgate.loadtest.series import PRIORITIES, Delivered, answer_latencies
from floodgate.observe import Delivery, percentile

MB = 1024 * 1024
STEADY_FROM = 0.1  # share of the duration: the steady stretch runs from here to the broadcast
GROWTH_FACTOR = 2.0
GROWTH_SLACK = 20  # messages: small queues come and go at steady load


@dataclass(frozen=True, slots=True)
class Run:
    """Everything a run produced."""

    plan: Plan
    ledger: Ledger
    deliveries: list[Delivery]
    done: list[Delivered]
    samples: list[Sample]
    started_wall: float
    duration: float
    config: dict[str, Any]


def _quantiles(values: list[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 3),
        "p90": round(percentile(values, 0.9), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values, default=0.0), 3),
    }


def duplicates(ledger: Ledger, deliveries: list[Delivery]) -> int:
    """Deliveries beyond the first of an accepted message."""
    counts = Counter(d.text.split(" ", 1)[0] for d in deliveries)
    return sum(n - 1 for tag, n in counts.items() if n > 1 and tag in ledger.requested_at)


def throughput(run: Run) -> dict[str, float]:
    """Delivered per second from the first request to the last delivery, and the best second."""
    if not run.done:
        return {"throughput_per_s": 0.0, "peak_throughput_per_s": 0.0}
    first = min(run.ledger.requested_at.values()) - run.started_wall
    span = max(d.t for d in run.done) - first
    best = Counter(int(d.t) for d in run.done).most_common(1)[0][1]
    return {
        "throughput_per_s": round(len(run.done) / span, 2) if span > 0 else 0.0,
        "peak_throughput_per_s": float(best),
    }


def processes(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """Mean and peak CPU (% of one core) and peak RSS (MB) of every process measured."""
    names = sorted({n for s in samples for n in s.rss})
    out: dict[str, dict[str, float]] = {}
    for name in names:
        cpu = [s.cpu[name] for s in samples if name in s.cpu]
        rss = [s.rss[name] for s in samples if name in s.rss]
        out[name] = {
            "cpu_percent_mean": round(sum(cpu) / len(cpu), 1) if cpu else 0.0,
            "cpu_percent_peak": round(max(cpu, default=0.0), 1),
            "rss_mb_peak": round(max(rss, default=0) / MB, 1),
            "rss_mb_last": round(rss[-1] / MB, 1) if rss else 0.0,
        }
    return out


def peak_queues(samples: list[Sample]) -> dict[str, int]:
    """The deepest each queue got, and the total."""
    peaks = {"total": max((s.total_queued for s in samples), default=0)}
    for name in samples[0].queues if samples else ():
        peaks[name] = max(s.queues[name] for s in samples)
    return peaks


def queue_verdict(run: Run) -> dict[str, Any]:
    """Back to the steady depth after the burst, empty at the end, no growth at steady load."""
    steady = [s for s in run.samples if STEADY_FROM * run.duration <= s.t < run.plan.broadcast_at]
    half = len(steady) // 2
    first = [s.total_queued for s in steady[:half]] or [0]
    second = [s.total_queued for s in steady[half:]] or [0]
    growing = max(second) > GROWTH_FACTOR * max(first) + GROWTH_SLACK
    baseline = max(first + second)
    after = [s for s in run.samples if s.t >= run.plan.burst_at]
    peak = max(after, key=lambda s: s.total_queued, default=None)
    back = next((s.t for s in after if peak and s.t > peak.t and s.total_queued <= baseline), None)
    final = run.samples[-1].total_queued if run.samples else 0
    return {
        "steady_depth_max": baseline,
        "growing_at_steady_load": growing,
        "burst_peak_depth": peak.total_queued if peak else 0,
        "back_to_steady_s_after_burst": round(back - run.plan.burst_at, 1) if back else None,
        "final_depth": final,
        "stable": not growing and final == 0 and back is not None,
    }


def latency_by_priority(done: list[Delivered]) -> dict[str, dict[str, float | int]]:
    """Seconds from the request to ingest to the sandbox receiving the message."""
    return {p: _quantiles([d.latency for d in done if d.priority == p]) for p in PRIORITIES}


def summarize(run: Run) -> dict[str, Any]:
    """The contents of ``summary.json``."""
    last = run.samples[-1] if run.samples else None
    telegram = last.telegram if last else {}
    dead = last.dead if last else 0
    submitted, delivered = run.ledger.submitted, len(run.done)
    answers = [lat for _, lat in answer_latencies(run.ledger, run.done, run.started_wall)]
    queue = queue_verdict(run)
    summary: dict[str, Any] = {
        "config": run.config,
        "submitted": submitted,
        "delivered": delivered,
        "dead": dead,
        "lost": max(0, submitted - delivered - dead),
        "duplicates": duplicates(run.ledger, run.deliveries),
        "http_429": int(telegram.get("429", 0)),
        "refused_by_ingest": run.ledger.refused,
        "sandbox_received": len(run.deliveries),
        "telegram_answers": telegram,
        **throughput(run),
        "accepted_by_priority": dict(run.ledger.accepted),
        "accepted_by_source": dict(Counter(run.ledger.source.values())),
        "latency_s": latency_by_priority(run.done),
        "users_said": run.ledger.said,
        "mention_answers": {"asked": len(run.ledger.said_at), **_quantiles(answers)},
        "peak_queue_depth": peak_queues(run.samples),
        "queue": queue,
        "processes": processes(run.samples),
    }
    summary["verdicts"] = {
        "nothing_lost": summary["lost"] == 0,
        "no_duplicates": summary["duplicates"] == 0,
        "no_429": summary["http_429"] == 0,
        "queue_stable": queue["stable"],
    }
    return summary
