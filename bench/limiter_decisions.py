"""Limiter decisions per second from one process against one Redis.

A decision is one chat's answer from shared/lua/acquire.lua: it checks the holds, trims the
bot's sliding log, checks the bot's and the chat's windows and, since the rates are set far above
what the bench can reach, grants and writes both logs. As in the sender, every granted token's
call then ends: `RedisLimiter.sent` (shared/lua/sent.lua) moves the token to that moment, the
tokens of a bot that end together in one call. The rates count decisions, each with its `sent`.
Bots and chats are drawn at random (default 200 bots x 5,000 chats), so calls spread over many
keys the way a busy sender's do. Measured, each for --duration seconds:

  sequential    one coroutine awaiting acquire() after acquire(): one round trip per decision
  concurrent    --concurrency coroutines (default 256) calling acquire() for one chat each; the
                ScriptBatcher (shared/redis_batch.py) coalesces the calls into pipelines
  batched       one caller per bot (--bots) asking acquire_many() for --batch chats at once
                (default 8, then 30): what a bot's pacer does when its window opens with a
                crowd waiting (it asks for the window's room, up to 64; Telegram's usual bot
                window holds 30); the calls of many bots are pipelined as above
  memory        MemoryLimiter.acquire(), the embedded backend's, for reference

and for context, what the client and the server can do without floodgate's code around them:

  evalsha loop      plain `await client.evalsha(...)` of the same script with the keys and args
                    acquire() sends, one after another (redis-py)
  ping loop         plain `await client.ping()` one after another: the bare round trip
  evalsha pipeline  redis-py pipelines of --concurrency EVALSHAs, one after another, no futures
  redis-benchmark   the C client running the same EVALSHA (random bots and chats): one
                    connection without pipelining, then 50 connections x pipelines of 16 (the
                    server's own ceiling for this script)

Each line shows the CPU this process and the Redis server used meanwhile (Redis's includes any
other client of that server), and the batched lines the server's CPU time per decision: one
Redis serves every sender replica, so that is what bounds a whole fleet.

The issue's target is 50,000 decisions/s from one process with pipelining or batching. The
namespace is fresh (`lbench<hex>`) and all of its keys are deleted at the end. Run with Redis up:

    .venv/bin/python bench/limiter_decisions.py
    .venv/bin/python bench/limiter_decisions.py --only batched --batch 30 --duration 10  # py-spy

The process uses uvloop like the services do (--no-uvloop for the default loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as redis

import shared.redis_batch as redis_batch
from bench._common import code_version, delete_namespace
from shared.keys import Keys
from shared.limiter import Limiter, Policy
from shared.memory_limiter import MemoryLimiter
from shared.redis_broker import connect
from shared.redis_limiter import RedisLimiter
from shared.scripts import lua

MODES = ("sequential", "concurrent", "batched", "unreported", "memory", "context")
TARGET = 50_000
# Far above anything one process reaches: every decision is a grant that writes both logs.
# Tokens the raw script lines below never report sent count as lost after half a second (a
# lease), so they do not pile up as calls under way (the sender reports every call's end).
POLICY = Policy(
    bot_rate=1e7,
    chat_rate=1e7,
    group_rate=1e9,
    margin_s=0.0,
    in_flight_s=0.5,
    in_flight_lease_s=0.5,
)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (3)")
    p.add_argument("--concurrency", type=int, default=256, help="concurrent callers (256)")
    p.add_argument("--bots", type=int, default=200, help="distinct bots (200)")
    p.add_argument("--chats", type=int, default=5000, help="distinct chats per bot (5000)")
    p.add_argument(
        "--batch",
        type=int,
        action="append",
        help="tokens asked for in one call in the batched mode (repeatable; 8 and 30)",
    )
    p.add_argument("--only", choices=MODES, action="append", help="run only these (repeatable)")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's default event loop")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = p.parse_args()
    args.batch = args.batch or [8, 30]
    return args


class Picker:
    """Random (bot, chat) pairs from a precomputed table, so drawing costs next to nothing."""

    def __init__(self, bots: int, chats: int, size: int = 1 << 16) -> None:
        rng = random.Random(1)
        self._pairs = [
            (9_000_000 + rng.randrange(bots), 1_000_000 + rng.randrange(chats)) for _ in range(size)
        ]
        self._mask = size - 1
        self._i = 0

    def __call__(self) -> tuple[int, int]:
        self._i = (self._i + 1) & self._mask
        return self._pairs[self._i]


class Usage:
    """CPU seconds this process and the Redis server spent during one measurement."""

    probe: redis.Redis | None = None
    bench = 0.0
    server = 0.0

    @classmethod
    async def _server_cpu(cls) -> float:
        if cls.probe is None:
            return 0.0
        info = await cls.probe.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    @classmethod
    async def start(cls) -> None:
        cls.bench, cls.server = time.process_time(), await cls._server_cpu()

    @classmethod
    async def stop(cls) -> None:
        cls.bench = time.process_time() - cls.bench
        cls.server = await cls._server_cpu() - cls.server


async def _timed(
    workers: int,
    duration: float,
    one: Callable[[], Awaitable[int | None]],
    settle: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, float]:
    """Run ``workers`` loops of ``one`` for ``duration`` s; (decisions, elapsed). ``one``
    returns how many decisions it made (None: one); ``settle`` finishes what they left under
    way (the limiter's background moves) inside the measured time."""
    await Usage.start()
    done = 0
    stop_at = time.perf_counter() + duration

    async def loop() -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < stop_at:
            n += await one() or 1
        done += n

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(workers)))
    if settle is not None:
        await settle()
    elapsed = time.perf_counter() - started
    await Usage.stop()
    return done, elapsed


def _line(name: str, calls: int, elapsed: float, extra: str = "") -> None:
    rate = calls / elapsed if elapsed else 0.0
    cpu = (
        f", CPU bench {Usage.bench / elapsed:.0%} redis {Usage.server / elapsed:.0%}"
        if elapsed
        else ""
    )
    print(f"{name:<34} {rate:>10,.0f} /s  ({calls:,} in {elapsed:.2f} s{cpu}){extra}", flush=True)


class BatchCounter:
    """Counts the pipelines the ScriptBatcher sends, by wrapping its module's runner."""

    def __init__(self) -> None:
        self.pipelines = 0
        self.calls = 0
        self._original = redis_batch.run_script_many

    async def _counted(self, client, source, sha, calls):  # type: ignore[no-untyped-def]
        self.pipelines += 1
        self.calls += len(calls)
        return await self._original(client, source, sha, calls)

    def __enter__(self) -> BatchCounter:
        redis_batch.run_script_many = self._counted  # type: ignore[assignment]
        return self

    def __exit__(self, *_: object) -> None:
        redis_batch.run_script_many = self._original


async def _measure(args: argparse.Namespace, keys: Keys) -> None:
    modes = set(args.only or MODES)
    client = connect(args.redis_url)
    pick = Picker(args.bots, args.chats)
    limiter = RedisLimiter(client, keys, POLICY)
    source = lua("acquire")
    sha = hashlib.sha1(source.encode()).hexdigest()
    Usage.probe = connect(args.redis_url)
    print(
        f"{os.cpu_count()} cores; Redis {args.redis_url}; {args.bots} bots x {args.chats} chats;"
        f" {args.duration:g} s per line; loop {type(asyncio.get_running_loop()).__module__};"
        f" code {code_version()}",
        flush=True,
    )
    try:
        await client.script_load(source)
        await limiter.acquire(*pick())  # warm the pool and the script cache
        if "sequential" in modes:
            calls, elapsed = await _timed(1, args.duration, Decider(limiter, pick), limiter.flush)
            _line("(a) RedisLimiter, sequential", calls, elapsed)
        if "concurrent" in modes:
            await _clean(args, keys)
            name = f"(b) RedisLimiter, {args.concurrency} concurrent"
            await _concurrent(args, limiter, pick, 1, args.concurrency, name)
        if "batched" in modes:
            for batch in args.batch:
                await _clean(args, keys)
                name = f"(d) {args.bots} callers x {batch} at once"
                await _concurrent(args, limiter, pick, batch, args.bots, name)
        if "unreported" in modes:
            await _clean(args, keys)
            # no call ends within the run: no lease runs out, none is extended
            quiet = RedisLimiter(client, keys, replace(POLICY, in_flight_lease_s=3600))
            batch = max(args.batch)
            name = f"(e) {args.bots} x {batch}, no sent"
            await _concurrent(args, quiet, pick, batch, args.bots, name, report=False)
        if "memory" in modes:
            calls, elapsed = await _timed(1, args.duration, Decider(MemoryLimiter(POLICY), pick))
            _line("(c) MemoryLimiter, sequential", calls, elapsed)
        if "context" in modes:
            await _context(args, client, keys, sha, pick)
    finally:
        await client.aclose()
        await Usage.probe.aclose()


class Decider:
    """Decisions as the sender makes them: tokens asked for (one chat, or a batch of chats of
    one bot in one ``acquire_many``, as a bot's pacer asks for its window's room), then the
    calls of the granted tokens end together and are reported (``sent``)."""

    def __init__(self, limiter: Limiter, pick: Picker, batch: int = 1, report: bool = True) -> None:
        self._limiter = limiter
        self._pick = pick
        self._batch = batch
        self._report = report
        self.granted = 0

    async def __call__(self) -> int:
        bot, chat = self._pick()
        if self._batch == 1:
            chats: list[int | str] = [chat]
            grants = [await self._limiter.acquire(bot, chat)]
        else:
            chats = [chat, *(self._pick()[1] for _ in range(self._batch - 1))]
            grants = await self._limiter.acquire_many(bot, chats)
        taken = [(c, g.ticket) for c, g in zip(chats, grants, strict=True) if g.granted]
        self.granted += len(taken)
        if self._report:  # each delivery reports its own end, as in the sender
            for c, t in taken:
                await self._limiter.sent(bot, c, t)
        return len(chats)


async def _clean(args: argparse.Namespace, keys: Keys) -> None:
    """Delete what the last line left (outside the measured time), so that expiring it does
    not count against the next line."""
    await delete_namespace(args.redis_url, keys.namespace)


async def _concurrent(
    args: argparse.Namespace,
    limiter: Limiter,
    pick: Picker,
    batch: int,
    workers: int,
    name: str,
    report: bool = True,
) -> None:
    decide = Decider(limiter, pick, batch, report)
    with BatchCounter() as batches:
        calls, elapsed = await _timed(workers, args.duration, decide, limiter.flush)
    mean = batches.calls / batches.pipelines if batches.pipelines else 0
    server_us = Usage.server / max(calls, 1) * 1e6
    _line(
        name,
        calls,
        elapsed,
        f"  pipelines {batches.pipelines:,}, mean {mean:.0f} scripts each,"
        f" granted {decide.granted / max(calls, 1):.0%}, Redis {server_us:.1f} us a decision",
    )
    verdict = "meets" if calls / elapsed >= TARGET else "below"
    print(f"{'':<34} {verdict} the {TARGET:,}/s target", flush=True)


class _Captured(Exception):
    """Raised by _Capture with the keys and args acquire() would have sent."""


class _Capture:
    """Stands in for RedisLimiter's ScriptBatcher to see what one acquire() sends."""

    async def call(self, keys, args):  # type: ignore[no-untyped-def]
        raise _Captured(list(keys), list(args))


async def _script_call(limiter: RedisLimiter, bot: int, chat: int) -> tuple[list, list]:
    """The EVALSHA keys and args of ``limiter.acquire(bot, chat)``, whatever acquire.lua is."""
    limiter._acquire = _Capture()  # type: ignore[assignment]
    try:
        await limiter.acquire(bot, chat)
    except _Captured as captured:
        return captured.args[0], captured.args[1]
    raise RuntimeError("RedisLimiter.acquire no longer goes through _acquire.call")


async def _context(args: argparse.Namespace, client, keys: Keys, sha: str, pick: Picker) -> None:
    spy = RedisLimiter(client, keys, POLICY)
    table = [await _script_call(spy, *pick()) for _ in range(8192)]
    n = iter(range(1 << 62))

    async def evalsha() -> None:
        k, a = table[next(n) & 8191]
        await client.evalsha(sha, len(k), *k, *a)

    async def ping() -> None:
        await client.ping()

    calls, elapsed = await _timed(1, args.duration, evalsha)
    _line("evalsha loop (redis-py)", calls, elapsed)
    calls, elapsed = await _timed(1, args.duration, ping)
    _line("ping loop (redis-py)", calls, elapsed)

    size = args.concurrency
    await Usage.start()
    calls, stop_at, started = 0, time.perf_counter() + args.duration, time.perf_counter()
    while time.perf_counter() < stop_at:
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(size):
                k, a = table[next(n) & 8191]
                pipe.evalsha(sha, len(k), *k, *a)
            await pipe.execute()
        calls += size
    elapsed = time.perf_counter() - started
    await Usage.stop()
    _line(f"evalsha pipeline x{size} (redis-py)", calls, elapsed)
    bot, chat = 424_242_424, 737_373_737
    k, a = await _script_call(spy, bot, chat)
    await _redis_benchmark(args, [sha, len(k), *k, *a], (str(bot), str(chat)))


async def _redis_benchmark(args: argparse.Namespace, call: list, ids: tuple[str, str]) -> None:
    exe = shutil.which("redis-benchmark")
    url = urlparse(args.redis_url)
    if exe is None:
        print("redis-benchmark                    not installed; skipped")
        return
    # The captured call with its bot and chat ids drawn at random by redis-benchmark.
    command = ["EVALSHA"]
    for part in call:
        text = (
            part if isinstance(part, str) else repr(part) if isinstance(part, float) else str(part)
        )
        for ident in ids:
            text = text.replace(ident, "__rand_int__")
        command.append(text)
    common = [exe, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-q"]
    common += ["-n", str(int(60_000 * args.duration)), "-r", "200000"]
    for label, extra in (
        ("redis-benchmark evalsha, 1 conn", ["-c", "1", "-P", "1"]),
        ("redis-benchmark evalsha, 50 x P16", ["-c", "50", "-P", "16"]),
    ):
        proc = await asyncio.create_subprocess_exec(
            *common, *extra, *command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        finally:
            if proc.returncode is None:  # timed out or interrupted: do not leave it running
                proc.kill()
                await proc.wait()
        rate = _benchmark_rate(out.decode(errors="replace"))
        print(f"{label:<34} {rate:>10,.0f} /s", flush=True)


def _benchmark_rate(out: str) -> float:
    # "EVALSHA ...: 12345.67 requests per second, p50=..." (the last carriage-return frame)
    for frame in reversed(out.replace("\r", "\n").splitlines()):
        if "requests per second" in frame:
            return float(frame.split(":")[-1].split("requests")[0].strip().replace(",", ""))
    return 0.0


async def _main(args: argparse.Namespace) -> None:
    me = asyncio.current_task()
    assert me is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    keys = Keys(f"lbench{secrets.token_hex(3)}")
    try:
        await _measure(args, keys)
    finally:
        deleted = await delete_namespace(args.redis_url, keys.namespace)
        print(f"deleted {deleted:,} keys of namespace {keys.namespace}")


def main() -> int:
    args = _args()
    factory = None
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop  # noqa: PLC0415

            factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
