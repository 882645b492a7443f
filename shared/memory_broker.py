"""Embedded broker: the same stream, delay-set and record semantics as Redis, in one process.

Used by ``floodgate run all`` when no ``REDIS_URL`` is set. Every method runs without awaiting
between its reads and writes, so each call is atomic on the event loop, as a Lua script is in Redis.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from shared.broker import (
    GATE_DONE,
    GATE_GO,
    GATE_GO_LEADING,
    GATE_PARKED,
    ORDER_TTL,
    PRIORITY_CODES,
    SETTLED_ORDER_TTL,
    UNTIMED_RECORD_TTL,
    Commit,
    DeadLetter,
    DlqKeys,
    Entry,
    Settle,
    entry_order,
    unroute,
)
from shared.models import Status
from shared.redis_broker import IDEMPOTENCY_TTL, ONCE_TTL_MS

SWEEP_EVERY = 10_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Group:
    new: deque[str] = field(default_factory=deque)
    pending: dict[str, tuple[str, float]] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)


@dataclass
class _Stream:
    entries: dict[str, tuple[bytes, int | None]] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)


@dataclass
class _Chat:
    """A chat's order: sequence numbers handed out, settled, and the parked messages."""

    seq: int = 0
    cur: int = 0
    parked: dict[int, bytes] = field(default_factory=dict)
    # settled before their turn: the cursor passes over them once it gets there
    out_of_turn: set[int] = field(default_factory=set)
    touched: float = field(default_factory=time.monotonic)

    def pass_marks(self) -> bool:
        """The cursor passes over the marks right after it (as order.lua); whether it moved."""
        start = self.cur
        while self.cur + 1 in self.out_of_turn:
            self.out_of_turn.remove(self.cur + 1)
            self.cur += 1
        return self.cur != start

    def expired(self, now: float) -> bool:
        """Gone as its Redis twin would be: ORDER_TTL after the last change, SETTLED_ORDER_TTL
        once every message of the chat has settled."""
        settled = self.cur >= self.seq and not self.parked
        return now - self.touched > (SETTLED_ORDER_TTL if settled else ORDER_TTL)


@dataclass
class _DelaySet:
    scores: dict[bytes, int] = field(default_factory=dict)
    ordered: list[tuple[int, bytes]] = field(default_factory=list)

    def add(self, score: int, member: bytes) -> None:
        if member in self.scores:
            self.ordered.remove((self.scores[member], member))
        self.scores[member] = score
        bisect.insort(self.ordered, (score, member))

    def pop_due(self, now: int, limit: int) -> list[bytes]:
        cut = min(bisect.bisect_right(self.ordered, (now, b"\xff" * 8)), limit)
        due = [member for _, member in self.ordered[:cut]]
        del self.ordered[:cut]
        for member in due:
            del self.scores[member]
        return due


class MemoryBroker:
    """``shared.broker.Broker`` held in this process's memory."""

    def __init__(self, dlq: DlqKeys) -> None:
        self._dlq = dlq
        self._streams: dict[str, _Stream] = {}
        self._sets: dict[str, _DelaySet] = {}
        self._records: dict[str, tuple[dict[str, str], float]] = {}
        self._strings: dict[str, tuple[str, float]] = {}
        self._dead: dict[str, tuple[bytes, bytes, int]] = {}
        self._chats: dict[str, _Chat] = {}
        self._parked_total = 0
        self._seq = itertools.count()
        self._puts = 0
        self._changed = asyncio.Event()

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _stream(self, name: str) -> _Stream:
        return self._streams.setdefault(name, _Stream())

    def _xadd(self, name: str, payload: bytes, chat: str = "", seq: int | None = None) -> str:
        stream = self._stream(name)
        entry_id = f"{_now_ms()}-{next(self._seq)}"
        if chat:
            state = self._chat(chat)
            state.seq += 1
            seq = state.seq
        stream.entries[entry_id] = (payload, seq)
        for group in stream.groups.values():
            group.new.append(entry_id)
        self._changed.set()
        return entry_id

    async def ensure_group(self, stream: str, group: str) -> None:
        s = self._stream(stream)
        if group not in s.groups:
            s.groups[group] = _Group(new=deque(s.entries))

    async def read(
        self, streams: Sequence[str], group: str, consumer: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        found = self._take(streams, group, consumer, count)
        if found or block_ms is None:
            return found
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), block_ms / 1000)
        except TimeoutError:
            return []
        return self._take(streams, group, consumer, count)

    def _take(self, streams: Sequence[str], group: str, consumer: str, count: int) -> list[Entry]:
        found: list[Entry] = []
        for name in streams:
            stream = self._stream(name)
            grp = stream.groups.setdefault(group, _Group(new=deque(stream.entries)))
            while grp.new and len(found) < count:
                entry_id = grp.new.popleft()
                held = stream.entries.get(entry_id)
                if held is not None:
                    grp.pending[entry_id] = (consumer, time.monotonic())
                    grp.deliveries[entry_id] = 1
                    found.append(Entry(name, entry_id, held[0], seq=held[1]))
        return found

    async def read_own_pending(
        self, stream: str, group: str, consumer: str, count: int, recount: bool = True
    ) -> list[Entry]:
        s = self._stream(stream)
        grp = s.groups.get(group, _Group())
        for gone in [i for i in grp.pending if i not in s.entries]:  # trimmed while pending
            del grp.pending[gone]
            grp.deliveries.pop(gone, None)
        mine = [i for i, (owner, _) in grp.pending.items() if owner == consumer][:count]
        now = time.monotonic()
        for i in mine:
            grp.pending[i] = (consumer, now)  # its idle time starts again, as in Redis
            grp.deliveries[i] = grp.deliveries.get(i, 1) + (1 if recount else 0)
        return [
            replace(self._entry(stream, s, i), deliveries=grp.deliveries[i])
            for i in mine
            if i in s.entries
        ]

    @staticmethod
    def _entry(name: str, stream: _Stream, entry_id: str) -> Entry:
        payload, seq = stream.entries[entry_id]
        return Entry(name, entry_id, payload, redelivered=True, seq=seq)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Entry]:
        s = self._stream(stream)
        grp = s.groups.get(group, _Group())
        cutoff = time.monotonic() - min_idle_ms / 1000
        claimed: list[Entry] = []
        for entry_id, (_, since) in list(grp.pending.items()):
            if len(claimed) >= count:
                break
            if since > cutoff:
                continue
            if entry_id not in s.entries:
                del grp.pending[entry_id]
                grp.deliveries.pop(entry_id, None)
                continue
            grp.pending[entry_id] = (consumer, time.monotonic())
            grp.deliveries[entry_id] = grp.deliveries.get(entry_id, 1) + 1
            claimed.append(
                replace(self._entry(stream, s, entry_id), deliveries=grp.deliveries[entry_id])
            )
        return claimed

    async def touch(
        self, stream: str, group: str, consumer: str, entry_ids: Sequence[str]
    ) -> set[str]:
        grp = self._stream(stream).groups.get(group)
        if grp is None:
            return set(entry_ids)
        lost = set()
        for entry_id in entry_ids:
            held = grp.pending.get(entry_id)
            if held is not None and held[0] == consumer:
                grp.pending[entry_id] = (consumer, time.monotonic())
            else:
                lost.add(entry_id)
        return lost

    async def commit(self, commit: Commit) -> dict[str, str]:
        if commit.once and self._claim_keys([(commit.once, "applied")], ONCE_TTL_MS / 1000):
            return {}
        taken = self._claim_keys(commit.idempotency)
        for key, ident, fields in commit.records:  # one by one: a record written twice merges
            if ident not in taken:
                self._put({key: fields}, commit.record_ttls.get(key, commit.record_ttl))
        for name, entry_id in commit.acks:
            self._ack(name, commit.group, entry_id)
        for name, entry_id in commit.seen:
            self._seen(name, commit.group, entry_id)
        for name, message_id, payload, chat in commit.adds:
            if message_id not in taken:
                self._xadd(name, payload, chat)
        now = _now_ms()
        for delay_set, delay_ms, member in commit.delays:
            self._sets.setdefault(delay_set, _DelaySet()).add(now + delay_ms, member)
        for message_id, member, meta in commit.dead:
            self._dead[message_id] = (member, meta, now)
        for settle in commit.settles:
            self._settle(settle)
        return taken

    def _seen(self, name: str, group: str, entry_id: str) -> None:
        grp = self._stream(name).groups.get(group)
        if grp is not None:
            grp.pending.pop(entry_id, None)
            grp.deliveries.pop(entry_id, None)

    def _ack(self, name: str, group: str, entry_id: str) -> None:
        stream = self._stream(name)
        stream.entries.pop(entry_id, None)
        grp = stream.groups.get(group)
        if grp is not None:
            grp.pending.pop(entry_id, None)
            grp.deliveries.pop(entry_id, None)

    def _chat(self, key: str) -> _Chat:
        """A chat's order state, touched now; a new one if it has expired."""
        now = time.monotonic()
        state = self._chats.get(key)
        if state is None or state.expired(now):
            state = self._chats[key] = _Chat()
        state.touched = now
        return state

    def _settle(self, settle: Settle) -> None:
        state = self._chat(settle.chat_state)
        if settle.seq > state.cur + 1:  # as commit.lua: never past an earlier message
            state.out_of_turn.add(settle.seq)
            return
        if settle.seq == state.cur + 1:
            state.cur = settle.seq
        state.pass_marks()  # on any settle, as commit.lua
        self._release(state, settle.stream)

    def _release(self, state: _Chat, stream: str) -> None:
        """The chat's next message, if it is parked, back into its stream."""
        released = state.parked.pop(state.cur + 1, None)
        if released is not None:
            self._parked_total -= 1
            self._xadd(stream, released, seq=state.cur + 1)

    async def trim_older(
        self, stream: str, max_age_ms: int, keep_unread_by: str | None = None
    ) -> None:
        s = self._streams.get(stream)
        if s is None:
            return
        cutoff = _now_ms() - max_age_ms
        old = [i for i in s.entries if int(i.split("-", 1)[0]) < cutoff]
        group = s.groups.get(keep_unread_by) if keep_unread_by else None
        if group is not None:  # as Redis: nothing from the group's first unread entry on
            unread = [*group.new, *group.pending]
            if unread:
                first = min(unread, key=entry_order)
                old = [i for i in old if entry_order(i) < entry_order(first)]
        for entry_id in old:
            del s.entries[entry_id]
        gone = set(old)
        for group in s.groups.values():
            group.new = deque(i for i in group.new if i not in gone)

    async def forget_consumers(self, stream: str, group: str, idle_ms: int) -> list[str]:
        return []  # consumers live in this process only: nobody else's name stays behind

    async def gate(
        self,
        chat_state: str,
        parked: str,
        entry: Entry,
        group: str,
        seq: int,
        parked_count: str,
        record: str | None = None,
    ) -> int:
        state = self._chat(chat_state)
        # as gate.lua: marks left behind by a settle that did not read them
        marks_passed = state.out_of_turn and seq > state.cur + 1 and state.pass_marks()
        if marks_passed and seq != state.cur + 1:
            self._release(state, entry.stream)
        if seq == state.cur + 1:
            if record is not None and record in self._records:
                self._records[record][0]["status"] = Status.SENDING.value
            return GATE_GO_LEADING if state.parked else GATE_GO
        if seq <= state.cur:
            return GATE_DONE
        # as gate.lua: the payload as the stream holds it; an entry gone from the stream was
        # acknowledged by a consumer that claimed it meanwhile, which parked or settled it
        stored = self._stream(entry.stream).entries.get(entry.entry_id)
        if stored is not None:
            if seq not in state.parked:
                self._parked_total += 1
            state.parked[seq] = stored[0]
        self._ack(entry.stream, group, entry.entry_id)
        return GATE_PARKED

    def _claim_keys(
        self, claims: Sequence[tuple[str, str]], ttl: float = IDEMPOTENCY_TTL
    ) -> dict[str, str]:
        taken: dict[str, str] = {}
        now = time.monotonic()
        for key, message_id in claims:
            held = self._strings.get(key)
            if held is not None and held[1] > now:
                taken[message_id] = held[0]
            else:
                self._strings[key] = (message_id, now + ttl)
        return taken

    async def lease(self, key: str, holder: str, ms: int) -> bool:
        now = time.monotonic()
        held = self._strings.get(key)
        if held is not None and held[1] > now and held[0] != holder:
            return False
        self._strings[key] = (holder, now + ms / 1000)
        return True

    async def promote_due(self, delay_set: str, send_streams: Sequence[str], limit: int) -> int:
        target = dict(zip("hnl", send_streams, strict=True))
        due = self._sets.setdefault(delay_set, _DelaySet()).pop_due(_now_ms(), limit)
        for member in due:
            priority, chat, payload = unroute(member)
            self._xadd(target[PRIORITY_CODES[priority]], payload, chat)
        return len(due)

    async def depths(
        self, streams: Sequence[str], sets: Sequence[str], counters: Sequence[str] = ()
    ) -> dict[str, int]:
        counts = {name: len(self._stream(name).entries) for name in streams}
        counts.update(dict.fromkeys(counters, self._parked_total))
        counts.update({name: len(self._sets.get(name, _DelaySet()).scores) for name in sets})
        if self._dlq.index in sets:
            counts[self._dlq.index] = len(self._dead)
        return counts

    async def put_records(self, records: Mapping[str, Mapping[str, str]], ttl: int | None) -> None:
        self._put(records, ttl)

    def _put(self, records: Mapping[str, Mapping[str, str]], ttl: int | None) -> None:
        now = time.monotonic()
        for key, fields in records.items():
            current = self._records.get(key)
            if current is not None and current[1] <= now:  # expired, not swept yet: gone
                current = None
            merged = {**current[0], **fields} if current else dict(fields)
            if ttl is not None:
                expires = now + ttl
            else:
                expires = current[1] if current else now + UNTIMED_RECORD_TTL
            self._records[key] = (merged, expires)
        self._puts += len(records)
        if self._puts >= SWEEP_EVERY:
            self._sweep()

    def _sweep(self) -> None:
        self._puts = 0
        now = time.monotonic()
        for key in [k for k, (_, exp) in self._records.items() if exp <= now]:
            del self._records[key]
        for key in [k for k, (_, exp) in self._strings.items() if exp <= now]:
            del self._strings[key]
        for key in [k for k, state in self._chats.items() if state.expired(now)]:
            del self._chats[key]

    async def get_record(self, key: str) -> dict[str, str] | None:
        held = self._records.get(key)
        if held is None or held[1] <= time.monotonic():
            return None
        return dict(held[0])

    async def get_records(self, keys: Sequence[str]) -> list[dict[str, str] | None]:
        return [await self.get_record(key) for key in keys]

    async def dlq_list(self, limit: int, dlq: DlqKeys | None = None) -> list[DeadLetter]:
        items = sorted(self._dead.items(), key=lambda kv: kv[1][2])[: max(limit, 1)]
        letters = []
        for ident, (member, meta, at) in items:
            priority, _, payload = unroute(member)
            letters.append(DeadLetter(ident, priority, payload, meta, at))
        return letters

    async def dlq_requeue(
        self,
        send_streams: Sequence[str],
        items: Sequence[tuple[str, bytes]],
        dlq: DlqKeys | None = None,
    ) -> int:
        target = dict(zip("hnl", send_streams, strict=True))
        moved = 0
        for ident, member in items:
            if self._dead.pop(ident, None) is not None:
                priority, chat, payload = unroute(member)
                self._xadd(target[PRIORITY_CODES[priority]], payload, chat)
                moved += 1
        return moved

    async def dlq_drop(self, message_id: str, dlq: DlqKeys | None = None) -> bool:
        return self._dead.pop(message_id, None) is not None

    async def dlq_expire(self, retention_ms: int, limit: int, dlq: DlqKeys | None = None) -> int:
        cutoff = _now_ms() - retention_ms
        old = sorted((died, ident) for ident, (_, _, died) in self._dead.items() if died <= cutoff)
        for _, ident in old[:limit]:
            del self._dead[ident]
        return min(len(old), limit)
