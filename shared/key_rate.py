"""Per-key quotas: at most N accepted messages in any one-second window, over every replica."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

WINDOW_MS = 1000


@dataclass(frozen=True, slots=True)
class Grant:
    """How many of the places asked for were taken, and when the next one frees."""

    taken: int
    wait_ms: int
    ticket: str

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait before asking again, rounded up (never 0)."""
        return max(1, math.ceil(self.wait_ms / 1000))


class KeyRate(Protocol):
    """A sliding log per API key: Redis (shared by every ingest replica) or this process."""

    async def take(self, key_id: str, limit: int, wanted: int) -> Grant:
        """Take up to ``wanted`` places; a place refused costs nothing."""

    async def give_back(self, key_id: str, grant: Grant) -> None:
        """Return the places of a grant whose messages were not accepted after all."""
