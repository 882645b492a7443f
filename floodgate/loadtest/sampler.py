"""What is measured every second: queues, Telegram's answers, deliveries, CPU and memory."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from floodgate.loadtest.ledger import Ledger
from floodgate.loadtest.procs import Usage, proc_usage, redis_usage
from floodgate.loadtest.stack import Stack
from floodgate.observe import Received, sandbox_stats

QUEUE_NAMES = ("high", "normal", "low", "ingest", "deferred", "retry", "parked")


@dataclass(frozen=True, slots=True)
class Sample:
    """One second's view; counters are cumulative, CPU is % of one core since the last sample."""

    t: float
    queues: dict[str, int]
    total_queued: int
    dead: int
    telegram: dict[str, int]
    accepted: dict[str, int]
    delivered: int
    cpu: dict[str, float]
    rss: dict[str, int]


@dataclass
class Sampler:
    """Takes samples and keeps what the sandbox delivered."""

    stack: Stack
    ledger: Ledger
    started_wall: float
    received: Received = field(default_factory=Received)
    samples: list[Sample] = field(default_factory=list)
    _usage: dict[str, tuple[float, Usage]] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        """The processes measured, by name."""
        own = "loadtest" if self.stack.children else "loadtest + pipeline"
        found = {own: os.getpid(), "sandbox": self.stack.sandbox.popen.pid}
        found |= {c.name: c.popen.pid for c in self.stack.children}
        return found

    async def take(self, session: aiohttp.ClientSession) -> Sample:
        """Measure now, append the sample and return it."""
        seen = len(self.received.messages)
        await self.received.refresh(session, self.stack.sandbox.url)
        for d in self.received.messages[seen:]:
            if d.message_id is not None:
                self.ledger.bot_messages[(d.bot_id, d.chat_id)] = d.message_id
        stats = await self._queue_stats(session)
        usages = await self._usages()
        cpu, rss = self._rates(usages)
        sample = Sample(
            t=time.time() - self.started_wall,
            queues={name: int(stats["stats"].get(name, 0)) for name in QUEUE_NAMES},
            total_queued=int(stats["total_queued"]),
            dead=int(stats["total_failed"]),
            telegram=await sandbox_stats(session, self.stack.sandbox.url),
            accepted=dict(self.ledger.accepted),
            delivered=len(self.received.messages),
            cpu=cpu,
            rss=rss,
        )
        self.samples.append(sample)
        return sample

    async def _queue_stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        url = f"{self.stack.stats_url}/queue/stats"
        async with session.get(url, headers=self.stack.headers) as resp:
            resp.raise_for_status()
            stats: dict[str, Any] = await resp.json()
            return stats

    async def _usages(self) -> dict[str, Usage]:
        found = {n: u for n, pid in self.pids().items() if (u := proc_usage(pid)) is not None}
        if self.stack.redis is not None:
            found["redis"] = redis_usage(await self.stack.redis.info())
        return found

    def _rates(self, usages: dict[str, Usage]) -> tuple[dict[str, float], dict[str, int]]:
        now, cpu = time.monotonic(), {}
        for name, usage in usages.items():
            before = self._usage.get(name)
            if before is not None and now > before[0]:
                cpu[name] = 100 * (usage.cpu_s - before[1].cpu_s) / (now - before[0])
            self._usage[name] = (now, usage)
        return cpu, {name: usage.rss_bytes for name, usage in usages.items()}
