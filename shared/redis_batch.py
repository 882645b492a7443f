"""Coalescing concurrent calls of one Lua script into pipelined round trips.

Many workers asking the limiter at once would each pay a round trip and redis-py's per-command
overhead. Here calls made while a round trip is under way wait for the next one, which carries
all of them in one pipeline: under load, batches grow by themselves; when idle, a call goes out
on the next loop turn. Scripts run by SHA and are reloaded when Redis answers NOSCRIPT (after a
restart, a failover or SCRIPT FLUSH).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.crc import key_slot
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    MaxConnectionsError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.broker import BrokerBusy, BrokerUnavailable

# A Redis Cluster failing over answers CLUSTERDOWN on every node while a slot has no primary
# (also for the slots a node serves), TRYAGAIN while a slot moves; redis-py raises
# SlotNotCoveredError while its slot map has no node for a slot. All pass: an outage.
UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
)
NO_CONNECTION = "No connection available."  # redis-py's blocking pool, after its wait
# Errors of a Redis that is there but takes no writes now (out of memory under noeviction, a
# replica, loading, a failed save, its primary down): an outage too, never a fault of the call
REFUSING = ("OOM", "READONLY", "LOADING", "MISCONF", "MASTERDOWN")


# redis-py reads the OOM, READONLY and MASTERDOWN prefixes into exception classes of their own
# and drops them from the text (LOADING it reads as a connection error: UNREACHABLE)
_REFUSING_CLASSES = (OutOfMemoryError, ReadOnlyError, MasterDownError)


def refusal(exc: BaseException) -> BrokerUnavailable | None:
    """``BrokerUnavailable`` for an error that says Redis takes no writes now, else None."""
    if isinstance(exc, _REFUSING_CLASSES):
        return BrokerUnavailable(f"redis refuses writes: {type(exc).__name__}: {str(exc)[:200]}")
    if isinstance(exc, ResponseError) and str(exc).startswith(REFUSING):
        return BrokerUnavailable(f"redis refuses writes: {str(exc)[:200]}")
    return None


Call = tuple[Sequence[str], Sequence[Any]]


def as_text(value: bytes | str) -> str:
    """A reply's string, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def is_busy(exc: BaseException) -> bool:
    """True when the error says only that no pooled connection was free (the pool's limit, or
    the wait for a connection ran out): back-pressure from this process, not a Redis outage."""
    if isinstance(exc, MaxConnectionsError):
        return True
    return isinstance(exc, RedisConnectionError) and str(exc) == NO_CONNECTION


async def unavailable(client: redis.Redis, exc: BaseException) -> BrokerUnavailable:
    """The error to raise for a failed call: ``BrokerBusy`` when the pool was only exhausted,
    else ``BrokerUnavailable``, after dropping the pool's connections if one was found dead."""
    if is_busy(exc):
        return BrokerBusy(f"no redis connection free: {exc}")
    if isinstance(exc, RedisConnectionError):
        await drop_connections(client)
    return BrokerUnavailable(f"redis unreachable: {exc}")


async def drop_connections(client: redis.Redis) -> None:
    """Close every pooled connection after one was found dead.

    After a Redis restart every pooled connection is dead, and finding that out one failed call
    at a time (each followed by a backoff) stretches a one-second outage into many seconds.
    """
    with contextlib.suppress(Exception):  # closing what is already broken may fail; no matter
        await client.connection_pool.disconnect()


MAX_BATCH = 32
MAX_IN_FLIGHT = 2


async def count_keys(
    client: redis.Redis, streams: Sequence[str], sets: Sequence[str], counters: Sequence[str] = ()
) -> dict[str, int]:
    """Entries of ``streams``, members of the sorted ``sets``, values of the integer
    ``counters``, by key (0 for a key that does not exist), in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xlen(stream)
        for name in sets:
            pipe.zcard(name)
        for name in counters:
            pipe.get(name)
        counts = await pipe.execute()
    return dict(zip([*streams, *sets, *counters], (int(c or 0) for c in counts), strict=True))


async def run_script_many(
    client: redis.Redis, source: str, sha: str, calls: Sequence[Call]
) -> list[Any]:
    """Run the script once per call in one pipeline; results (or exceptions) in call order."""
    results = await _pipeline(client, sha, calls)
    missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
    if missing:
        await client.script_load(source)
        retried = await _pipeline(client, sha, [calls[i] for i in missing])
        for i, result in zip(missing, retried, strict=True):
            results[i] = result
    return results


async def _pipeline(client: redis.Redis, sha: str, calls: Sequence[Call]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            # by name: a cluster pipeline refuses its evalsha method, yet routes the command
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


class ScriptBatcher:
    """One Lua script, called by many coroutines, sent in batches."""

    max_batch = MAX_BATCH  # calls a round trip carries
    max_in_flight = MAX_IN_FLIGHT  # round trips under way at once

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1
        self._pending: list[tuple[Call, asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's result for these keys and args; ``BrokerUnavailable`` if Redis is away."""
        return await self.submit(keys, args)

    def submit(self, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        """``call`` without waiting: the future of its result, for callers that need not wait."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(((keys, args), future))
        if self._in_flight < self.max_in_flight:
            self._start()
        return future

    def _start(self) -> None:
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        try:
            while self._pending:
                n = self.max_batch
                batch, self._pending = self._pending[:n], self._pending[n:]
                await self._send(batch)
        finally:
            self._in_flight -= 1

    async def _send(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        try:
            results = await run_script_many(
                self._client, self._source, self._sha, [c for c, _ in batch]
            )
        except BaseException as exc:
            await self._fail(batch, exc)
            return
        await self._answer(batch, results)

    async def _answer(
        self,
        items: list[tuple[Call, asyncio.Future[Any]]],
        results: Sequence[Any],
        unwrap: Callable[[Any], Any] = lambda result: result,
    ) -> None:
        """Each caller its result, or its error (an outage as ``BrokerUnavailable``)."""
        for (_, future), result in zip(items, results, strict=True):
            if future.done():
                continue
            if isinstance(result, UNREACHABLE):
                future.set_exception(await unavailable(self._client, result))
            elif (refused := refusal(result)) is not None:
                future.set_exception(refused)
            elif isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(unwrap(result))

    async def _fail(
        self, items: list[tuple[Call, asyncio.Future[Any]]], exc: BaseException
    ) -> None:
        """Every caller hears why the round trip failed: an outage as ``BrokerUnavailable``,
        any other error as it is (each caller decides what it means); cancelled (the process
        stops), an outage, and the cancellation goes on."""
        if isinstance(exc, UNREACHABLE):
            error: BaseException = await unavailable(self._client, exc)
        elif (refused := refusal(exc)) is not None:
            error = refused
        elif isinstance(exc, Exception):
            error = exc
        else:
            error = BrokerUnavailable("redis call cancelled")
        for _, future in items:
            if not future.done():
                future.set_exception(error)
        if not isinstance(exc, Exception):
            raise exc


class MergingBatcher(ScriptBatcher):
    """A script that takes many items in one call, called by many coroutines one item each.

    The items waiting when a round trip starts go out as one script call per cluster slot (the
    slot of an item's first key; every key of an item shares it): KEYS the items' keys one after
    another, ARGV ``head`` and then, per item, its number of keys and its arguments. The script
    returns one result per item, in order. One call instead of one per item spares Redis a
    script call's own cost and this process a command's, per item.

    An item that makes the merged call fail (a key of the wrong type, say) must not fail the
    others: a failed merged call is run again one item per call, so only that item's caller
    hears of it. Items must therefore be safe to run twice.
    """

    max_batch = 256
    max_in_flight = 2  # fewer round trips under way: the items meanwhile gather into one call

    def __init__(self, client: redis.Redis, source: str, head: Sequence[Any]) -> None:
        super().__init__(client, source)
        self._head = list(head)

    def _merge(self, calls: Sequence[Call]) -> Call:
        keys: list[str] = []
        args: list[Any] = list(self._head)
        for item_keys, item_args in calls:
            keys += item_keys
            args += [len(item_keys), *item_args]
        return keys, args

    async def _send(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        by_slot: dict[int, list[tuple[Call, asyncio.Future[Any]]]] = {}
        for item in batch:
            by_slot.setdefault(key_slot(item[0][0][0].encode()), []).append(item)
        groups = list(by_slot.values())
        merged = [self._merge([call for call, _ in group]) for group in groups]
        try:
            results = await run_script_many(self._client, self._source, self._sha, merged)
        except BaseException as exc:
            await self._fail(batch, exc)
            return
        alone: list[tuple[Call, asyncio.Future[Any]]] = []
        for group, result in zip(groups, results, strict=True):
            refused = refusal(result)
            if isinstance(result, UNREACHABLE) or refused is not None:
                # an outage, or a Redis that takes no writes now: every call of the group
                # hears it (run alone, each would only be refused again)
                error = refused or await unavailable(self._client, result)
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
            elif isinstance(result, Exception) and len(group) > 1:
                alone += group
            elif isinstance(result, Exception):
                if not group[0][1].done():
                    group[0][1].set_exception(result)
            elif not isinstance(result, list) or len(result) != len(group):
                wrong = ResponseError(f"expected {len(group)} results, got {result!r:.200}")
                for _, future in group:
                    if not future.done():
                        future.set_exception(wrong)
            else:
                for (_, future), one in zip(group, result, strict=True):
                    if not future.done():
                        future.set_result(one)
        if alone:
            await self._alone(alone)

    async def _alone(self, items: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        """Each item in a script call of its own (one round trip for all)."""
        merged = [self._merge([call]) for call, _ in items]
        try:
            results = await run_script_many(self._client, self._source, self._sha, merged)
        except BaseException as exc:
            await self._fail(items, exc)
            return
        await self._answer(items, results, lambda result: result[0])
