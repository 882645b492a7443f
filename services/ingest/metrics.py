"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
