"""Broker on Redis Streams with consumer groups."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from shared.broker import (
    ORDER_TTL,
    SETTLED_ORDER_TTL,
    UNTIMED_RECORD_TTL,
    BrokerBusy,
    BrokerUnavailable,
    Commit,
    DeadLetter,
    DlqKeys,
    Entry,
    NotReplicated,
    PartialRead,
    entry_order,
    unroute,
)
from shared.redis_batch import (
    UNREACHABLE,
    Call,
    MergingBatcher,
    as_text,
    count_keys,
    refusal,
    unavailable,
)
from shared.redis_client import connect
from shared.scripts import lua

__all__ = ["RedisBroker", "connect"]

P = ParamSpec("P")
T = TypeVar("T")
K = TypeVar("K")

CLAIM_SCAN_ROUNDS = 10
# Answers of a Redis that is up but cannot take writes: out of memory under noeviction, a
# replica, loading its data after a restart, or unable to persist.


def _unavailable(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn connection failures into ``BrokerUnavailable`` so callers handle one exception."""

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (*UNREACHABLE, ResponseError) as exc:
            outage = await _as_outage(cast(Any, args[0]).client, exc)
            if outage is None:
                raise
            raise outage from exc

    return wrapper


async def _as_outage(client: redis.Redis, exc: BaseException) -> BrokerUnavailable | None:
    """The outage ``exc`` says (unreachable, a busy pool, writes refused), None for a fault of
    the call itself."""
    if isinstance(exc, BrokerUnavailable):
        return exc
    if isinstance(exc, UNREACHABLE):
        return await unavailable(client, exc)
    if isinstance(exc, ResponseError):
        return refusal(exc)
    return None


MARK_TTL_MS = 60_000


def _mark(key: str) -> str:
    """A key in ``key``'s slot to write for ``_wait_behind_a_write``: under its hash tag, or
    tagged with the whole key when it has none (which hashes the same)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start >= 0 and end > start + 1:
        return f"{key[:start]}{{{key[start + 1 : end]}}}:replicated"
    return f"{{{key}}}:replicated"


def _name(node: Any) -> str | None:
    return getattr(node, "name", None)


def _by_slot(streams: Sequence[str]) -> list[list[str]]:
    """The streams grouped by their Redis Cluster slot, in order of first appearance."""
    groups: dict[int, list[str]] = {}
    for stream in streams:
        groups.setdefault(key_slot(stream.encode()), []).append(stream)
    return list(groups.values())


def _entries(stream: str, raw: Sequence[Any], redelivered: bool) -> list[Entry]:
    result = []
    for entry_id, fields in raw:
        if not fields:  # deleted (trimmed) while pending
            continue
        ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        seq = fields.get(b"s")
        # an entry without a payload (written by something else than floodgate) reads as an
        # empty one, which each consumer sets aside as unreadable instead of failing on it
        payload = fields.get(b"d", b"")
        result.append(
            Entry(stream, ident, payload, redelivered, int(seq) if seq and seq.isdigit() else None)
        )
    return result


class RedisBroker:
    """``shared.broker.Broker`` on one Redis (or one Cluster slot for the pipeline keys)."""

    def __init__(
        self, client: redis.Redis, dlq: DlqKeys, replication_timeout_ms: int = 1000
    ) -> None:
        self._redis = client
        self._dlq = dlq
        self._wait_ms = replication_timeout_ms
        self._commit = client.register_script(lua("commit"))
        self._promote = client.register_script(lua("promote"))
        self._requeue = client.register_script(lua("dlq_requeue"))
        self._dlq_expire = client.register_script(lua("dlq_expire"))
        self._gate = _GateBatcher(client, lua("gate"), [ORDER_TTL])
        self._lease = client.register_script(lua("lease"))
        self._forget = client.register_script(lua("forget"))
        self._touch = client.register_script(lua("touch"))

    @property
    def client(self) -> redis.Redis:
        """The underlying client, for components that share its pool."""
        return self._redis

    @_unavailable
    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

    @_unavailable
    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            await self._redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @_unavailable
    async def read(
        self, streams: Sequence[str], group: str, consumer: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        if not isinstance(self._redis, RedisCluster):
            # one server: a failure is the whole backend's, raised as it is
            found: list[Entry] = []
            for stream in streams:
                if len(found) >= count:
                    break
                found += await self._read_one(stream, group, consumer, count - len(found))
        else:
            found = await self._read_nodes(streams, group, consumer, count)
        if found or block_ms is None:
            return found
        # One blocking read may name only streams of one slot on a Redis Cluster: there,
        # streams of several slots are waited on in turn, each for its share of the time.
        slots = _by_slot(streams) if isinstance(self._redis, RedisCluster) else [list(streams)]
        for same_slot in slots:
            wait = max(1, block_ms // len(slots))
            try:
                raw = await self._read_group(
                    dict.fromkeys(same_slot, ">"), group, consumer, 1, wait
                )
            except Exception as exc:
                if not isinstance(self._redis, RedisCluster):
                    raise
                cause = await _as_outage(self._redis, exc)
                if cause is None:
                    raise
                if isinstance(cause, BrokerBusy):
                    raise cause from exc
                # the node's other streams too: the next read would only fail on them again
                node = self._node_of(same_slot[0])
                away = [s for s in streams if s in same_slot or self._node_of(s) == node]
                raise PartialRead(found, away, cause) from exc
            for stream, items in raw:
                found += _entries(stream.decode(), items, redelivered=False)
            if found:
                break
        return found

    def _node_of(self, key: str) -> str:
        """The Redis Cluster node serving ``key``, as the client knows it (the key itself while
        the client does not know)."""
        try:
            node = cast(RedisCluster, self._redis).get_node_from_key(key)
        except Exception:  # a slot map being reloaded
            return key
        return _name(node) or key

    async def _read_nodes(
        self, streams: Sequence[str], group: str, consumer: str, count: int
    ) -> list[Entry]:
        """Read stream by stream on a Redis Cluster, so that a primary that does not answer
        holds up only its own partitions: its streams are named in a PartialRead, with the
        entries the others gave. A node that failed is not asked again in the same read (each
        of its streams would fail after its timeout too)."""
        found: list[Entry] = []
        failed: list[str] = []
        away: set[str] = set()
        cause: BrokerUnavailable | None = None
        for stream in streams:
            if len(found) >= count:
                break
            node = self._node_of(stream)
            if node in away:
                failed.append(stream)
                continue
            try:
                found += await self._read_one(stream, group, consumer, count - len(found))
            except Exception as exc:
                cause = await _as_outage(self._redis, exc)
                if cause is None:
                    raise
                if isinstance(cause, BrokerBusy):  # nothing was sent: what was read is kept
                    if found or failed:
                        break
                    raise cause from exc
                failed.append(stream)
                away.add(node)
        if failed:
            raise PartialRead(found, failed, cause or BrokerUnavailable())
        return found

    async def _read_one(self, stream: str, group: str, consumer: str, count: int) -> list[Entry]:
        raw = await self._read_group({stream: ">"}, group, consumer, count, None)
        return [e for s, items in raw for e in _entries(s.decode(), items, redelivered=False)]

    async def _read_group(
        self, streams: dict[str, str], group: str, consumer: str, count: int, block: int | None
    ) -> Any:
        wanted: Any = streams
        try:
            return await self._redis.xreadgroup(group, consumer, wanted, count, block) or []
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            for stream in streams:
                await self.ensure_group(stream, group)
            return []

    @_unavailable
    async def read_own_pending(
        self, stream: str, group: str, consumer: str, count: int, recount: bool = True
    ) -> list[Entry]:
        if not recount:
            return await self._pending_as_they_are(stream, group, consumer, count)
        raw = await self._read_group({stream: "0"}, group, consumer, count, None)
        entries = [e for s, items in raw for e in _entries(s.decode(), items, redelivered=True)]
        gone = [entry_id for _, items in raw for entry_id, fields in items if not fields]
        await self._ack_trimmed(stream, group, gone)
        return await self._with_deliveries(stream, group, entries)

    async def _ack_trimmed(self, stream: str, group: str, gone: list[str]) -> None:
        """Entries trimmed away while pending come back empty from a re-reading: nothing is
        left to do with them, and left pending they would fill every later re-reading."""
        if gone:
            await self._redis.xack(stream, group, *gone)

    async def _pending_as_they_are(
        self, stream: str, group: str, consumer: str, count: int
    ) -> list[Entry]:
        """``consumer``'s pending entries, their delivery counters left as they are: the ids
        and counters from XPENDING, the payloads from XRANGE (XREADGROUP would count one more
        delivery). Touched in between, as XREADGROUP would: their idle time starts again, so
        no other consumer claims them while this one works on them, and one another consumer
        claimed since XPENDING is left to it."""
        try:
            rows = await self._redis.xpending_range(
                stream, group, min="-", max="+", count=count, consumername=consumer
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []
        if not rows:
            return []
        ids = [as_text(r["message_id"]) for r in rows]  # type: ignore[arg-type]
        lost = await self.touch(stream, group, consumer, ids)
        rows = [r for r, i in zip(rows, ids, strict=True) if i not in lost]
        ids = [i for i in ids if i not in lost]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xrange(stream, entry_id, entry_id)
            found = await pipe.execute()
        entries: list[Entry] = []
        gone: list[str] = []
        for row, entry_id, items in zip(rows, ids, found, strict=True):
            if not items or not items[0][1]:
                gone.append(entry_id)
                continue
            for entry in _entries(stream, items, redelivered=True):
                entries.append(replace(entry, deliveries=int(row["times_delivered"])))
        await self._ack_trimmed(stream, group, gone)
        return entries

    @_unavailable
    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Entry]:
        claimed: list[Entry] = []
        cursor = "0-0"
        for _ in range(CLAIM_SCAN_ROUNDS):
            try:
                reply = await self._redis.xautoclaim(
                    stream, group, consumer, min_idle_ms, cursor, count=count
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                return claimed
            cursor = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
            claimed += _entries(stream, reply[1], redelivered=True)
            if cursor == "0-0" or len(claimed) >= count:
                break
        return await self._with_deliveries(stream, group, claimed)

    async def _with_deliveries(self, stream: str, group: str, entries: list[Entry]) -> list[Entry]:
        """The entries with their delivery counters, so a message that keeps killing its
        consumers can be told apart (XAUTOCLAIM itself does not report them)."""
        if not entries:
            return entries
        ids = sorted(entries, key=lambda e: entry_order(e.entry_id))
        rows = await self._redis.xpending_range(
            stream, group, min=ids[0].entry_id, max=ids[-1].entry_id, count=len(entries) * 4
        )
        counts = {
            (
                r["message_id"].decode() if isinstance(r["message_id"], bytes) else r["message_id"]
            ): int(r["times_delivered"])
            for r in rows
        }
        return [replace(e, deliveries=counts.get(e.entry_id, e.deliveries)) for e in entries]

    @_unavailable
    async def touch(
        self, stream: str, group: str, consumer: str, entry_ids: Sequence[str]
    ) -> set[str]:
        if not entry_ids:
            return set()
        try:
            lost = await self._touch(keys=[stream], args=[group, consumer, *entry_ids])
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return set(entry_ids)
        return {i.decode() if isinstance(i, bytes) else str(i) for i in lost}

    @_unavailable
    async def commit(self, commit: Commit) -> dict[str, str]:
        if not commit:
            return {}
        keys, args = _commit_args(commit, commit.dlq or self._dlq)
        if commit.replicated:
            reply = await self._commit_replicated(keys, args)
        else:
            reply = await self._commit(keys=keys, args=args)
        return {reply[i].decode(): reply[i + 1].decode() for i in range(0, len(reply), 2)}

    async def _commit_replicated(self, keys: list[str], args: list[str | bytes | int]) -> Any:
        """Run commit.lua and then ``WAIT 1`` on the same connection (WAIT counts the replicas
        that have this connection's writes), on the node of the commit's slot in a cluster.

        A cluster client that finds the slot moved (a failover) sends the commit again to the
        new primary on its own, but the WAIT already went to the old node: then, or when the
        WAIT fails, nothing can be said of the copy, and ``NotReplicated`` says so."""
        node = await self._slot_node(keys[0])
        route = {} if node is None else {"target_nodes": node}
        for _ in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.execute_command("EVALSHA", self._commit.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", 1, self._wait_ms, **route)
                reply, replicas = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, NoScriptError):
                break
            await self._redis.script_load(lua("commit"))
        if isinstance(reply, Exception):
            raise reply
        if reply and not isinstance(replicas, Exception):
            # an id was taken: its first copy may be on its way to the replica still, and WAIT
            # counts only what this connection wrote, so write a mark behind it and wait again
            replicas = await self._wait_behind_a_write(keys[0], route)
        moved = _name(await self._slot_node(keys[0])) != _name(node)
        if isinstance(replicas, Exception) or moved:
            raise NotReplicated(f"the write's copy is unknown (the slot moved): {replicas}")
        if int(replicas) < 1:
            raise NotReplicated(f"no replica confirmed the write within {self._wait_ms} ms")
        return reply

    async def _wait_behind_a_write(self, key: str, route: dict[str, Any]) -> Any:
        """``WAIT 1`` after a write of this connection to ``key``'s slot: it returns once a
        replica has every earlier write of that slot's primary."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.execute_command("SET", _mark(key), "1", "PX", MARK_TTL_MS)
            pipe.execute_command("WAIT", 1, self._wait_ms, **route)
            _, replicas = await pipe.execute(raise_on_error=False)
        return replicas

    async def _slot_node(self, key: str) -> Any:
        """The cluster node serving ``key`` as this client knows it (None on one server)."""
        if not isinstance(self._redis, RedisCluster):
            return None
        await self._redis.initialize()  # no-op once the slot map is known
        return self._redis.get_node_from_key(key)

    @_unavailable
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
        keys = [entry.stream, parked_count, chat_state, parked]
        verdict = await self._gate.call(
            keys if record is None else [*keys, record], [group, seq, entry.entry_id]
        )
        return int(verdict)

    @_unavailable
    async def lease(self, key: str, holder: str, ms: int) -> bool:
        return bool(await self._lease(keys=[key], args=[holder, ms]))

    @_unavailable
    async def promote_due(self, delay_set: str, send_streams: Sequence[str], limit: int) -> int:
        declared = [delay_set, *send_streams]
        moved, needed = await self._promote(keys=declared, args=[limit, ORDER_TTL])
        if needed and moved < limit:  # due members whose chat keys the first call did not know
            chats = sorted({c.decode() if isinstance(c, bytes) else str(c) for c in needed})
            more, _ = await self._promote(keys=declared + chats, args=[limit - moved, ORDER_TTL])
            moved += more
        return int(moved)

    @_unavailable
    async def trim_older(
        self, stream: str, max_age_ms: int, keep_unread_by: str | None = None
    ) -> None:
        seconds, micros = await self._redis.time()
        cutoff = (max(0, seconds * 1000 + micros // 1000 - max_age_ms), 0)
        if keep_unread_by is not None:
            cutoff = min(cutoff, await self._first_unread(stream, keep_unread_by))
        await self._redis.xtrim(stream, minid=f"{cutoff[0]}-{cutoff[1]}", approximate=False)

    async def _first_unread(self, stream: str, group: str) -> tuple[int, int]:
        """The id of the first entry ``group`` has not acknowledged: its oldest pending one, or
        else the one after the last it was given. New entries only come after both, and an
        entry given meanwhile was after the last one read here, so a trim short of this id
        takes nothing the group has not acknowledged."""
        groups = await self._redis.xinfo_groups(stream)
        info = next((g for g in groups if as_text(g["name"]) == group), None)
        if info is None:  # no such group yet: it will read from the start, keep everything
            return (0, 0)
        ms, seq = entry_order(as_text(info["last-delivered-id"]))
        first = (ms, seq + 1)
        if int(info["pending"]):
            summary = await self._redis.xpending(stream, group)
            if summary["min"] is not None:
                first = min(first, entry_order(as_text(summary["min"])))
        return first

    @_unavailable
    async def forget_consumers(self, stream: str, group: str, idle_ms: int) -> list[str]:
        gone = await self._forget(keys=[stream], args=[group, idle_ms])
        return [name.decode() if isinstance(name, bytes) else str(name) for name in gone]

    @_unavailable
    async def depths(
        self, streams: Sequence[str], sets: Sequence[str], counters: Sequence[str] = ()
    ) -> dict[str, int]:
        return await count_keys(self._redis, streams, sets, counters)

    @_unavailable
    async def put_records(self, records: Mapping[str, Mapping[str, str]], ttl: int | None) -> None:
        if not records:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, fields in records.items():
                pipe.hset(key, mapping=dict[Any, Any](fields))
                # kept as it was, or given one if it had expired meanwhile (made anew here)
                pipe.expire(key, UNTIMED_RECORD_TTL if ttl is None else ttl, nx=ttl is None)
            await pipe.execute()

    @_unavailable
    async def get_record(self, key: str) -> dict[str, str] | None:
        raw: Any = await self._redis.hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    @_unavailable
    async def get_records(self, keys: Sequence[str]) -> list[dict[str, str] | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            raws = await pipe.execute()
        return [{k.decode(): v.decode() for k, v in r.items()} if r else None for r in raws]

    @_unavailable
    async def dlq_list(self, limit: int, dlq: DlqKeys | None = None) -> list[DeadLetter]:
        keys = dlq or self._dlq
        ids: Any = await self._redis.zrange(keys.index, 0, max(limit, 1) - 1, withscores=True)
        if not ids:
            return []
        names = [i for i, _ in ids]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.payloads, names)
            pipe.hmget(keys.meta, names)
            payloads, metas = await pipe.execute()
        letters: list[DeadLetter] = []
        for (ident, score), member, meta in zip(ids, payloads, metas, strict=True):
            if member is None:
                continue
            priority, _, payload = unroute(member)
            letters.append(DeadLetter(ident.decode(), priority, payload, meta or b"{}", int(score)))
        return letters

    @_unavailable
    async def dlq_requeue(
        self,
        send_streams: Sequence[str],
        items: Sequence[tuple[str, bytes]],
        dlq: DlqKeys | None = None,
    ) -> int:
        if not items:
            return 0
        queue = dlq or self._dlq
        keys = [queue.index, queue.payloads, queue.meta, *send_streams]
        args: list[str | bytes | int] = [ORDER_TTL]
        for ident, member in items:
            chat = unroute(member)[1]
            if chat and chat not in keys:
                keys.append(chat)
            args += [ident, member, keys.index(chat) + 1 if chat else 0]
        moved: int = await self._requeue(keys=keys, args=args)
        return moved

    @_unavailable
    async def dlq_drop(self, message_id: str, dlq: DlqKeys | None = None) -> bool:
        keys = dlq or self._dlq
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.index, message_id)
            pipe.hdel(keys.payloads, message_id)
            pipe.hdel(keys.meta, message_id)
            removed, _, _ = await pipe.execute()
        return bool(removed)

    @_unavailable
    async def dlq_expire(self, retention_ms: int, limit: int, dlq: DlqKeys | None = None) -> int:
        keys = dlq or self._dlq
        declared = [keys.index, keys.payloads, keys.meta]
        return int(await self._dlq_expire(keys=declared, args=[retention_ms, limit]))


class _GateBatcher(MergingBatcher):
    """gate.lua's calls merged, what a run of them shares (their stream, the parked count and
    the consumer group) handed over once: three arguments a message fewer for Redis to take.
    An item is ``([stream, parked count, chat state, parked set, record?], [group, seq, id])``."""

    def _merge(self, calls: Sequence[Call]) -> Call:
        keys: list[str] = []
        args: list[Any] = list(self._head)
        shared: tuple[str, str, str] | None = None
        for (stream, count, *own), (group, seq, entry_id) in calls:
            if (stream, count, group) != shared:
                shared = (stream, count, group)
                keys += [stream, count]
                args += [len(own) + 10, group]
            else:
                args.append(len(own))
            keys += own
            args += [seq, entry_id]
        return keys, args


def _commit_args(commit: Commit, dlq: DlqKeys) -> tuple[list[str], list[str | bytes | int]]:
    """KEYS and ARGV of ``commit.lua``: keys deduplicated, referenced by 1-based index; the
    dead-letter keys only when the commit kills a message, so a commit of keys in another slot
    (inbound updates) declares no key of the pipeline's.

    A batch goes grouped: records with the same fields as one op, their shared values once;
    acknowledgements, appends and settles per stream. Every argument costs Redis time to hand
    to the script, and a batch's records differ in a field or two. Message ids go along only
    where an idempotency key may have been taken."""
    keys: list[str] = []
    index: dict[str, int] = {}

    def ref(key: str) -> int:
        if key not in index:
            keys.append(key)
            index[key] = len(keys)
        return index[key]

    ids = 1 if commit.idempotency else 0
    args: list[str | bytes | int] = [commit.group, ORDER_TTL, SETTLED_ORDER_TTL]
    if commit.once:
        args += ["once", ref(commit.once), ONCE_TTL_MS]
    for key, message_id in commit.idempotency:
        args += ["idem", ref(key), message_id, IDEMPOTENCY_TTL]
    _grouped_records(commit, ids, ref, args)
    for stream, acks in _grouped(commit.acks, lambda ack: ack[0]).items():
        entry_ids = [entry_id for _, entry_id in acks]
        for at in range(0, len(entry_ids), ACKS_PER_CALL):
            chunk = entry_ids[at : at + ACKS_PER_CALL]
            args += ["acks", ref(stream), len(chunk), *chunk]
    for stream, entry_id in commit.seen:
        args += ["seen", ref(stream), entry_id]
    for stream, items in _grouped(commit.adds, lambda add: add[0]).items():
        args += ["adds", ref(stream), ids, len(items)]
        for _, message_id, payload, chat in items:
            if ids:
                args.append(message_id)
            args += [payload, ref(chat) if chat else 0]
    for delay_set, delay_ms, member in commit.delays:
        args += ["delay", ref(delay_set), delay_ms, member]
    for message_id, member, meta in commit.dead:
        args += ["dead", ref(dlq.index), ref(dlq.payloads), ref(dlq.meta), message_id, member]
        args.append(meta)
    by_stream = _grouped(commit.settles, lambda settle: (settle.stream, settle.parked_count))
    for (stream, count), group in by_stream.items():
        args += ["settles", ref(stream), ref(count), len(group)]
        for settle in group:
            args += [ref(settle.chat_state), ref(settle.parked), int(settle.seq)]
    return keys, args


def _record_ttl(commit: Commit, key: str) -> int:
    # whole numbers: commit.lua hands lifetimes and sequence numbers to Redis as they come;
    # negative: keep the record's lifetime (or give it one, if it had expired meanwhile)
    return int(commit.record_ttls.get(key, commit.record_ttl or -UNTIMED_RECORD_TTL))


def _grouped(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """``items`` by ``key``, each group in the items' order, the groups in order of first
    appearance."""
    out: dict[K, list[T]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def _grouped_records(
    commit: Commit, ids: int, ref: Callable[[str], int], args: list[str | bytes | int]
) -> None:
    """``recs`` ops: one per lifetime and set of field names, the fields whose value every
    record of the group shares given once, the others per record. A record written twice in
    one commit starts a new run of groups, so its writes keep their order."""
    runs: list[dict[tuple[int, tuple[str, ...]], list[tuple[str, str, Mapping[str, str]]]]] = [{}]
    seen: set[str] = set()
    for key, message_id, fields in commit.records:
        if key in seen:
            runs.append({})
            seen.clear()
        seen.add(key)
        group = runs[-1].setdefault((_record_ttl(commit, key), tuple(fields)), [])
        group.append((key, message_id, fields))
    for (ttl, names), records in (item for run in runs for item in run.items()):
        first = records[0][2]
        shared = [n for n in names if all(fields[n] == first[n] for _, _, fields in records)]
        own = [n for n in names if n not in shared]
        args += ["recs", ttl, ids, len(shared)]
        for name in shared:
            args += [name, first[name]]
        args += [len(own), *own, len(records)]
        for key, message_id, fields in records:
            args.append(ref(key))
            if ids:
                args.append(message_id)
            args += [fields[name] for name in own]


IDEMPOTENCY_TTL = 24 * 3600
ONCE_TTL_MS = 3600 * 1000  # far longer than any retry of one commit
ACKS_PER_CALL = 1000  # entry ids of one XACK and one XDEL in commit.lua (unpack stops near 8,000)
