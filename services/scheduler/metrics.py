"""Prometheus metrics of the scheduler."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from shared.models import Priority


class SchedulerMetrics:
    """Messages routed into send queues."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.routed = Counter(
            "floodgate_scheduler_routed_total",
            "Messages routed to a send queue, by priority.",
            ["priority"],
            registry=registry,
        )
        self.delayed = Counter(
            "floodgate_scheduler_delayed_total",
            "Messages held until their send_at time.",
            registry=registry,
        )
        self.split = Counter(
            "floodgate_scheduler_split_parts_total",
            "Extra parts made by splitting long texts.",
            registry=registry,
        )
        self.promoted = Counter(
            "floodgate_scheduler_promoted_total",
            "Scheduled messages released to their send queue when due.",
            registry=registry,
        )
        self.errors = Counter(
            "floodgate_scheduler_loop_errors_total",
            "Errors caught in the scheduler's loops, by loop.",
            ["loop"],
            registry=registry,
        )
        self.poison = Counter(
            "floodgate_scheduler_poison_total",
            "Entries that could not be parsed, dead-lettered.",
            registry=registry,
        )
        for priority in Priority:  # at 0 from the start, so a rate over them sees the first
            self.routed.labels(priority.value)
