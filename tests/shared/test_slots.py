"""Slots: at most N holders, first come first served, a cancelled waiter loses nothing."""

from __future__ import annotations

import asyncio

import pytest

from shared.slots import Slots


async def test_holders_are_limited_and_served_in_order() -> None:
    slots = Slots(2)
    inside, most, order = 0, 0, []
    release = asyncio.Event()

    async def hold(name: int) -> None:
        nonlocal inside, most
        async with slots:
            inside += 1
            most = max(most, inside)
            order.append(name)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(hold(i)) for i in range(6)]
    while len(order) < 2:
        await asyncio.sleep(0)
    assert order == [0, 1]
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2
    assert order == list(range(6))
    assert slots.free == 2


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    behind = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    slots.release()  # the cancelled waiter is skipped: the next one gets the slot
    await asyncio.wait_for(behind, 1)
    assert waiting.cancelled()
    slots.release()
    assert slots.free == 1


async def test_a_slot_handed_over_as_the_wait_is_cancelled_is_not_lost() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to the waiter ...
    waiting.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots.free == 1, "the slot went back to the pool"


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Slots(0)
