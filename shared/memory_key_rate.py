"""Per-key quotas in this process (the embedded backend has one ingest)."""

from __future__ import annotations

import math
import secrets
import time
from collections import deque

from shared.key_rate import WINDOW_MS, Grant


class MemoryKeyRate:
    """One sliding log per key, on the monotonic clock."""

    def __init__(self) -> None:
        self._logs: dict[str, deque[tuple[float, str]]] = {}

    async def take(self, key_id: str, limit: int, wanted: int) -> Grant:
        """Take up to ``wanted`` places in the key's log."""
        now = time.monotonic()
        log = self._logs.setdefault(key_id, deque())
        while log and log[0][0] <= now - WINDOW_MS / 1000:
            log.popleft()
        taken = min(wanted, max(limit - len(log), 0))
        ticket = secrets.token_hex(8)
        log.extend((now, ticket) for _ in range(taken))
        wait = 0 if taken == wanted else math.ceil((log[0][0] + WINDOW_MS / 1000 - now) * 1000)
        return Grant(taken, wait, ticket)

    async def give_back(self, key_id: str, grant: Grant) -> None:
        """Remove the grant's places from the log."""
        log = self._logs.get(key_id)
        if log is not None and grant.taken:
            left = grant.taken  # a grant given back in part leaves the rest of its places
            kept: deque[tuple[float, str]] = deque()
            for entry in log:
                if left and entry[1] == grant.ticket:
                    left -= 1
                else:
                    kept.append(entry)
            self._logs[key_id] = kept
