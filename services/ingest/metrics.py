"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.models import Priority

# Known from the start, so their series exist at 0 and increase() sees the first refusal.
REJECT_REASONS = ("invalid", "unknown_bot", "too_large", "unavailable", "forbidden", "over_quota")


class IngestMetrics:
    """Requests accepted and refused."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "floodgate_messages_accepted_total",
            "Messages accepted with 202, by priority.",
            ["priority"],
            registry=registry,
        )
        self.duplicates = Counter(
            "floodgate_messages_duplicate_total",
            "Requests answered with an earlier message's id (idempotency key seen).",
            registry=registry,
        )
        self.rejected = Counter(
            "floodgate_messages_rejected_total",
            "Messages refused, by reason (invalid, unknown_bot, too_large, unavailable, forbidden,"
            " over_quota).",
            ["reason"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "floodgate_ingest_request_seconds",
            "Time to answer a send request.",
            ["endpoint"],
            registry=registry,
        )
        for priority in Priority:
            self.accepted.labels(priority.value)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
