"""The broker interface: streams with consumer groups, delay sets, records and dead letters.

Two implementations stand beside it: ``redis_broker`` (Redis Streams, for every deployment with
``REDIS_URL``) and ``memory_broker`` (embedded, for ``floodgate run all`` without Redis). Both pass
the same contract suite in ``tests/shared/test_broker_contract.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.models import Priority

PRIORITY_CODES: dict[Priority, str] = {Priority.HIGH: "h", Priority.NORMAL: "n", Priority.LOW: "l"}
CODE_PRIORITIES: dict[str, Priority] = {code: prio for prio, code in PRIORITY_CODES.items()}


class BrokerUnavailable(Exception):
    """The backend cannot be reached; nothing of the failed call took effect or it is unknown."""


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as what orders it."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class NotReplicated(BrokerUnavailable):
    """A commit that asked for replication was applied on the primary, but no replica confirmed
    it in time: it may survive or be lost with the primary, so nothing about it is promised."""


class PartialRead(BrokerUnavailable):
    """A read of several streams, some of which did not answer (on a Redis Cluster: their
    primary is away, or failing over). ``entries`` came from the others; a reply from the
    ``failed`` streams may have been lost on its way, leaving entries delivered to the reader
    and pending under its name: those are re-read, not read anew."""

    def __init__(self, entries: list[Entry], failed: Sequence[str], cause: BaseException) -> None:
        super().__init__(f"{len(failed)} of the streams read did not answer: {cause}")
        self.entries = entries
        self.failed = tuple(failed)


class BrokerBusy(BrokerUnavailable):
    """No connection to the backend came free in time: this process asks more than its pool
    carries. Retried like an outage, but it says nothing about the backend's health."""


ORDER_TTL = 7 * 86400
# A chat whose every message has settled keeps its order state this long only: a copy of a
# settled message still on its way (a frozen sender that wakes) is then told it is done. The
# chat's next message renews it to ORDER_TTL. Kept 7 days, the order states of a broadcast to
# 10 million chats a day held about 9.5 GB of Redis.
SETTLED_ORDER_TTL = 3600
# A status record written "keeping its lifetime" that had expired meanwhile (a backlog longer
# than the record's lifetime, an unreadable entry's record) is made anew: with this lifetime,
# never none.
UNTIMED_RECORD_TTL = 7 * 86400

GATE_GO = 0
GATE_DONE = 1
GATE_PARKED = 2
GATE_GO_LEADING = 3  # go; later messages of the chat are parked behind this one


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry handed to a consumer; ``seq`` is its place in its chat's order."""

    stream: str
    entry_id: str
    payload: bytes
    redelivered: bool = False
    seq: int | None = None
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message in the dead-letter queue."""

    message_id: str
    priority: Priority
    payload: bytes
    meta: bytes
    dead_at_ms: int


def routed(priority: Priority, payload: bytes, chat_state: str = "") -> bytes:
    """Member of a delay set or the DLQ: ``<priority code>:<length>:<chat state key><payload>``,
    the length being the key's in bytes, so no byte of the key or the payload can move the
    boundary between them.

    With a chat state key the message takes a new place in its chat's order when it enters a
    send queue; without one it keeps the place its payload carries.
    """
    chat = chat_state.encode()
    return f"{PRIORITY_CODES[priority]}:{len(chat)}:".encode() + chat + payload


def unroute(member: bytes) -> tuple[Priority, str, bytes]:
    """Split a routed member back into priority, chat state key and payload.

    Members written before the length prefix (``<code>|<chat state key>|<payload>``, the key
    ending at its first ``|``) may still wait in delay sets or the DLQ after an upgrade; they
    are read as they were written then.
    """
    priority = CODE_PRIORITIES[chr(member[0])]
    if member[1:2] == b"|":
        chat, _, payload = member[2:].partition(b"|")
        return priority, chat.decode(), payload
    size, _, rest = member[2:].partition(b":")
    length = int(size)
    return priority, rest[:length].decode(), rest[length:]


@dataclass(frozen=True, slots=True)
class Settle:
    """A message of a chat is done (sent or dead): advance the chat's order past ``seq``."""

    chat_state: str
    parked: str
    seq: int
    stream: str
    parked_count: str


@dataclass(frozen=True, slots=True)
class DlqKeys:
    """The three keys of the dead-letter queue."""

    index: str
    payloads: str
    meta: str


@dataclass
class Commit:
    """Changes one consumer applies atomically: all of them take effect, or none.

    ``acks`` acknowledge (and delete) consumed entries of the consumer's group; ``seen``
    acknowledge without deleting (for streams other groups read as well); ``adds`` append
    ``(stream, message id, payload, chat state key or "")`` to streams, giving the entry the
    chat's next sequence number when a chat state key is named; ``delays`` put routed members in
    a delay set, due ``delay_ms`` after the backend's clock; ``dead`` moves messages to the
    dead-letter queue; ``settles`` advance chats' order and release their next parked message;
    ``idempotency`` claims ``(key, message_id)`` before the adds, and if a key is taken the add
    carrying the same message id is skipped and the existing id reported; ``records`` write
    ``(record key, message id, fields)`` of status records first (skipped for a taken id), kept
    ``record_ttl`` seconds from now, or with None for the lifetime they were created with.
    ``record_ttls`` gives single records (by key) a lifetime of their own instead (a message
    scheduled far ahead keeps its record until it is sent and ``record_ttl`` beyond).
    ``once`` names a key that marks the commit as applied: the same commit sent again (after
    its reply was lost) finds it and changes nothing. ``replicated`` asks the backend to
    return only once a replica has the commit too (``NotReplicated`` if none confirms in time).
    ``dlq`` names the dead-letter queue ``dead`` goes to (by default the broker's own).

    A chat state key belongs to one stream (its priority's): a backend may apply the adds and
    the settles stream by stream, keeping their order within a stream only.
    """

    group: str = ""
    acks: list[tuple[str, str]] = field(default_factory=list)
    adds: list[tuple[str, str, bytes, str]] = field(default_factory=list)
    delays: list[tuple[str, int, bytes]] = field(default_factory=list)
    dead: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    idempotency: list[tuple[str, str]] = field(default_factory=list)
    settles: list[Settle] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    records: list[tuple[str, str, Mapping[str, str]]] = field(default_factory=list)
    record_ttl: int | None = None
    record_ttls: dict[str, int] = field(default_factory=dict)
    once: str = ""
    replicated: bool = False
    dlq: DlqKeys | None = None  # the dead-letter queue of the commit's partition

    def __bool__(self) -> bool:
        return bool(
            self.acks
            or self.adds
            or self.delays
            or self.dead
            or self.idempotency
            or self.settles
            or self.records
            or self.seen
        )


class Broker(Protocol):
    """Everything the services need from their backend, apart from the rate limiter."""

    async def ping(self) -> None:
        """Raise ``BrokerUnavailable`` unless the backend answers."""

    async def close(self) -> None:
        """Release connections."""

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create the stream and its consumer group at id 0 if missing."""

    async def read(
        self, streams: Sequence[str], group: str, consumer: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        """New entries for ``consumer``, taken from the streams in the given order of preference.

        Reads the first stream first and the next only while fewer than ``count`` were found;
        blocks up to ``block_ms`` (None: not at all) only when every stream is empty. Streams
        that do not answer while others do (a Redis Cluster primary away) raise
        ``PartialRead`` with what the others gave.
        """

    async def read_own_pending(
        self, stream: str, group: str, consumer: str, count: int, recount: bool = True
    ) -> list[Entry]:
        """Entries delivered to ``consumer`` earlier and never acknowledged (after a restart).
        ``recount``: the re-reading counts as a delivery (a restart: the process that held them
        died); not after an outage, which may be retried many times and would make healthy
        messages look like ones that keep killing their consumers."""

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Entry]:
        """Take over entries other consumers left unacknowledged for ``min_idle_ms``."""

    async def touch(
        self, stream: str, group: str, consumer: str, entry_ids: Sequence[str]
    ) -> set[str]:
        """Reset the idle time of entries this consumer still works on, so no other consumer
        claims them while they wait their turn here (the delivery counters do not move).
        Returns the ids no longer pending to this consumer: claimed by another while this one
        was frozen, or gone. Those are never taken back; the caller must drop them."""

    async def commit(self, commit: Commit) -> dict[str, str]:
        """Apply ``commit`` atomically; return {message id: existing id} for taken keys."""

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
        """May the chat's message ``seq`` go now? ``GATE_GO``, or ``GATE_GO_LEADING`` when later
        messages of the chat are parked behind it; ``GATE_DONE`` if it was settled before
        (acknowledge it, do not send); ``GATE_PARKED`` if an earlier message of the chat is
        still under way: the entry is then acknowledged and waits in ``parked``. When it goes,
        its status ``record`` (if given and still there) says ``sending``."""

    async def trim_older(
        self, stream: str, max_age_ms: int, keep_unread_by: str | None = None
    ) -> None:
        """Delete entries older than ``max_age_ms``, for a stream that other consumer groups
        read too and nobody deletes from; none that the group ``keep_unread_by`` has not
        acknowledged yet (the message store's, which must not lose an update to a trim while
        PostgreSQL is away)."""

    async def forget_consumers(self, stream: str, group: str, idle_ms: int) -> list[str]:
        """Delete the group's consumers that hold no pending entry and were idle for longer
        than ``idle_ms``; return their names."""

    async def lease(self, key: str, holder: str, ms: int) -> bool:
        """Take the lease ``key`` for ``ms`` if it is free or already ``holder``'s."""

    async def promote_due(self, delay_set: str, send_streams: Sequence[str], limit: int) -> int:
        """Move due members of a delay set to their send stream; return how many moved."""

    async def depths(
        self, streams: Sequence[str], sets: Sequence[str], counters: Sequence[str] = ()
    ) -> dict[str, int]:
        """Entries not yet acknowledged per stream, members per sorted set, counter values."""

    async def put_records(self, records: Mapping[str, Mapping[str, str]], ttl: int | None) -> None:
        """Create or update status records (hash fields); ``ttl`` seconds from now, or with
        None the record keeps the lifetime it was created with."""

    async def get_record(self, key: str) -> dict[str, str] | None:
        """One status record, or None."""

    async def get_records(self, keys: Sequence[str]) -> list[dict[str, str] | None]:
        """Several status records at once."""

    async def dlq_list(self, limit: int, dlq: DlqKeys | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (of ``dlq``, by default the broker's own queue)."""

    async def dlq_requeue(
        self,
        send_streams: Sequence[str],
        items: Sequence[tuple[str, bytes]],
        dlq: DlqKeys | None = None,
    ) -> int:
        """Put dead messages back on their send queues with new routed payloads; count them."""

    async def dlq_drop(self, message_id: str, dlq: DlqKeys | None = None) -> bool:
        """Remove one dead letter; False if it was not there."""

    async def dlq_expire(self, retention_ms: int, limit: int, dlq: DlqKeys | None = None) -> int:
        """Drop at most ``limit`` dead letters that died more than ``retention_ms`` ago, the
        oldest first; how many were dropped."""
