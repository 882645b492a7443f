"""Which part of the rates and chats a sender takes while Redis is away.

Each sender beats in Redis and learns the names of the senders alive. When Redis goes away,
each keeps to a whole ``1/N`` of every bot's sends per window (N the senders alive just before,
at least a floor: 30/s among 8 is 3 a second each, never 3.75 as 3 per 800 ms, which let each
sender make 6 within one second and all 8 together 48), in the bot's own window,
and sends only to the chats it owns: each chat belongs to one of those senders, by a hash every
sender computes alike over the same sorted names, so two messages of one chat held by two
senders (different priorities) never both go while neither knows of the other's send.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

from shared.limiter import Policy, window_for


class Share:
    """The senders alive as Redis last said, and those of the last switch."""

    def __init__(self, name: str, floor: int) -> None:
        self._name = name
        self._floor = max(1, floor)
        self._alive: tuple[str, ...] = ()
        self._ring: tuple[str, ...] = ()  # frozen at the switch: they share the chats

    @property
    def senders(self) -> int:
        """N: the senders alive, at least the floor."""
        return max(self._floor, len(self._alive))

    def observe(self, names: Sequence[str]) -> None:
        """The senders alive now, this one included."""
        self._alive = tuple(sorted(names))

    def freeze(self) -> None:
        """Redis went away: the chats are shared among the senders alive last seen."""
        self._ring = self._alive

    def policy(self, policy: Policy) -> Policy:
        """``policy`` with every bot's sends per window divided among the senders, in whole
        sends and the same window, so that N senders together never pass the bot's limit in
        any window (a sender whose part is less than one send sends nothing of that bot)."""
        n = self.senders

        def part(rate: float) -> float:
            whole = window_for(rate, 1.0, 0.0).limit  # sends per the bot's window
            # the rate whose window is the bot's own with whole // n sends in it
            return (whole // n) * rate / whole

        return dataclasses.replace(
            policy,
            bot_rate=part(policy.bot_rate),
            overrides={bot: part(rate) for bot, rate in policy.overrides.items()},
        )

    def owns(self, bot_id: int, chat_id: int | str) -> bool:
        """Whether this sender may send to the chat on its own (all of them when it was alone
        or never saw the others; none when the others did not know of it)."""
        if len(self._ring) <= 1:
            return not self._ring or self._ring[0] == self._name
        if self._name not in self._ring:
            return False
        slot = zlib.crc32(f"{bot_id}:{chat_id}".encode()) % len(self._ring)
        return self._ring[slot] == self._name
