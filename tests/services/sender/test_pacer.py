"""The pacer: per-bot tokens to the most urgent waiter, late waiters parked in turn order."""

from __future__ import annotations

import asyncio

import pytest

from services.sender.pacer import Pacer
from shared.limiter import Grant, Policy
from shared.memory_limiter import MemoryLimiter
from shared.models import Priority

pytestmark = pytest.mark.timeout(30)


async def test_high_takes_the_next_token_behind_a_crowd() -> None:
    policy = Policy(bot_rate=6, chat_rate=1000)  # under 8 a second: no burst smoothing
    pacer = Pacer(MemoryLimiter(policy), policy, wait_s=5.0)
    order: list[str] = []

    async def want(name: str, priority: Priority) -> None:
        assert await pacer.take(1, 7, priority) == 0
        order.append(name)

    crowd = [asyncio.create_task(want(f"n{i}", Priority.NORMAL)) for i in range(9)]
    await asyncio.sleep(0.25)  # the first six took the window; three normals wait
    urgent = asyncio.create_task(want("high", Priority.HIGH))
    await asyncio.gather(*crowd, urgent)
    assert order.index("high") == 6, order


async def test_waiters_past_their_deadline_park_in_turn_order() -> None:
    policy = Policy(bot_rate=2, chat_rate=1000)
    pacer = Pacer(MemoryLimiter(policy), policy, wait_s=0.3)
    results = await asyncio.gather(*(pacer.take(1, c, Priority.NORMAL) for c in range(6)))
    assert results[:2] == [0, 0]
    parked = results[2:]
    assert all(ms > 0 for ms in parked)
    assert parked == sorted(parked), "later waiters park for longer"
    assert parked[-1] - parked[0] >= 3 * 500 - 5, "one token interval (500 ms) apart"


async def test_chat_limit_parks_only_that_message() -> None:
    policy = Policy(bot_rate=100, chat_rate=1)
    pacer = Pacer(MemoryLimiter(policy), policy, wait_s=2.0)
    assert await pacer.take(1, 5, Priority.NORMAL) == 0
    assert await pacer.take(1, 5, Priority.NORMAL) > 0
    assert await pacer.take(1, 6, Priority.NORMAL) == 0


async def test_over_capacity_parks_at_once() -> None:
    policy = Policy(bot_rate=1, chat_rate=1000)
    pacer = Pacer(MemoryLimiter(policy), policy, wait_s=0.1)
    assert await pacer.take(1, 1, Priority.NORMAL) == 0
    waiting = [asyncio.create_task(pacer.take(1, c, Priority.NORMAL)) for c in range(2, 10)]
    await asyncio.sleep(0)
    extra = await pacer.take(1, 99, Priority.NORMAL)
    assert extra >= 8 * 1000
    await asyncio.gather(*waiting)


class _Stalled:
    """A limiter that has not answered yet: the pump waits on its first call."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        return await self.answer

    async def hold(self, bot_id: int, chat_id: int | str | None, seconds: float) -> None:
        return None


async def test_full_queue_parks_the_least_urgent_not_the_newcomer() -> None:
    policy = Policy(bot_rate=1, chat_rate=1000)
    limiter = _Stalled()
    pacer = Pacer(limiter, policy, wait_s=5.0)  # room for 8 waiters
    normals = [asyncio.create_task(pacer.take(1, c, Priority.NORMAL)) for c in range(8)]
    await asyncio.sleep(0.01)
    urgent = asyncio.create_task(pacer.take(1, 99, Priority.HIGH))
    await asyncio.sleep(0.01)
    assert [t.done() for t in normals] == [False] * 7 + [True], "the newest normal parked"
    assert normals[-1].result() > 0
    late = await pacer.take(1, 100, Priority.LOW)
    assert late > 0, "a less urgent newcomer parks at once"
    limiter.answer.set_result(Grant(0))
    assert await urgent == 0
    for task in normals[:-1]:
        task.cancel()
