"""Prototypes of faster limiter batching, measured by ``bench/limiter_decisions.py --proto``.

Not used by floodgate. Each prototype is a ``RedisLimiter`` whose ScriptBatcher (the object
behind ``RedisLimiter._acquire``, with one method ``call(keys, args)``) is swapped for another
batcher, so keys, arguments, the Lua decision and the parsing of its answer stay exactly the
shipped ones (whatever shared/lua/acquire.lua is at the time); only the way calls reach Redis
changes:

  small-batches   the shipped ScriptBatcher with MAX_BATCH 64 instead of 1000, so two pipelines
                  can be in flight and Python packs one while Redis runs the other
  lean-pipeline   one EVALSHA per decision, but the RESP frames are built directly and written to
                  one dedicated connection as soon as the loop turns, without waiting for earlier
                  replies; one reader task feeds hiredis and resolves the callers' futures in
                  order (no per-command redis-py pipeline, encoder, parser or timeout machinery)
  lean-many       like lean-pipeline, but one EVALSHA of a wrapper script runs acquire.lua for
                  every decision queued in that loop turn: one script call instead of hundreds
  lean-many x32   lean-many with at most 32 decisions per EVALSHA, so several are in flight
  lean-many/slot  lean-many with one EVALSHA per hash slot ({bot:<id>}), as Redis Cluster needs
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as redis
from redis.exceptions import NoScriptError, ResponseError

from shared import redis_batch
from shared.keys import Keys
from shared.limiter import Policy
from shared.redis_limiter import RedisLimiter
from shared.scripts import lua

# acquire.lua becomes a function of its own KEYS and ARGV, called once per decision.
# ARGV[1], ARGV[2]: keys and args per decision; then every decision's keys and args in turn.
MANY_TEMPLATE = """
local function one(KEYS, ARGV)
%s
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 0, #KEYS / nk - 1 do
  local keys, argv = {}, {}
  for j = 1, nk do keys[j] = KEYS[i * nk + j] end
  for j = 1, na do argv[j] = ARGV[2 + i * na + j] end
  out[#out + 1] = one(keys, argv)
end
return out
"""

Call = tuple[Sequence[str], Sequence[Any]]


def _bulk(value: Any) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, float):
        raw = repr(value).encode()
    else:
        raw = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


class _Connection:
    """One connection to Redis: frames go out at once, replies come back in order."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self._host = kwargs.get("host", "127.0.0.1")
        self._port = int(kwargs.get("port", 6379))
        self._db = int(kwargs.get("db", 0) or 0)
        self._waiting: deque[Callable[[Any], None]] = deque()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self._task = asyncio.get_running_loop().create_task(self._read(reader))
        if self._db:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.send(b"*2\r\n$6\r\nSELECT\r\n" + _bulk(self._db), [done.set_result])
            await done

    def send(self, frames: bytes, handlers: list[Callable[[Any], None]]) -> None:
        """Write frames whose replies go to ``handlers``, in order."""
        assert self._writer is not None
        self._waiting.extend(handlers)
        self._writer.write(frames)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        while data := await reader.read(1 << 16):
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                self._waiting.popleft()(reply)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _as_redis_error(reply: Any) -> Exception | None:
    if not isinstance(reply, Exception):
        return None
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)


class LeanBatcher:
    """Drop-in for ScriptBatcher: calls queued in one loop turn go out on the next."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._client = client
        self._source = source
        self._conn = _Connection(client.connection_pool.connection_kwargs)
        self._ready: asyncio.Future[None] | None = None
        self._pending: list[tuple[Call, asyncio.Future[Any]]] = []
        self._scheduled = False

    def _scripts(self) -> list[str]:
        return [self._source]

    async def _start(self) -> None:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            await self._conn.start()
            for source in self._scripts():
                await self._client.script_load(source)
            self._ready.set_result(None)
        await self._ready

    async def call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._ready is None or not self._ready.done():
            await self._start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(((keys, args), future))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        sha = _bulk(_sha(self._source))
        frames: list[bytes] = []
        for (keys, args), _ in batch:
            frames.append(b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + len(keys) + len(args)))
            frames += [sha, _bulk(len(keys)), *map(_bulk, keys), *map(_bulk, args)]
        self._conn.send(b"".join(frames), [_resolver(f) for _, f in batch])

    async def aclose(self) -> None:
        await self._conn.close()


class LeanManyBatcher(LeanBatcher):
    """One EVALSHA of MANY_TEMPLATE for many decisions: per loop turn, chunk or hash slot."""

    def __init__(self, client: redis.Redis, source: str, chunk: int, per_slot: bool) -> None:
        super().__init__(client, source)
        self._many = MANY_TEMPLATE % source
        self._many_sha = _bulk(_sha(self._many))
        self._chunk, self._per_slot = chunk, per_slot

    def _scripts(self) -> list[str]:
        return [self._many]

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if self._per_slot:
            slots: dict[str, list[tuple[Call, asyncio.Future[Any]]]] = {}
            for item in batch:
                slots.setdefault(_hash_tag(item[0][0][0]), []).append(item)
            groups = list(slots.values())
        elif self._chunk:
            groups = [batch[i : i + self._chunk] for i in range(0, len(batch), self._chunk)]
        else:
            groups = [batch]
        frames = b"".join(self._frame(group) for group in groups)
        self._conn.send(frames, [_spread([f for _, f in group]) for group in groups])

    def _frame(self, group: list[tuple[Call, asyncio.Future[Any]]]) -> bytes:
        nk, na = len(group[0][0][0]), len(group[0][0][1])
        keys: list[bytes] = []
        args: list[bytes] = [_bulk(nk), _bulk(na)]
        for (k, a), _ in group:
            keys += map(_bulk, k)
            args += map(_bulk, a)
        head = b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + len(keys) + len(args))
        return head + self._many_sha + _bulk(len(keys)) + b"".join(keys) + b"".join(args)


def _hash_tag(key: str) -> str:
    found = re.search(r"\{([^}]*)\}", key)
    return found.group(1) if found and found.group(1) else key


def _resolver(future: asyncio.Future[Any]) -> Callable[[Any], None]:
    def done(reply: Any) -> None:
        if future.done():
            return
        error = _as_redis_error(reply)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(reply)

    return done


def _spread(futures: list[asyncio.Future[Any]]) -> Callable[[Any], None]:
    def done(reply: Any) -> None:
        error = _as_redis_error(reply)
        for i, future in enumerate(futures):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(reply[i])

    return done


class _Proto(RedisLimiter):
    """RedisLimiter with another batcher behind ``_acquire``."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: Policy, batcher: Any) -> None:
        super().__init__(client, keys, policy)
        self._acquire = batcher

    async def aclose(self) -> None:
        await self._acquire.aclose()


class _SmallBatches(RedisLimiter):
    """The shipped RedisLimiter with ScriptBatcher's MAX_BATCH lowered while it is in use."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: Policy, size: int) -> None:
        super().__init__(client, keys, policy)
        self._saved = redis_batch.MAX_BATCH
        redis_batch.MAX_BATCH = size

    async def aclose(self) -> None:
        redis_batch.MAX_BATCH = self._saved


def _lean(client: redis.Redis, keys: Keys, policy: Policy) -> _Proto:
    return _Proto(client, keys, policy, LeanBatcher(client, lua("acquire")))


def _many(chunk: int, per_slot: bool) -> Callable[[redis.Redis, Keys, Policy], _Proto]:
    def make(client: redis.Redis, keys: Keys, policy: Policy) -> _Proto:
        batcher = LeanManyBatcher(client, lua("acquire"), chunk, per_slot)
        return _Proto(client, keys, policy, batcher)

    return make


PROTOTYPES: dict[str, Callable[[redis.Redis, Keys, Policy], Any]] = {
    "small-batches (64)": lambda c, k, p: _SmallBatches(c, k, p, 64),
    "lean-pipeline": _lean,
    "lean-many": _many(0, per_slot=False),
    "lean-many x32": _many(32, per_slot=False),
    "lean-many/slot": _many(0, per_slot=True),
}
