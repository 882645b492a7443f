"""What the load test asked for and when: the record every figure is computed from."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ANSWER_PREFIX = "answer-"


def answer_tag(bot_id: int, update_id: int) -> str:
    """The first word of the application's answer to one update."""
    return f"{ANSWER_PREFIX}{bot_id}-{update_id}"


@dataclass
class Ledger:
    """Messages accepted by ingest (by tag), what users said, and the bots' last messages."""

    requested_at: dict[str, float] = field(default_factory=dict)
    priority: dict[str, str] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    said_at: dict[str, float] = field(default_factory=dict)
    accepted: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    said: int = 0
    say_errors: int = 0
    bot_messages: dict[tuple[int, int], int] = field(default_factory=dict)

    def accept(self, tag: str, at: float, priority: str, source: str) -> None:
        """Ingest answered 202 for ``tag``, requested at ``at`` (wall clock)."""
        self.requested_at[tag], self.priority[tag], self.source[tag] = at, priority, source
        self.accepted[priority] += 1

    @property
    def submitted(self) -> int:
        """Messages ingest accepted."""
        return len(self.requested_at)
