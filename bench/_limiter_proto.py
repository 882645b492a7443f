"""Prototypes of faster limiter batching, measured by ``bench/limiter_decisions.py --proto``.

Not used by floodgate; each keeps the decision of shared/lua/acquire.lua (same keys, same
sliding logs, same answers) and changes only how calls reach Redis:

  small-batches   the shipped ScriptBatcher with MAX_BATCH 64 instead of 1000, so two pipelines
                  can be in flight and Python packs one while Redis runs the other
  lean-pipeline   acquire.lua per decision, but the RESP frames are built from pre-encoded
                  pieces and written to one dedicated connection as soon as the loop turns,
                  without waiting for earlier replies; one reader task feeds hiredis and
                  resolves the callers' futures in order (no per-command redis-py machinery)
  lean-many       like lean-pipeline, but one EVALSHA of acquire_many (below) carries every
                  decision queued in that loop turn: one script call instead of hundreds
  lean-many x32   lean-many with at most 32 decisions per EVALSHA, so several are in flight
  lean-many/bot   lean-many with one EVALSHA per bot, as Redis Cluster requires (a script may
                  only touch one slot, and the limiter's keys are tagged per bot)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio as redis

from shared import redis_batch
from shared.keys import Keys
from shared.limiter import Grant, Policy, Window
from shared.redis_limiter import RedisLimiter
from shared.scripts import lua

# The body of acquire.lua, run once per decision in one script call. KEYS: 4 per decision (bot
# hold, chat hold, bot log, chat log); ARGV[1]: member nonce, then 4 per decision (bot limit,
# bot window ms, chat limit, chat window ms). Returns wait, scope, wait, scope, ...
ACQUIRE_MANY = """
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = now_us / 1000
local function wait_for(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) < limit then return 0 end
  local oldest = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
  return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
end
local function one(k, a, member)
  local hold = redis.call('PTTL', KEYS[k + 1])
  if hold > 0 then return hold, 'bot_hold' end
  hold = redis.call('PTTL', KEYS[k + 2])
  if hold > 0 then return hold, 'chat_hold' end
  local bot_wait = wait_for(KEYS[k + 3], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
  local chat_wait = wait_for(KEYS[k + 4], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]))
  if bot_wait > 0 or chat_wait > 0 then
    if bot_wait >= chat_wait then return bot_wait, 'bot' end
    return chat_wait, 'chat'
  end
  redis.call('ZADD', KEYS[k + 3], now, member)
  redis.call('PEXPIRE', KEYS[k + 3], math.ceil(tonumber(ARGV[a + 2])) + 1000)
  redis.call('ZADD', KEYS[k + 4], now, member)
  redis.call('PEXPIRE', KEYS[k + 4], math.ceil(tonumber(ARGV[a + 4])) + 1000)
  return 0, ''
end
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local wait, scope = one(i * 4, 1 + i * 4, tostring(now_us) .. ':' .. ARGV[1] .. '-' .. i)
  out[#out + 1] = wait
  out[#out + 1] = scope
end
return out
"""


def _bulk(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


def _num(value: float) -> bytes:
    return _bulk(repr(value) if isinstance(value, float) else str(value))


class _Connection:
    """One connection to Redis: frames go out at once, replies come back in order."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._waiting: deque[Callable[[Any], None]] = deque()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        kwargs = redis.connection.parse_url(self._url)
        reader, self._writer = await asyncio.open_connection(
            kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
        )
        self._task = asyncio.get_running_loop().create_task(self._read(reader))
        db = int(kwargs.get("db", 0) or 0)
        if db:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.send(b"*2\r\n$6\r\nSELECT\r\n" + _num(db), [done.set_result])
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


class _LeanBase:
    """Calls queued during one loop turn are written together on the next turn."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: Policy) -> None:
        self._client, self._keys, self._policy = client, keys, policy
        kw = client.connection_pool.connection_kwargs
        self._conn = _Connection(f"redis://{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}")
        self._ready: asyncio.Future[None] | None = None
        self._pending: list[tuple[int, int | str, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._counter = 0
        self._bot_parts: dict[int, tuple[bytes, bytes, Window]] = {}

    async def _start(self, *sources: str) -> None:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            await self._conn.start()
            for source in sources:
                await self._client.script_load(source)
            self._ready.set_result(None)
        await self._ready

    def _bot(self, bot_id: int) -> tuple[bytes, bytes, Window]:
        parts = self._bot_parts.get(bot_id)
        if parts is None:
            k = self._keys
            window = self._policy.bot_window(bot_id)
            parts = (_bulk(k.bot_hold(bot_id)), _bulk(k.bot_window(bot_id)), window)
            self._bot_parts[bot_id] = parts
        return parts

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        if self._ready is None or not self._ready.done():
            await self._start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((bot_id, chat_id, future))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        wait, scope = await future
        return Grant(int(wait), scope.decode() if isinstance(scope, bytes) else str(scope))

    def _flush(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self._conn.close()


class LeanPipeline(_LeanBase):
    """acquire.lua once per decision, pre-encoded frames, continuous pipelining."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: Policy) -> None:
        super().__init__(client, keys, policy)
        self._source = lua("acquire")
        sha = hashlib.sha1(self._source.encode()).hexdigest()
        self._head = b"*12\r\n$7\r\nEVALSHA\r\n" + _bulk(sha) + _bulk("4")

    async def _start(self, *sources: str) -> None:
        await super()._start(self._source)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        frames: list[bytes] = []
        handlers: list[Callable[[Any], None]] = []
        k = self._keys
        for bot_id, chat_id, future in batch:
            bot_hold, bot_log, bot_w = self._bot(bot_id)
            chat_w = self._policy.chat_window(chat_id)
            self._counter += 1
            frames += [
                self._head,
                bot_hold,
                _bulk(k.chat_hold(bot_id, chat_id)),
                bot_log,
                _bulk(k.chat_window(bot_id, chat_id)),
                _num(bot_w.limit),
                _num(bot_w.ms),
                _num(chat_w.limit),
                _num(chat_w.ms),
                _bulk(f"lean-{self._counter}"),
            ]
            handlers.append(_resolver(future))
        self._conn.send(b"".join(frames), handlers)


class LeanMany(_LeanBase):
    """One EVALSHA of ACQUIRE_MANY per loop turn (or per bot with ``per_bot``)."""

    def __init__(
        self, client: redis.Redis, keys: Keys, policy: Policy, per_bot: bool, chunk: int = 0
    ) -> None:
        super().__init__(client, keys, policy)
        self._sha = _bulk(hashlib.sha1(ACQUIRE_MANY.encode()).hexdigest())
        self._per_bot = per_bot
        self._chunk = chunk

    async def _start(self, *sources: str) -> None:
        await super()._start(ACQUIRE_MANY)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if self._per_bot:
            groups: dict[int, list[tuple[int, int | str, asyncio.Future[Any]]]] = {}
            for item in batch:
                groups.setdefault(item[0], []).append(item)
            calls = list(groups.values())
        elif self._chunk:
            calls = [batch[i : i + self._chunk] for i in range(0, len(batch), self._chunk)]
        else:
            calls = [batch]
        frames = b"".join(self._frame(call) for call in calls)
        self._conn.send(frames, [_spread([f for _, _, f in call]) for call in calls])

    def _frame(self, call: list[tuple[int, int | str, asyncio.Future[Any]]]) -> bytes:
        k = self._keys
        n = len(call)
        self._counter += 1
        keys: list[bytes] = []
        args: list[bytes] = [_bulk(f"many-{self._counter}")]
        for bot_id, chat_id, _ in call:
            bot_hold, bot_log, bot_w = self._bot(bot_id)
            chat_w = self._policy.chat_window(chat_id)
            keys += [
                bot_hold,
                _bulk(k.chat_hold(bot_id, chat_id)),
                bot_log,
                _bulk(k.chat_window(bot_id, chat_id)),
            ]
            args += [_num(bot_w.limit), _num(bot_w.ms), _num(chat_w.limit), _num(chat_w.ms)]
        head = b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + 8 * n + 1) + self._sha + _num(4 * n)
        return head + b"".join(keys) + b"".join(args)


def _resolver(future: asyncio.Future[Any]) -> Callable[[Any], None]:
    def done(reply: Any) -> None:
        if future.done():
            return
        if isinstance(reply, Exception):  # NOSCRIPT after a flush, or a script error
            future.set_exception(reply)
        else:
            future.set_result(reply)

    return done


def _spread(futures: list[asyncio.Future[Any]]) -> Callable[[Any], None]:
    def done(reply: Any) -> None:
        for i, future in enumerate(futures):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result((reply[2 * i], reply[2 * i + 1]))

    return done


class SmallBatches:
    """The shipped RedisLimiter with ScriptBatcher's MAX_BATCH lowered while it is in use."""

    def __init__(self, client: redis.Redis, keys: Keys, policy: Policy, size: int) -> None:
        self._limiter = RedisLimiter(client, keys, policy)
        self._saved = redis_batch.MAX_BATCH
        redis_batch.MAX_BATCH = size

    async def acquire(self, bot_id: int, chat_id: int | str) -> Grant:
        return await self._limiter.acquire(bot_id, chat_id)

    async def aclose(self) -> None:
        redis_batch.MAX_BATCH = self._saved


PROTOTYPES: dict[str, Callable[[redis.Redis, Keys, Policy], Any]] = {
    "small-batches (64)": lambda c, k, p: SmallBatches(c, k, p, 64),
    "lean-pipeline": LeanPipeline,
    "lean-many": lambda c, k, p: LeanMany(c, k, p, per_bot=False),
    "lean-many x32": lambda c, k, p: LeanMany(c, k, p, per_bot=False, chunk=32),
    "lean-many/bot": lambda c, k, p: LeanMany(c, k, p, per_bot=True),
}
