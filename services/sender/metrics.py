"""Prometheus metrics of the sender pool."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.models import Priority

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)

# Label values known from the start: their series exist at 0 before the first event, so an
# alert on increase() sees the first 429, the first dead letter, the first hold.
STATUS_CLASSES = ("2xx", "429", "4xx", "5xx", "timeout", "network")
DEAD_REASONS = ("permanent", "retries_exhausted", "poison", "unknown_bot", "internal")
DEFER_REASONS = ("limiter", "stopping", "retry_after")
HOLD_SCOPES = ("bot", "chat")
DECISION_SCOPES = ("granted", "bot", "chat", "bot_hold", "chat_hold")


class Children(dict[str, Any]):
    """A metric with one label, its child for each value made once: ``labels()`` checks its
    arguments and takes a lock on every call, five times a message on the sender's path."""

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
        super().__init__()
        self._metric = metric

    def __missing__(self, value: str) -> Any:
        child = self[value] = self._metric.labels(value)
        return child


class SenderMetrics:
    """Outcomes, Telegram answers, limiter waits and latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "floodgate_messages_sent_total",
            "Messages delivered to Telegram, by priority.",
            ["priority"],
            registry=registry,
        )
        self.retried = Counter(
            "floodgate_messages_retried_total",
            "Messages put back for a retry after a 5xx, timeout or network error, by priority.",
            ["priority"],
            registry=registry,
        )
        self.deferred = Counter(
            "floodgate_messages_deferred_total",
            "Messages parked until the limiter or a 429 hold lets them go, by reason.",
            ["reason"],
            registry=registry,
        )
        self.dead = Counter(
            "floodgate_messages_dead_total",
            "Messages dead-lettered, by reason class.",
            ["reason"],
            registry=registry,
        )
        self.duplicates_avoided = Counter(
            "floodgate_sender_already_sent_total",
            "Redelivered entries found already sent and not sent again.",
            registry=registry,
        )
        self.parked = Counter(
            "floodgate_sender_parked_total",
            "Messages parked behind an earlier message of the same chat still under way.",
            registry=registry,
        )
        self.responses = Counter(
            "floodgate_telegram_responses_total",
            "Bot API answers by status class (2xx, 429, 4xx, 5xx, timeout, network).",
            ["status_class"],
            registry=registry,
        )
        self.latency = Histogram(
            "floodgate_send_latency_seconds",
            "From acceptance to Telegram's answer for the last part, by priority.",
            ["priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.api_seconds = Histogram(
            "floodgate_telegram_request_seconds",
            "Duration of one Bot API call.",
            registry=registry,
        )
        self.limiter_wait = Histogram(
            "floodgate_limiter_wait_seconds",
            "Time a worker waited in place for a send token.",
            registry=registry,
        )
        self.decisions = Counter(
            "floodgate_limiter_decisions_total",
            "Limiter answers: granted, or denied by scope (bot, chat, bot_hold, chat_hold).",
            ["scope"],
            registry=registry,
        )
        self.bot_rate_factor = Gauge(
            "floodgate_bot_rate_factor",
            "Share of its configured rate a bot may use now (below 1 for a while after a 429).",
            ["bot_id"],
            registry=registry,
        )
        self.holds = Counter(
            "floodgate_limiter_holds_total",
            "Holds started after a 429, by scope.",
            ["scope"],
            registry=registry,
        )
        self.inflight = Gauge(
            "floodgate_sender_inflight",
            "Messages read and not yet settled.",
            registry=registry,
        )
        self.claimed = Counter(
            "floodgate_sender_claimed_total",
            "Entries taken over from a silent sender or re-read after a restart.",
            registry=registry,
        )
        self.lost = Counter(
            "floodgate_sender_lost_total",
            "Entries dropped unsent because another sender claimed them while this one was "
            "frozen (stopped, swapped out, starved of CPU) past the claim idle time.",
            registry=registry,
        )
        self.errors = Counter(
            "floodgate_sender_loop_errors_total",
            "Errors caught in the sender's loops, by loop.",
            ["loop"],
            registry=registry,
        )
        # the children the path of every message takes (by priority, status class, scope, bot)
        self.sent_by_priority = Children(self.sent)
        self.latency_by_priority = Children(self.latency)
        self.responses_by_class = Children(self.responses)
        self.decisions_by_scope = Children(self.decisions)
        self.factor_by_bot = Children(self.bot_rate_factor)
        for priority in Priority:  # at 0 from the start, so a rate over them sees the first
            self.sent.labels(priority.value)
            self.retried.labels(priority.value)
        for counter, values in (
            (self.responses, STATUS_CLASSES),
            (self.dead, DEAD_REASONS),
            (self.deferred, DEFER_REASONS),
            (self.holds, HOLD_SCOPES),
            (self.decisions, DECISION_SCOPES),
        ):
            for value in values:
                counter.labels(value)
