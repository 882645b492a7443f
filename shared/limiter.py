"""The rate limiter every sender replica shares: per bot, per private chat, per group.

``redis_limiter`` keeps the sliding logs in Redis (one atomic Lua call per batch of decisions
for a bot, time from Redis); ``memory_limiter`` keeps them in process for the embedded backend.
Both answer the same question: may this bot send to this chat now, and if not, how long until
it may.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

ADAPT_CUT = 0.5
ADAPT_FLOOR = 0.25
ADAPT_RECOVER_PER_S = 0.1


@dataclass(frozen=True, slots=True)
class Grant:
    """A limiter decision: ``wait_ms`` 0 means the token was taken.

    ``factor`` is the share of its configured rate the bot may use now: below 1 for a while
    after Telegram answered it 429, recovering step by step. ``ticket`` names the token taken,
    for ``Limiter.sent`` once its call is over. ``room`` is how many more sends the bot's
    window takes at this moment, so a caller with a crowd waiting knows how many to ask for.
    """

    wait_ms: int
    scope: str = ""
    factor: float = 1.0
    ticket: str = ""
    room: int = 0

    @property
    def granted(self) -> bool:
        """True when the send may go now."""
        return self.wait_ms <= 0


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` sends in any ``ms`` milliseconds."""

    limit: int
    ms: float


@cache  # asked for every send (a few distinct rates per process; a Window is frozen)
def window_for(count: float, per_seconds: float, margin_s: float) -> Window:
    """``count`` sends per ``per_seconds`` as whole sends in a window (0.5/s: 1 per 2 s); a
    count of 0 is no send at all (a sender's share of a bot too slow to share out)."""
    if count <= 0:
        return Window(0, (per_seconds + margin_s) * 1000)
    limit = max(1, math.floor(count))
    seconds = per_seconds * limit / count
    return Window(limit, (seconds + margin_s) * 1000)


@dataclass(frozen=True)
class Policy:
    """Telegram's limits as configured: per-bot rate (with overrides), chat and group rates.

    ``window_scale`` shrinks every window with the same counts (30 per 0.1 s instead of 30 per
    second at 0.1), to run against a sandbox whose windows are scaled the same way.
    """

    bot_rate: float = 30.0
    chat_rate: float = 1.0
    group_rate: float = 20.0
    margin_s: float = 0.0
    overrides: dict[int, float] = field(default_factory=dict)
    window_scale: float = 1.0
    in_flight_s: float = 40.0  # no call lasts longer: a token not reported sent by then is lost
    in_flight_lease_s: float = 5.0  # shared limiter: how far ahead a call under way is scored

    def bot_window(self, bot_id: int) -> Window:
        """Window of one bot, honouring its override."""
        rate = self.overrides.get(bot_id, self.bot_rate)
        return window_for(rate, self.window_scale, self.margin_s)

    def chat_window(self, chat_id: int | str) -> Window:
        """1-second window of a private chat, 60-second window of a group or channel."""
        if is_private(chat_id):
            return window_for(self.chat_rate, self.window_scale, self.margin_s)
        return window_for(self.group_rate, 60.0 * self.window_scale, self.margin_s)


def is_private(chat_id: int | str) -> bool:
    """Positive numeric ids are users; negative ids and @usernames are groups or channels."""
    return isinstance(chat_id, int) and chat_id > 0


class Limiter(Protocol):
    """Shared rate limiter."""

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        """Take a token for one send of ``bot_id`` to ``chat_id``, or say how long to wait."""

    async def acquire_many(self, bot_id: int, chat_ids: Sequence[int | str]) -> list[Grant]:
        """``acquire`` for each chat in turn, in one step: a grant (or refusal) per chat."""

    async def sent(self, bot_id: int, chat_id: int | str, ticket: str, age_ms: int = 0) -> None:
        """The call made with this token is over: count it from now on, not from its grant.

        A send reaches Telegram some time after its token was granted, and how long after
        varies with the load. Moving the token to the moment its answer came (which is after
        Telegram saw it) makes every token in a log lie at or after its arrival, so the logs
        never undercount a window as Telegram sees it, without a fixed margin for the jitter.
        The shared limiter makes the move in the background, stamped with the end of the call.
        With ``age_ms``, a send made elsewhere (while Redis was away) is logged as made that
        long ago, and the call returns once it is.
        """

    async def flush(self) -> None:
        """Make the moves of ended calls now and wait for them (before a process stops)."""

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        """After a 429: nothing of the bot (or of that chat) goes out for ``seconds``; a whole
        bot's hold also cuts its adaptive rate factor."""
