"""Seeded workloads for the demo and the benchmarks, and what the limits allow for them."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.limiter import Policy, is_private


@dataclass(frozen=True, slots=True)
class Planned:
    """One message of a workload; ``tag`` starts its text and identifies it on delivery."""

    tag: str
    bot_id: int
    chat_id: int
    priority: str

    def request(self) -> dict[str, Any]:
        """The body for ``POST /v1/messages``."""
        return {
            "bot_id": self.bot_id,
            "chat_id": self.chat_id,
            "text": f"{self.tag} floodgate demo message",
            "priority": self.priority,
        }


@dataclass
class Workload:
    """Messages in the order they are submitted."""

    messages: list[Planned] = field(default_factory=list)

    def least_seconds(self, policy: Policy) -> float:
        """A lower bound on the time any sender needs, from each bot's and chat's own limit."""
        per_bot = Counter(m.bot_id for m in self.messages)
        per_chat = Counter((m.bot_id, m.chat_id) for m in self.messages)
        bound = 0.0
        for bot, n in per_bot.items():
            w = policy.bot_window(bot)
            bound = max(bound, math.floor((n - 1) / w.limit) * w.ms / 1000)
        for (_, chat), n in per_chat.items():
            w = policy.chat_window(chat)
            bound = max(bound, math.floor((n - 1) / w.limit) * w.ms / 1000)
        return bound


PRIORITY_WEIGHTS = (("high", 0.1), ("normal", 0.7), ("low", 0.2))


def build_workload(
    seed: int, bots: list[int], private_chats: int, per_chat: int, groups: int, per_group: int
) -> Workload:
    """Private chats and groups per bot, shuffled across bots, priorities drawn by weight."""
    rng = random.Random(seed)
    names = [name for name, _ in PRIORITY_WEIGHTS]
    weights = [weight for _, weight in PRIORITY_WEIGHTS]
    items: list[tuple[int, int]] = []
    for bot in bots:
        items += [(bot, 10_000 + c) for c in range(private_chats) for _ in range(per_chat)]
        items += [(bot, -1_000_000_000_000 - g) for g in range(groups) for _ in range(per_group)]
    rng.shuffle(items)
    workload = Workload()
    for seq, (bot, chat) in enumerate(items):
        priority = rng.choices(names, weights)[0]
        workload.messages.append(Planned(f"#{seed}-{seq}", bot, chat, priority))
    return workload


def group_count(workload: Workload) -> int:
    """How many distinct groups the workload writes to."""
    return len({(m.bot_id, m.chat_id) for m in workload.messages if not is_private(m.chat_id)})
