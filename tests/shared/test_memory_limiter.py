"""The in-memory limiter as the fallback limiter's mirror: every send a sender makes through
the shared limiter is noted here, for a switch to come, so what it keeps must follow the chats
active now, not every chat ever sent to."""

from __future__ import annotations

import asyncio
import time

from shared.limiter import Policy
from shared.memory_limiter import SWEEP_AT, MemoryLimiter

# windows of 10 ms (bot, private chat) and 600 ms (group)
POLICY = Policy(bot_rate=30, chat_rate=1, group_rate=20, window_scale=0.01)


async def _mirror(limiter: MemoryLimiter, bot_id: int, chats: range) -> None:
    """What a sender does for each message: the shared grant noted, then its call's end."""
    for chat in chats:
        ticket = f"shared-{bot_id}-{chat}"
        limiter.note(bot_id, chat, ticket)
        await limiter.sent(bot_id, chat, ticket)


async def test_mirrored_sends_leave_when_no_window_counts_them() -> None:
    """A broadcast to many chats: the logs keep what their windows count, plus at most the
    chats noted since the last sweep. Before, every send and every chat stayed for good
    (231 MiB after 200,000 messages to as many chats)."""
    limiter = MemoryLimiter(POLICY)
    total = 3 * SWEEP_AT
    for start in range(0, total, 1_000):
        await _mirror(limiter, 1, range(10_000 + start, 10_000 + start + 1_000))
        await asyncio.sleep(0.02)  # two windows pass between the batches
    bot_log = limiter._logs[(1, None)]
    assert len(bot_log.sends) <= 1_000, "the bot's log keeps its window only (the last batch)"
    assert len(limiter._logs) <= 2 * SWEEP_AT, f"{len(limiter._logs)} logs after {total} chats"


async def test_a_call_under_way_and_a_group_window_outlive_the_sweep() -> None:
    """What a window still counts is kept through any number of sweeps: a send whose call is
    not over (it counts until it ends, however old), and a group's send within the group's
    minute. Limiting alone then still refuses the chat whose call is under way."""
    # windows of 50 ms (private chat) and 3 s (group); the bot's rate out of the way
    limiter = MemoryLimiter(Policy(bot_rate=1_000_000, window_scale=0.05))
    limiter.note(1, 7, "shared-under-way")  # its call does not end here
    group_sent = time.monotonic()
    await _mirror(limiter, 1, range(-100, -99))  # a group, its call over
    for start in range(0, 2 * SWEEP_AT + 2_000, 1_000):  # sweeps, each long after 50 ms
        await asyncio.sleep(0.06)
        await _mirror(limiter, 1, range(50_000 + start, 50_000 + start + 1_000))
    assert len(limiter._logs) < 2 * SWEEP_AT, "the sweeps ran"
    assert (1, 7) in limiter._logs, "the chat with a call under way is kept"
    refused = limiter.acquire_now(1, 7)
    assert refused.scope == "chat", f"refused for the call under way, not {refused}"
    assert time.monotonic() - group_sent < 3.0, "the run was too slow to check the group's log"
    assert [t for _, t in limiter._logs[(1, -100)].sends] == ["shared-1--100"]
