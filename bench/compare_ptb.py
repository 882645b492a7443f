"""floodgate against python-telegram-bot's AIORateLimiter, and PTB pointed at floodgate:
one workload, Telegram's real limits.

Both systems deliver the same seeded workload (default 5 bots x 400 private chats x 2
messages = 4,000 messages; 10% high, 70% normal, 20% low priority) into one sandbox process
(`floodgate sandbox`) that enforces Telegram's limits: 30 messages/s per bot, 1/s per private
chat, 20/min per group, and answers anything faster with 429 and a hold. The sandbox is reset
between the two runs. Run it with Redis up:

    .venv/bin/python bench/compare_ptb.py                  # floodgate as `floodgate run all`
    .venv/bin/python bench/compare_ptb.py --split          # one process per service
    .venv/bin/python bench/compare_ptb.py --only floodgate --bots 2 --chats 100

floodgate: the sandbox and floodgate run as separate processes (REDIS_URL, a fresh
FLOODGATE_NAMESPACE whose keys are deleted at the end); every message is submitted through
`POST /v1/messages/batch` at t0, in workload order, and the bench waits until the sandbox holds
all of them or --timeout passes.

python-telegram-bot: in this process, one Application per bot built with
`ApplicationBuilder().token(t).base_url(f"{sandbox}/bot").rate_limiter(AIORateLimiter(max_retries=5))`
(otherwise PTB's defaults), and one asyncio task per message calling `bot.send_message` (all
started at t0, in workload order). A call that ends in an exception (RetryAfter after the last
retry, a timeout, ...) is counted as failed; PTB has no notion of priority.

PTB via floodgate: the same PTB program with its base URL at floodgate's drop-in endpoint
(`.base_url(f"{ingest}/bot")`), against the floodgate started for the first column (queues
empty by then, sandbox reset). It has no AIORateLimiter (floodgate keeps the limits) and its
timeouts are raised above FLOODGATE_PROXY_WAIT, with a connection pool of 100 per bot, as the
README says; each send_message returns once floodgate delivered the message.

Printed per system, from what the sandbox recorded: time from t0 to the last delivery against
the least the limits allow (Workload.least_seconds), 429 answers, sends made while a 429 hold
was running, out-of-order deliveries (within (bot, chat, priority) for floodgate, (bot, chat)
for PTB: a message delivered after one submitted later), messages lost (submitted, never
delivered), duplicates, and latency from t0 to delivery (p50/p99) by priority. One more row
counts reorderings per (bot, chat) for floodgate too: there a higher priority overtaking a
lower one is intended. Notes below the table: floodgate's sender counters (deferrals, holds,
parked turns) and every system's 429s replayed from the delivery log (which window was full,
or whether the bot or chat was already on hold). A markdown version of the table follows, for
the README. Exit status 1 if floodgate lost a message.

Needs `python-telegram-bot[rate-limiter]` in the venv for the PTB half.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import secrets
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import code_version, delete_namespace
from floodgate.demo import demo_token
from floodgate.observe import Received, out_of_order, percentile, sandbox_stats
from floodgate.workload import Workload, build_workload
from shared.limiter import Policy
from tests.helpers import AUTH
from tests.procs import Proc, floodgate

PRIORITIES = ("high", "normal", "low")
REPLAY_SLACK_S = 0.005
SUBMIT_BATCH = 1000  # the batch API's maximum; sent one after another to keep the order


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bots", type=int, default=5, help="bots (default 5)")
    p.add_argument("--chats", type=int, default=400, help="private chats per bot (default 400)")
    p.add_argument("--per-chat", type=int, default=2, help="messages per chat (default 2)")
    p.add_argument("--seed", type=int, default=11, help="workload seed (default 11)")
    p.add_argument(
        "--timeout",
        type=float,
        default=75.0,
        help="seconds each system gets from t0 before the bench stops waiting (default 75)",
    )
    p.add_argument(
        "--split",
        action="store_true",
        help="run floodgate as one process per service instead of `floodgate run all`",
    )
    p.add_argument(
        "--senders", type=int, default=1, help="sender processes with --split (default 1)"
    )
    p.add_argument(
        "--ptb-max-retries",
        type=int,
        default=5,
        help="AIORateLimiter(max_retries=...) for PTB (default 5)",
    )
    p.add_argument(
        "--only",
        choices=["floodgate", "ptb", "ptb-floodgate"],
        help="run one system only (default: all three)",
    )
    p.add_argument("--details", action="store_true", help="list every 429 with the window it hit")
    p.add_argument(
        "--dump", metavar="FILE", help="write every delivery and 429 of both runs as JSON"
    )
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return p.parse_args()


@dataclass
class Outcome:
    """What one system did with the workload, as the sandbox saw it."""

    name: str
    submitted: int
    t0: float
    received: Received
    sandbox: dict[str, Any]
    order_key: str
    notes: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    dead: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------- floodgate


def _floodgate_procs(
    args: argparse.Namespace, env: dict[str, str]
) -> tuple[list[Proc], str, str, list[str]]:
    """Start floodgate; returns the processes and the ingest, stats and sender URLs."""
    if not args.split:
        proc = floodgate("floodgate-all", ["run", "all"], env)
        return [proc], proc.url, proc.url, [proc.url]
    procs = [
        floodgate("ingest", ["run", "ingest"], env),
        floodgate("scheduler", ["run", "scheduler"], env),
        floodgate("stats", ["run", "stats"], env),
    ] + [floodgate(f"sender-{i}", ["run", "sender"], env) for i in range(args.senders)]
    return procs, procs[0].url, procs[2].url, [p.url for p in procs[3:]]


SENDER_COUNTERS = (
    "floodgate_messages_deferred_total",
    "floodgate_limiter_holds_total",
    "floodgate_messages_retried_total",
    "floodgate_sender_parked_total",
)


async def _sender_counters(session: aiohttp.ClientSession, urls: list[str]) -> str:
    """The senders' counters that explain waiting: deferrals, holds, retries, parked turns."""
    totals: Counter[str] = Counter()
    for url in urls:
        async with session.get(f"{url}/metrics") as resp:
            text = await resp.text()
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith(SENDER_COUNTERS):
                totals[name.replace("floodgate_", "").replace("_total", "")] += int(float(value))
    return ", ".join(f"{k} {v}" for k, v in sorted(totals.items()) if v) or "none"


async def _ready(session: aiohttp.ClientSession, proc: Proc) -> None:
    await proc.wait_healthy()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{proc.url}/readyz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready:\n{proc.tail()}")


async def _submit(
    session: aiohttp.ClientSession, ingest: str, workload: Workload
) -> tuple[int, Counter[str]]:
    accepted, refused = 0, Counter[str]()
    msgs = workload.messages
    for start in range(0, len(msgs), SUBMIT_BATCH):
        body = {"messages": [m.request() for m in msgs[start : start + SUBMIT_BATCH]]}
        async with session.post(f"{ingest}/v1/messages/batch", json=body) as resp:
            doc = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"batch refused: {resp.status} {doc}")
        for result in doc["results"]:
            if result.get("status") == "queued":
                accepted += 1
            else:
                refused[str(result.get("error") or result)[:60]] += 1
    return accepted, refused


@dataclass
class Started:
    """A running floodgate: its ingest, stats and sender URLs."""

    ingest: str
    stats: str
    senders: list[str]


async def start_floodgate(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    sandbox_url: str,
    bots: list[int],
    procs: list[Proc],
) -> Started:
    env = {
        "REDIS_URL": args.redis_url,
        "TELEGRAM_API_BASE": sandbox_url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in bots),
        "FLOODGATE_NAMESPACE": args.namespace,
        "FLOODGATE_LOG_LEVEL": "WARNING",
        "FLOODGATE_PROXY_WAIT": str(args.timeout),
    }
    started, ingest, stats, senders = _floodgate_procs(args, env)
    procs += started
    for proc in started:
        await _ready(session, proc)
    return Started(ingest, stats, senders)


async def run_floodgate(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    sandbox_url: str,
    workload: Workload,
    fg: Started,
) -> Outcome:
    ingest, stats, senders = fg.ingest, fg.stats, fg.senders
    await _reset(session, sandbox_url)

    t0 = time.time()
    accepted, refused = await _submit(session, ingest, workload)
    out = Outcome("floodgate", accepted, t0, Received(), {}, "(bot, chat, priority)")
    out.notes.append(f"submitted in {time.time() - t0:.2f} s")
    if refused:
        out.notes.append(f"refused by ingest: {dict(refused)}")

    total, queue = len(workload.messages), {}
    while time.time() - t0 < args.timeout:
        await asyncio.sleep(0.5)
        await out.received.refresh(session, sandbox_url)
        async with session.get(f"{stats}/queue/stats") as resp:
            queue = await resp.json()
        out.dead = queue["total_failed"]
        if len(out.received.by_tag()) >= total or (
            queue["total_queued"] == 0 and len(out.received.by_tag()) + out.dead >= accepted
        ):
            break
    else:
        out.notes.append(f"stopped waiting after {args.timeout:.0f} s; queue: {queue}")
    await asyncio.sleep(0.5)  # a late duplicate would show up here
    await out.received.refresh(session, sandbox_url)
    out.sandbox = await sandbox_stats(session, sandbox_url)
    out.refusals = await _refusals(session, sandbox_url)
    out.notes.append(f"sender counters: {await _sender_counters(session, senders)}")
    if out.dead:
        out.errors["dead-lettered"] = out.dead
    return out


# ---------------------------------------------------------------- python-telegram-bot


async def run_ptb(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    sandbox_url: str,
    workload: Workload,
    bots: list[int],
    via: Started | None = None,
) -> Outcome:
    """PTB with AIORateLimiter straight at the sandbox; or, ``via`` floodgate, at its drop-in
    endpoint, without a limiter of its own and with timeouts above floodgate's proxy wait."""
    try:
        from telegram.error import RetryAfter  # noqa: PLC0415
        from telegram.ext import AIORateLimiter, ApplicationBuilder  # noqa: PLC0415
    except ImportError:
        raise SystemExit(
            'python-telegram-bot is missing: .venv/bin/pip install "python-telegram-bot[rate-limiter]"'
        ) from None
    # AIORateLimiter logs every RetryAfter it gives up on with a traceback; we count them instead.
    logging.getLogger("telegram").setLevel(logging.CRITICAL)

    def build(bot: int) -> Any:
        builder = ApplicationBuilder().token(demo_token(bot))
        if via is None:
            builder = builder.base_url(f"{sandbox_url}/bot")
            return builder.rate_limiter(AIORateLimiter(max_retries=args.ptb_max_retries)).build()
        wait = args.timeout + 10  # above FLOODGATE_PROXY_WAIT
        builder = builder.base_url(f"{via.ingest}/bot").connection_pool_size(100)
        return builder.read_timeout(wait).write_timeout(wait).pool_timeout(wait).build()

    apps = {bot: build(bot) for bot in bots}
    for app in apps.values():
        await app.initialize()  # getMe
    await _reset(session, sandbox_url)
    errors: Counter[str] = Counter()

    async def send(bot_id: int, chat_id: int, text: str) -> None:
        try:
            await apps[bot_id].bot.send_message(chat_id, text)
        except RetryAfter:
            errors["RetryAfter after the last retry"] += 1
        except Exception as exc:
            errors[type(exc).__name__] += 1

    try:
        t0 = time.time()
        tasks = [
            asyncio.create_task(send(m.bot_id, m.chat_id, m.request()["text"]))
            for m in workload.messages
        ]
        name = "PTB AIORateLimiter" if via is None else "PTB via floodgate"
        out = Outcome(name, len(tasks), t0, Received(), {}, "(bot, chat)")
        _, pending = await asyncio.wait(tasks, timeout=max(1.0, args.timeout - (time.time() - t0)))
        if pending:
            out.notes.append(f"stopped waiting after {args.timeout:.0f} s")
            errors["unfinished at the timeout"] += len(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for app in apps.values():
            await app.shutdown()
    await out.received.refresh(session, sandbox_url)
    out.sandbox = await sandbox_stats(session, sandbox_url)
    out.refusals = await _refusals(session, sandbox_url)
    out.errors = errors
    if via is not None:
        out.notes.append(f"sender counters: {await _sender_counters(session, via.senders)}")
    return out


# ---------------------------------------------------------------- report


async def _refusals(session: aiohttp.ClientSession, sandbox_url: str) -> list[dict[str, Any]]:
    """The 429 answers in the sandbox's request log."""
    params = {"limit": "1000000"}
    async with session.get(f"{sandbox_url}/_sandbox/requests", params=params) as resp:
        doc = await resp.json()
    return [r for r in doc["requests"] if r["status"] == 429]


def _wait_s(stamps: list[float], limit: int, window_s: float, ts: float) -> float:
    """Seconds until one more send fits a sliding window that saw ``stamps`` (sorted).

    The request log stamps an answer a moment after the sandbox decided, so the decision is
    taken to have been up to REPLAY_SLACK_S earlier.
    """
    decided = ts - REPLAY_SLACK_S
    inside = [t for t in stamps if decided - window_s < t <= ts]
    if len(inside) < limit:
        return 0.0
    return inside[len(inside) - limit] + window_s - decided


def explain_429s(out: Outcome, verbose: bool) -> list[str]:
    """Why each 429 came, replayed from the delivery log with the sandbox's default limits.

    A 429 while an earlier 429's hold of that bot or chat was running counts as "during a
    hold"; any other names the window that was full (the fuller one, as the sandbox decides).
    """
    policy = Policy()
    by_bot: dict[int, list[float]] = {}
    by_chat: dict[tuple[int, int], list[float]] = {}
    for d in sorted(out.received.messages, key=lambda d: d.ts):
        by_bot.setdefault(d.bot_id, []).append(d.ts)
        by_chat.setdefault((d.bot_id, d.chat_id), []).append(d.ts)
    holds: dict[tuple[int, int | None], float] = {}
    scopes: Counter[str] = Counter()
    lines = []
    for r in sorted(out.refusals, key=lambda r: r["ts"]):
        ts, bot, chat = r["ts"], r["bot_id"], r["chat_id"]
        if max(holds.get((bot, None), 0.0), holds.get((bot, chat), 0.0)) > ts:
            scopes["during a hold"] += 1
            continue
        bw, cw = policy.bot_window(bot), policy.chat_window(chat)
        bot_wait = _wait_s(by_bot.get(bot, []), bw.limit, bw.ms / 1000, ts)
        chat_wait = _wait_s(by_chat.get((bot, chat), []), cw.limit, cw.ms / 1000, ts)
        if bot_wait <= 0 and chat_wait <= 0:
            scope = "unexplained"
        elif bot_wait >= chat_wait:
            scope = "bot window"
            holds[(bot, None)] = ts + max(1, math.ceil(bot_wait))
        else:
            scope = "chat window"
            holds[(bot, chat)] = ts + max(1, math.ceil(chat_wait))
        scopes[scope] += 1
        if verbose:
            lines.append(
                f"  429 at t0+{ts - out.t0:6.2f} s bot {bot} chat {chat}: {scope} full"
                f" (bot could send in {bot_wait:.3f} s, chat in {chat_wait:.3f} s)"
            )
    if scopes:
        lines.insert(0, f"429s replayed from the delivery log: {dict(scopes)}")
    return lines


def _lost(out: Outcome, workload: Workload) -> int:
    """Messages of the workload the sandbox never received."""
    return len({m.tag for m in workload.messages} - set(out.received.by_tag()))


def _row_values(out: Outcome, workload: Workload, least: float) -> dict[str, str]:
    order = {m.tag: i for i, m in enumerate(workload.messages)}
    prio = {m.tag: m.priority for m in workload.messages}
    by_tag = out.received.by_tag()
    mine = [d for d in out.received.messages if d.text.split(" ", 1)[0] in order]
    delivered = {t for t in by_tag if t in order}
    lost = _lost(out, workload)
    duplicates = sum(len(v) - 1 for t, v in by_tag.items() if t in order)
    if out.order_key == "(bot, chat, priority)":
        bad = out_of_order(mine, order, lambda tag, d: (d.bot_id, d.chat_id, prio[tag]))
    else:
        bad = out_of_order(mine, order, lambda _tag, d: (d.bot_id, d.chat_id))
    bad_chat = out_of_order(mine, order, lambda _tag, d: (d.bot_id, d.chat_id))
    last = max((d.ts for d in mine), default=out.t0) - out.t0
    values = {
        "wall": f"{last:.1f} s ({last / least:.2f}x)" if least else f"{last:.1f} s",
        "429": str(out.sandbox.get("429", 0)),
        "hold": str(out.sandbox.get("sent_during_hold", 0)),
        "ooo": f"{bad} {out.order_key}",
        "ooo_chat": str(bad_chat),
        "lost": str(lost),
        "dup": str(duplicates),
        "failed": ", ".join(f"{k} {v}" for k, v in out.errors.items()) or "0",
    }
    for p in PRIORITIES:
        lat = [by_tag[t][0].ts - out.t0 for t in delivered if prio[t] == p]
        values[p] = (
            f"{percentile(lat, 0.5):.1f} / {percentile(lat, 0.99):.1f} s (n={len(lat)})"
            if lat
            else "-"
        )
    return values


ROWS = (
    ("wall", "t0 to last delivery"),
    ("429", "429 answers"),
    ("hold", "sent during a 429 hold"),
    ("ooo", "out-of-order deliveries"),
    ("ooo_chat", "out of order per (bot, chat), any priority"),
    ("lost", "lost (never delivered)"),
    ("dup", "duplicates"),
    ("failed", "failed / dead"),
    ("high", "latency high p50 / p99"),
    ("normal", "latency normal p50 / p99"),
    ("low", "latency low p50 / p99"),
)


def report(
    outcomes: list[Outcome], workload: Workload, least: float, header: str, verbose: bool
) -> None:
    cols = [_row_values(o, workload, least) for o in outcomes]
    names = [o.name for o in outcomes]
    label_w = max(len(label) for _, label in ROWS)
    widths = [max(len(n), *(len(c[k]) for k, _ in ROWS)) for n, c in zip(names, cols, strict=True)]
    print()
    print(header)
    print(f"least possible time under the limits: {least:.1f} s")
    print()
    print("  ".join([" " * label_w, *(n.ljust(w) for n, w in zip(names, widths, strict=True))]))
    for key, label in ROWS:
        cells = (c[key].ljust(w) for c, w in zip(cols, widths, strict=True))
        print("  ".join([label.ljust(label_w), *cells]))
    for o in outcomes:
        for note in [*o.notes, *explain_429s(o, verbose)]:
            print(f"note ({o.name}): {note}")
    print()
    print("| " + " | ".join(["", *names]) + " |")
    print("|---" * (len(names) + 1) + "|")
    for key, label in ROWS:
        print("| " + " | ".join([label.strip(), *(c[key] for c in cols)]) + " |")


# ---------------------------------------------------------------- main


def _dump(path: str, outcomes: list[Outcome], workload: Workload) -> None:
    doc = {
        "workload": [
            {
                "index": i,
                "tag": m.tag,
                "bot_id": m.bot_id,
                "chat_id": m.chat_id,
                "priority": m.priority,
            }
            for i, m in enumerate(workload.messages)
        ],
        "runs": {
            o.name: {
                "t0": o.t0,
                "sandbox": o.sandbox,
                "refusals": o.refusals,
                "deliveries": [dataclasses.asdict(d) for d in o.received.messages],
            }
            for o in outcomes
        },
    }
    Path(path).write_text(json.dumps(doc))
    print(f"wrote {path}")


async def _reset(session: aiohttp.ClientSession, sandbox_url: str) -> None:
    async with session.post(f"{sandbox_url}/_sandbox/reset") as resp:
        resp.raise_for_status()


async def _main(args: argparse.Namespace) -> int:
    bots = [7100 + i for i in range(args.bots)]
    workload = build_workload(args.seed, bots, args.chats, args.per_chat, groups=0, per_group=0)
    least = workload.least_seconds(Policy())
    args.namespace = f"cmp{secrets.token_hex(3)}"
    mode = f"one process per service ({args.senders} sender)" if args.split else "`run all`"
    header = (
        f"{len(workload.messages)} messages: {len(bots)} bots x {args.chats} private chats x "
        f"{args.per_chat}, priorities {dict(Counter(m.priority for m in workload.messages))}; "
        f"sandbox: bot 30/s, private chat 1/s, group 20/min; floodgate {mode} on Redis; "
        f"{os.cpu_count()} cores; code {code_version()}"
    )
    print(header, flush=True)
    # SIGTERM ends the run like Ctrl-C: the finally below stops every child process.
    me = asyncio.current_task()
    assert me is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    sandbox = floodgate("sandbox", ["sandbox"], {})
    procs: list[Proc] = [sandbox]
    outcomes: list[Outcome] = []
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout, headers=AUTH) as session:
            await sandbox.wait_healthy()
            if args.only in (None, "floodgate", "ptb-floodgate"):
                fg = await start_floodgate(args, session, sandbox.url, bots, procs)
                if args.only in (None, "floodgate"):
                    print("floodgate ...", flush=True)
                    outcomes.append(await run_floodgate(args, session, sandbox.url, workload, fg))
                if args.only in (None, "ptb-floodgate"):
                    print("python-telegram-bot via floodgate ...", flush=True)
                    outcomes.append(
                        await run_ptb(args, session, sandbox.url, workload, bots, via=fg)
                    )
                for proc in procs[1:]:
                    proc.terminate()
            if args.only in (None, "ptb"):
                print("python-telegram-bot ...", flush=True)
                outcomes.append(await run_ptb(args, session, sandbox.url, workload, bots))
    finally:
        for proc in reversed(procs):
            proc.terminate()
        await delete_namespace(args.redis_url, args.namespace)
    report(outcomes, workload, least, header, args.details)
    if args.dump:
        _dump(args.dump, outcomes, workload)
    lost = sum(_lost(o, workload) for o in outcomes if "floodgate" in o.name)
    if lost:
        print(f"floodgate lost {lost} messages", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    args = _args()
    try:
        return asyncio.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
