"""Handing out each bot's send tokens to this process's waiting messages, most urgent first.

Every message that wants to go asks the pacer of its bot. One pump per busy bot asks the shared
limiter for tokens on behalf of the most urgent waiters, so a high-priority message takes the
bot's next token even behind a crowd of normal ones, and limiter calls for a bot are not
multiplied by the number of waiting workers. Each grant says how much room the bot's window has
left, and the next round trip asks for that many at once: a window that opens is used at once,
as Telegram allows, instead of one round trip per token.

Urgency ages: a waiter's key is its arrival time plus an offset by priority, so a low message
that has waited long enough goes before a normal one that just came, and no priority starves.
A message with later messages of its chat parked behind it counts as LEAD_S older than it is:
it unblocks its chat, whose next message must keep the chat's own interval, so chains of
messages start early instead of trailing at the end of a backlog. The head start is smaller
than the gaps between priorities (AGEING_S), so it reorders messages within a priority, and
across priorities only as ageing does, a second sooner.

A message whose chat is full waits in place for the chat's window if it opens before the
message's deadline (TELEGRAM_RATE_LIMIT_WAIT), keeping its place among the bot's waiters.
A message that cannot have a token within TELEGRAM_RATE_LIMIT_WAIT is told how long to park
instead: until shortly before the window in which its turn comes opens (the limiter's wait,
plus a window for every window's worth of waiters ahead of it), so parked messages come back
when their turn comes rather than all at once, and are there when their window opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.broker import BrokerUnavailable
from shared.limiter import Grant, Limiter, Policy
from shared.models import Priority

AGEING_S = {Priority.HIGH: 0.0, Priority.NORMAL: 2.0, Priority.LOW: 10.0}
LEAD_S = 1.0  # head start of a message that later messages of its chat wait behind
MIN_WAITERS = 8
STOPPING = Grant(1, "stopping")  # park for a millisecond: another sender takes it from there
EARLY_SHARE = 0.1  # a parked message comes back this share of a window before its turn
MAX_ASK = 64  # tokens asked for in one round trip
CHAT_SCOPES = frozenset({"chat", "chat_hold"})


@dataclass(order=True)
class _Waiter:
    key: float
    order: int
    chat_id: int | str = field(compare=False)
    deadline: float = field(compare=False)
    future: asyncio.Future[Grant] = field(compare=False)
    ready_at: float = field(default=0.0, compare=False)  # its chat's window opens then


class _BotQueue:
    def __init__(self) -> None:
        self.heap: list[_Waiter] = []
        self.pumping = False
        self.arrived = asyncio.Event()  # wakes a pump napping until a chat's window opens


class Pacer:
    """Per-bot token queues of one sender process."""

    def __init__(
        self,
        limiter: Limiter,
        policy: Policy,
        wait_s: float,
        observe: Callable[[int, Grant], None] = lambda bot, grant: None,
    ) -> None:
        self._observe = observe
        self._limiter = limiter
        self._policy = policy
        self._wait_s = wait_s
        self._bots: dict[int, _BotQueue] = {}
        self._order = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def _interval_s(self, bot_id: int) -> float:
        window = self._policy.bot_window(bot_id)
        return window.ms / 1000 / window.limit

    def _park_ms(self, bot_id: int, position: int, wait_ms: float, factor: float = 1.0) -> int:
        """How long the waiter at ``position`` (0: next) parks, ``wait_ms`` before the window opens.

        A window opens all at once (every token in it was taken together a window earlier), so
        the first ``limit`` waiters go when it opens (fewer while a 429 has cut the bot's rate
        by ``factor``), the next as many a window later, and so on. A parked message comes back
        a little before its window opens, to be waiting then, but never sooner than one token
        interval: it would only bounce through the deferred set.
        """
        window = self._policy.bot_window(bot_id)
        limit = max(1, int(window.limit * factor))
        turn_ms = wait_ms + (position // limit) * window.ms
        return max(int(window.ms / limit) + 1, int(turn_ms - window.ms * EARLY_SHARE))

    def _cap(self, bot_id: int) -> int:
        return max(MIN_WAITERS, int(self._wait_s / self._interval_s(bot_id)))

    async def take(
        self, bot_id: int, chat_id: int | str, priority: Priority, leading: bool = False
    ) -> Grant:
        """The token once the message holds one; else a grant that says how long to park it
        before trying again. ``leading``: later messages of its chat wait behind it."""
        if self._closed:
            return STOPPING
        if isinstance(chat_id, bool) or not isinstance(chat_id, int | str):
            # an entry queued before ingest checked chat ids: never asked for with others
            raise TypeError(f"chat_id must be an integer or a string, not {type(chat_id).__name__}")
        queue = self._bots.setdefault(bot_id, _BotQueue())
        now = time.monotonic()
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        key = now + AGEING_S[priority] - (LEAD_S if leading else 0.0)
        waiter = _Waiter(key, next(self._order), chat_id, now + self._wait_s, future)
        if len(queue.heap) >= self._cap(bot_id):
            park_ms = self._park_ms(bot_id, len(queue.heap), self._interval_s(bot_id) * 1000)
            least = max(queue.heap)
            if least < waiter:
                return Grant(park_ms, "queue")
            # the newcomer is more urgent than someone waiting: that one parks instead
            _remove(queue.heap, least)
            if not least.future.done():
                least.future.set_result(Grant(park_ms, "queue"))
        heapq.heappush(queue.heap, waiter)
        queue.arrived.set()
        if not queue.pumping:
            queue.pumping = True
            task = asyncio.get_running_loop().create_task(self._pump(bot_id, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _pump(self, bot_id: int, queue: _BotQueue) -> None:
        room = 1
        try:
            while queue.heap:
                now = time.monotonic()
                ready = (w for w in queue.heap if w.ready_at <= now and not w.future.done())
                heads = heapq.nsmallest(room, ready)
                if not heads:
                    _drop_done(queue)
                    await self._nap(queue)
                    continue
                # One call asks for as many tokens as the window has room for, most urgent
                # first, so a window that opens goes out together, as Telegram allows.
                try:
                    grants = await self._limiter.acquire_many(bot_id, [w.chat_id for w in heads])
                except BrokerUnavailable as exc:
                    self._fail_all(queue, exc)  # the waiters decide what an outage means
                    return
                except Exception as exc:
                    # not an outage, so perhaps of one message's own (take() already turns
                    # away chat ids of the wrong kind): asked one at a time, only that
                    # message fails, not every other chat's that shared the call with it
                    if len(heads) > 1:
                        room = 1
                        continue
                    _remove(queue.heap, heads[0])
                    if not heads[0].future.done():  # parked meanwhile by a newcomer
                        heads[0].future.set_exception(exc)
                    continue
                room, refused = 1, None
                for waiter, grant in zip(heads, grants, strict=True):
                    self._observe(bot_id, grant)
                    if grant.granted or grant.scope in CHAT_SCOPES:
                        room = min(MAX_ASK, max(1, grant.room))
                        if not grant.granted and self._wait_in_place(waiter, grant):
                            continue
                        _remove(queue.heap, waiter)
                        if not waiter.future.done():
                            waiter.future.set_result(grant)
                        elif grant.granted:  # its waiter went meanwhile
                            await self._release(bot_id, waiter.chat_id, grant)
                    elif refused is None:
                        refused = grant
                if refused is None:
                    continue
                room = 1
                self._park_late(bot_id, queue, refused)
                if queue.heap:
                    await asyncio.sleep(refused.wait_ms / 1000)
        finally:
            queue.pumping = False

    @staticmethod
    def _wait_in_place(waiter: _Waiter, refused: Grant) -> bool:
        """A message whose chat is full waits here for the chat's window if it opens before the
        message's deadline: it keeps its place among the bot's waiters (a high message goes
        before a normal one of the same chat when the window opens), with no trip through the
        deferred set. Otherwise it parks."""
        ready_at = time.monotonic() + refused.wait_ms / 1000
        if waiter.future.done() or ready_at > waiter.deadline:
            return False
        waiter.ready_at = ready_at
        return True

    @staticmethod
    async def _nap(queue: _BotQueue) -> None:
        """Nothing is ready: sleep until the first chat window opens or someone new arrives."""
        waiting = [w.ready_at for w in queue.heap if not w.future.done()]
        if not waiting:
            return
        queue.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.arrived.wait(), max(0.0, min(waiting) - time.monotonic()))

    async def _release(self, bot_id: int, chat_id: int | str, grant: Grant) -> None:
        """A token granted to a waiter that went meanwhile: count it as used now, so it does
        not stay counted as a call under way (see ``Limiter.sent``)."""
        with contextlib.suppress(Exception):  # counted as under way until its lease ends: safe
            await self._limiter.sent(bot_id, chat_id, grant.ticket)

    def close(self) -> None:
        """The process is stopping: every waiter, and whoever asks from now on, parks at once,
        for a sender that stays to take over; only calls already made are waited for."""
        self._closed = True
        for queue in self._bots.values():
            for waiter in queue.heap:
                if not waiter.future.done():
                    waiter.future.set_result(STOPPING)
            queue.heap.clear()

    def _park_late(self, bot_id: int, queue: _BotQueue, refused: Grant) -> None:
        """Tell every waiter that cannot get a token within its deadline to park, in turn order."""
        now = time.monotonic()
        kept: list[_Waiter] = []
        for position, waiter in enumerate(w for w in sorted(queue.heap) if not w.future.done()):
            park_ms = self._park_ms(bot_id, position, refused.wait_ms, refused.factor)
            if waiter.deadline < now + park_ms / 1000:
                waiter.future.set_result(Grant(park_ms, "bot"))
            else:
                kept.append(waiter)
        heapq.heapify(kept)
        queue.heap[:] = kept

    @staticmethod
    def _fail_all(queue: _BotQueue, exc: BaseException) -> None:
        for waiter in queue.heap:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        queue.heap.clear()


def _drop_done(queue: _BotQueue) -> None:
    queue.heap[:] = [w for w in queue.heap if not w.future.done()]
    heapq.heapify(queue.heap)


def _remove(heap: list[_Waiter], waiter: _Waiter) -> None:
    """Take ``waiter`` out of the heap; a more urgent one may have arrived on top meanwhile."""
    if heap and heap[0] is waiter:
        heapq.heappop(heap)
        return
    try:
        heap.remove(waiter)
    except ValueError:
        return
    heapq.heapify(heap)
