"""Prometheus metrics of the stats service: queue depths, refreshed in the background."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class StatsMetrics:
    """Depth gauges of every queue."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge(
            "floodgate_queue_depth",
            "Messages in a queue (ingest, high, normal, low, scheduled, deferred, retry, dlq).",
            ["queue"],
            registry=registry,
        )
        self.total_queued = Gauge(
            "floodgate_queued_messages",
            "Messages accepted and not yet sent or dead.",
            registry=registry,
        )
        self.errors = Counter(
            "floodgate_stats_loop_errors_total",
            "Errors caught refreshing depths.",
            ["loop"],
            registry=registry,
        )
        self.dlq_expired = Counter(
            "floodgate_dlq_expired_total",
            "Dead letters dropped because they outlived FLOODGATE_DLQ_RETENTION.",
            registry=registry,
        )
        self.dlq_replayed = Counter(
            "floodgate_dlq_replayed_total",
            "Dead letters put back in the queue.",
            registry=registry,
        )
