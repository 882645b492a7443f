"""``floodgate demo``: the sandbox, the whole pipeline and a seeded workload, with a report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import secrets
import sys
import time
from typing import Any, cast

import aiohttp

from floodgate.launch import SERVICE_NAMES, build_services, tune_collector
from floodgate.observe import Received, percentile, sandbox_stats
from floodgate.workload import Workload, build_workload, group_count
from sandbox.config import SandboxConfig
from sandbox.server import start_sandbox
from shared.api_keys import Role, new_key
from shared.context import build_context, policy_from
from shared.logs import setup_logging
from shared.runtime import serve
from shared.settings import CommonSettings

SUBMIT_CHUNK = 500
PROGRESS_EVERY = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``floodgate demo``."""
    parser.add_argument("--bots", type=int, default=3, help="bots (default 3)")
    parser.add_argument("--chats", type=int, default=60, help="private chats per bot (default 60)")
    parser.add_argument(
        "--per-chat", type=int, default=3, help="messages per private chat (default 3)"
    )
    parser.add_argument("--groups", type=int, default=2, help="groups per bot (default 2)")
    parser.add_argument("--per-group", type=int, default=10, help="messages per group (default 10)")
    parser.add_argument("--seed", type=int, default=7, help="workload and fault seed (default 7)")
    parser.add_argument(
        "--timeout", type=float, default=300, help="give up after this many seconds"
    )
    parser.add_argument("--verbose", action="store_true", help="show the services' logs")


def demo_token(bot_id: int) -> str:
    """A well-formed token for a sandbox bot."""
    return f"{bot_id}:demo{bot_id:0>4}".ljust(len(str(bot_id)) + 36, "x")


async def _submit(
    session: aiohttp.ClientSession, url: str, workload: Workload, key: str
) -> dict[str, float]:
    sent_at: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {key}"}
    msgs = workload.messages
    for start in range(0, len(msgs), SUBMIT_CHUNK):
        chunk = msgs[start : start + SUBMIT_CHUNK]
        body = {"messages": [m.request() for m in chunk]}
        now = time.time()
        async with session.post(f"{url}/v1/messages/batch", json=body, headers=headers) as resp:
            doc = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"submit failed: {resp.status} {doc}")
        for m, result in zip(chunk, doc["results"], strict=True):
            if result.get("status") == "queued":
                sent_at[m.tag] = now
    return sent_at


async def _wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError("the pipeline did not become ready")


async def _drain(
    session: aiohttp.ClientSession, url: str, sandbox_url: str, total: int, limit_s: float
) -> Received:
    received, started = Received(), time.monotonic()
    while time.monotonic() - started < limit_s:
        await asyncio.sleep(PROGRESS_EVERY)
        await received.refresh(session, sandbox_url)
        async with session.get(f"{url}/queue/stats") as resp:
            stats = await resp.json()
        sb = await sandbox_stats(session, sandbox_url)
        q = stats["stats"]
        print(
            f"[{time.monotonic() - started:6.1f}s] delivered {len(received.by_tag()):>6}/{total}"
            f"  queued {stats['total_queued']:>6} (high {q['high']}, normal {q['normal']},"
            f" low {q['low']}, deferred {q['deferred']}, retry {q['retry']})"
            f"  dead {stats['total_failed']}  429s {sb.get('429', 0)}",
            flush=True,
        )
        if stats["total_queued"] == 0 and len(received.by_tag()) + stats["total_failed"] >= total:
            break
    return received


def _report(
    workload: Workload,
    sent_at: dict[str, float],
    received: Received,
    elapsed: float,
    least: float,
    sb: dict[str, Any],
    dead: int,
) -> str:
    by_tag = received.by_tag()
    delivered = [t for t in sent_at if t in by_tag]
    duplicates = sum(len(v) - 1 for v in by_tag.values() if len(v) > 1)
    prio = {m.tag: m.priority for m in workload.messages}
    lines = [
        "",
        "floodgate demo report",
        "=====================",
        f"submitted            {len(sent_at)}",
        f"delivered            {len(delivered)}",
        f"dead-lettered        {dead}",
        f"lost                 {len(sent_at) - len(delivered) - dead}",
        f"duplicates           {duplicates}",
        f"429s received        {sb.get('429', 0)}"
        f"  (sent during a hold: {sb.get('sent_during_hold', 0)})",
        f"time taken           {elapsed:.1f} s  (least the limits allow: {least:.1f} s)",
        "latency by priority  (acceptance to Telegram, seconds)",
    ]
    for p in ("high", "normal", "low"):
        lat = [by_tag[t][0].ts - sent_at[t] for t in delivered if prio[t] == p]
        if lat:
            lines.append(
                f"  {p:<7} n={len(lat):<5} p50 {percentile(lat, 0.5):6.2f}"
                f"  p90 {percentile(lat, 0.9):6.2f}  p99 {percentile(lat, 0.99):6.2f}"
                f"  max {max(lat):6.2f}"
            )
    return "\n".join(lines)


async def _demo(args: argparse.Namespace) -> int:
    bots = [1000 + i for i in range(args.bots)]
    workload = build_workload(
        args.seed, bots, args.chats, args.per_chat, args.groups, args.per_group
    )
    async with await start_sandbox(SandboxConfig(seed=args.seed)) as sandbox:
        env = {
            "TELEGRAM_API_BASE": sandbox.url,
            "FLOODGATE_BOTS": ",".join(demo_token(b) for b in bots),
            "FLOODGATE_NAMESPACE": f"demo{secrets.token_hex(3)}",
            # the demo's own keys: an admin key to watch the queues, a producer key to send
            "FLOODGATE_ADMIN_KEY": secrets.token_urlsafe(32),
        }
        settings = CommonSettings(**cast(Any, env))  # REDIS_URL as the environment has it
        ctx = build_context(settings, allow_memory=True)
        producer, record = new_key(Role.PRODUCER, name="demo", bots=bots)
        await ctx.keystore.add(record)
        least = workload.least_seconds(dataclasses.replace(policy_from(settings), margin_s=0))
        print(
            f"floodgate demo: {len(workload.messages)} messages, {len(bots)} bots,"
            f" {args.chats} private chats and {group_count(workload) // len(bots)} groups per bot,"
            f" backend {ctx.backend}, sandbox {sandbox.url} (Telegram's limits)",
            flush=True,
        )
        stop, port = asyncio.Event(), _free_port()
        url = f"http://127.0.0.1:{port}"
        server = asyncio.create_task(
            serve(ctx, build_services(ctx, SERVICE_NAMES), "127.0.0.1", port, stop)
        )
        try:
            admin = {"Authorization": f"Bearer {env['FLOODGATE_ADMIN_KEY']}"}
            async with aiohttp.ClientSession(headers=admin) as session:
                await _wait_ready(session, url)
                started, started_wall = time.monotonic(), time.time()
                sent_at = await _submit(session, url, workload, producer)
                received = await _drain(session, url, sandbox.url, len(sent_at), args.timeout)
                elapsed = _elapsed(received, started_wall, time.monotonic() - started)
                async with session.get(f"{url}/queue/stats") as resp:
                    dead = (await resp.json())["total_failed"]
                sb = await sandbox_stats(session, sandbox.url)
        finally:
            stop.set()
            await server
    print(_report(workload, sent_at, received, elapsed, least, sb, dead))
    lost = len(sent_at) - len(set(received.by_tag()) & set(sent_at)) - dead
    return 0 if lost == 0 else 1


def _elapsed(received: Received, started_wall: float, fallback: float) -> float:
    """From the first submission to the last delivery the sandbox recorded."""
    if not received.messages:
        return fallback
    return max(m.ts for m in received.messages) - started_wall


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when every accepted message was delivered or dead-lettered."""
    setup_logging("INFO" if args.verbose else "WARNING", "text")
    if not args.verbose:
        logging.getLogger("floodgate.runtime").setLevel(logging.WARNING)
    tune_collector()  # the services run in this process, set as `floodgate run` sets them
    try:
        return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
