"""A seeded, compressed day: users writing to bots, and what the application sends, on a clock.

Everything is drawn from one ``random.Random(seed)``, so two runs with the same flags play the
same day. Times are seconds from the start of the run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

USER_BASE = 7_000_000
SUBSCRIBER_BASE = 8_000_000
GROUP_BASE = -100_200_000_000
USER_INTERVAL_S = 12.0  # a user writes about this often
GROUP_SHARE = 0.4  # of what users write, the part written in groups
MENTION_SHARE = 0.35
REPLY_SHARE = 0.1
NOTICES_PER_S = 1.0  # system notices (high) over all bots
REGULAR_PER_S = 10.0  # regular messages (normal) over all bots
GROUP_REGULAR_INTERVAL_S = 20.0  # one regular message per group this often
BROADCAST_AT = 0.4  # share of the duration at which the broadcast starts
BROADCAST_PER_BOT = 600  # for a run of FULL_DAY_S; shorter runs broadcast in proportion
FULL_DAY_S = 120.0
BURST_AT = 0.6
BURST_PER_BOT = 150  # five seconds of a bot's 30/s, asked for in one second
BURST_ONE_CHAT = 5  # messages to one private chat within the burst (1/s allowed)


@dataclass(frozen=True, slots=True)
class Say:
    """A user writes to a bot; ``reply`` asks to reply to the bot's last message there."""

    at: float
    bot_id: int
    chat_id: int
    user_id: int
    text: str
    mention: bool
    reply: bool


@dataclass(frozen=True, slots=True)
class Send:
    """A message the application sends; ``tag`` starts its text and identifies it on delivery."""

    at: float
    tag: str
    bot_id: int
    chat_id: int
    kind: str
    source: str

    def request(self) -> dict[str, object]:
        """The body for ``POST /v1/messages`` (the scheduler picks the priority by kind)."""
        return {
            "bot_id": self.bot_id,
            "chat_id": self.chat_id,
            "text": f"{self.tag} {self.source} message",
            "kind": self.kind,
        }


@dataclass
class Plan:
    """The day to play, sorted by time."""

    bots: list[int]
    polling_bots: list[int]
    says: list[Say] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    broadcast_at: float = 0.0
    burst_at: float = 0.0
    broadcast_bots: list[int] = field(default_factory=list)
    burst_bots: list[int] = field(default_factory=list)


def _poisson_times(rng: random.Random, rate: float, duration: float) -> list[float]:
    times, t = [], rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def groups_of(bots: list[int], users: int) -> dict[int, int]:
    """Group chat id -> the bot in it: one group per five users, spread over the bots."""
    return {GROUP_BASE - g: bots[g % len(bots)] for g in range(max(1, users // 5))}


def _user_says(rng: random.Random, plan: Plan, users: int, duration: float) -> list[Say]:
    groups = list(groups_of(plan.bots, users).items())
    says: list[Say] = []
    for u in range(users):
        user = USER_BASE + u
        home = [plan.bots[u % len(plan.bots)], plan.bots[(u * 7 + 3) % len(plan.bots)]]
        my_groups = [groups[u % len(groups)], groups[(u + 3) % len(groups)]]
        for at in _poisson_times(rng, 1 / USER_INTERVAL_S, duration):
            chat, bot = rng.choice(my_groups) if rng.random() < GROUP_SHARE else (user, 0)
            bot = bot or rng.choice(home)
            roll = rng.random()
            mention, reply = (
                roll < MENTION_SHARE,
                MENTION_SHARE <= roll < MENTION_SHARE + REPLY_SHARE,
            )
            text = f"hey @bot{bot} what's new?" if mention else f"user {u} says hello"
            says.append(Say(at, bot, chat, user, text, mention, reply))
    return says


def _steady(rng: random.Random, plan: Plan, users: int, duration: float) -> list[Send]:
    sends: list[Send] = []
    for at in _poisson_times(rng, NOTICES_PER_S, duration):
        user = USER_BASE + rng.randrange(users)
        sends.append(Send(at, "", rng.choice(plan.bots), user, "system", "notice"))
    for at in _poisson_times(rng, REGULAR_PER_S, duration):
        user = USER_BASE + rng.randrange(users)
        sends.append(Send(at, "", rng.choice(plan.bots), user, "regular", "regular"))
    for group, bot in groups_of(plan.bots, users).items():
        for at in _poisson_times(rng, 1 / GROUP_REGULAR_INTERVAL_S, duration):
            sends.append(Send(at, "", bot, group, "regular", "regular"))
    return sends


def _broadcast(plan: Plan, duration: float) -> list[Send]:
    size = max(30, round(BROADCAST_PER_BOT * min(1.0, duration / FULL_DAY_S)))
    return [
        Send(plan.broadcast_at, "", bot, SUBSCRIBER_BASE + i, "background", "broadcast")
        for i in range(size)
        for bot in plan.broadcast_bots
    ]


def _burst(rng: random.Random, plan: Plan, users: int) -> list[Send]:
    sends: list[Send] = []
    for bot in plan.burst_bots:
        one_chat = USER_BASE + rng.randrange(users)
        for i in range(BURST_PER_BOT):
            chat = one_chat if i < BURST_ONE_CHAT else SUBSCRIBER_BASE + 100_000 + i
            sends.append(Send(plan.burst_at + rng.random(), "", bot, chat, "regular", "burst"))
    return sends


def _tagged(seed: int, sends: list[Send]) -> list[Send]:
    ordered = sorted(sends, key=lambda s: s.at)
    return [
        Send(s.at, f"lt{seed}-{n}", s.bot_id, s.chat_id, s.kind, s.source)
        for n, s in enumerate(ordered)
    ]


def build_plan(seed: int, bots: list[int], users: int, duration: float) -> Plan:
    """The whole day: every fifth bot polls, a tenth of the bots broadcast, a fifth burst."""
    rng = random.Random(seed)
    tenth, fifth = max(1, len(bots) // 10), max(1, len(bots) // 5)
    plan = Plan(bots=bots, polling_bots=bots[4::5])
    plan.broadcast_at, plan.burst_at = duration * BROADCAST_AT, duration * BURST_AT
    plan.broadcast_bots = bots[:tenth]
    plan.burst_bots = bots[tenth : tenth + fifth] or bots[:fifth]
    plan.says = sorted(_user_says(rng, plan, users, duration), key=lambda s: s.at)
    sends = (
        _steady(rng, plan, users, duration) + _broadcast(plan, duration) + _burst(rng, plan, users)
    )
    plan.sends = _tagged(seed, sends)
    return plan
