"""``floodgate loadtest``: flags, the run, and its exit status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from floodgate.launch import tune_collector
from floodgate.loadtest import report
from floodgate.loadtest.driver import answer_updates, play_application, play_users
from floodgate.loadtest.ledger import Ledger
from floodgate.loadtest.plan import Plan, build_plan
from floodgate.loadtest.progress import Progress
from floodgate.loadtest.sampler import Sample, Sampler
from floodgate.loadtest.series import first_deliveries
from floodgate.loadtest.stack import Options, Stack, running
from floodgate.loadtest.summary import Run, summarize
from shared.logs import setup_logging

log = logging.getLogger("floodgate.loadtest")

SAMPLE_EVERY_S = 1.0
FIRST_BOT = 1000
BOT_RATE = 30.0  # the sandbox's default: Telegram's limit per bot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``floodgate loadtest``."""
    parser.add_argument("--bots", type=int, default=50, help="bots (default 50)")
    parser.add_argument("--users", type=int, default=100, help="users writing (default 100)")
    parser.add_argument(
        "--duration", type=float, default=120, help="seconds of traffic (default 120)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("loadtest-report"),
        help="directory for summary.json, report.html and the processes' logs "
        "(default ./loadtest-report)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="run one process per service on this Redis (default: embedded, in this process)",
    )
    parser.add_argument(
        "--senders", type=int, default=1, help="sender processes with --redis-url (default 1)"
    )
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180,
        help="seconds to wait after the traffic for the queues to empty (default 180)",
    )


@dataclass
class Session:
    """One run in progress."""

    args: argparse.Namespace
    plan: Plan
    stack: Stack
    ledger: Ledger = field(default_factory=Ledger)
    traffic_done: asyncio.Event = field(default_factory=asyncio.Event)


def _drained(sampler: Sampler, sample: Sample) -> bool:
    """Nothing queued, every accepted message delivered or dead, every mention answered."""
    ledger = sampler.ledger
    tags = {d.text.split(" ", 1)[0] for d in sampler.received.messages}
    delivered = sum(1 for tag in ledger.requested_at if tag in tags)
    answered = sum(1 for tag in ledger.said_at if tag in ledger.requested_at)
    return (
        sample.total_queued == 0
        and delivered + sample.dead >= ledger.submitted
        and answered >= len(ledger.said_at)
    )


async def _sample(
    run: Session, sampler: Sampler, session: aiohttp.ClientSession, progress: Progress
) -> None:
    """Every second until the traffic is over and everything drained (or the drain timeout)."""
    deadline: float | None = None
    while True:
        await asyncio.sleep(SAMPLE_EVERY_S)
        try:
            sample = await sampler.take(session)
        except (aiohttp.ClientError, OSError, KeyError) as exc:
            log.warning("sampling failed: %s; going on", exc)
            continue
        done = run.traffic_done.is_set()
        progress.show(sample, "draining" if done else "traffic")
        if done and deadline is None:
            deadline = time.monotonic() + run.args.drain_timeout
        if done and (_drained(sampler, sample) or time.monotonic() > (deadline or 0)):
            return


async def _play(run: Session, sampler: Sampler, progress: Progress) -> None:
    started = time.monotonic()
    stop_answering = asyncio.Event()
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tasks:
        tasks.create_task(answer_updates(session, run.stack, run.ledger, stop_answering))
        sampling = tasks.create_task(_sample(run, sampler, session, progress))
        await asyncio.gather(
            play_users(session, run.stack, run.ledger, run.plan, started),
            play_application(session, run.stack, run.ledger, run.plan, started),
        )
        run.traffic_done.set()
        await sampling
        stop_answering.set()


def _config(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    return {
        "bots": args.bots,
        "users": args.users,
        "duration_s": args.duration,
        "backend": stack.backend,
        "senders": args.senders if args.redis_url else 1,
        "seed": args.seed,
        "bot_rate": BOT_RATE,
    }


async def _loadtest(args: argparse.Namespace) -> dict[str, Any]:
    bots = [FIRST_BOT + i for i in range(args.bots)]
    plan = build_plan(args.seed, bots, args.users, args.duration)
    log_dir = args.report / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    opts = Options(args.redis_url, args.senders, args.seed, log_dir)
    async with running(plan, opts) as stack:
        run = Session(args, plan, stack)
        sampler = Sampler(stack, run.ledger, time.time())
        with Progress(args.duration) as progress:
            await _play(run, sampler, progress)
    done = first_deliveries(run.ledger, sampler.received.messages, sampler.started_wall)
    result = Run(
        plan,
        run.ledger,
        sampler.received.messages,
        done,
        sampler.samples,
        sampler.started_wall,
        args.duration,
        _config(args, stack),
    )
    summary = summarize(result)
    report.write(result, summary, args.report)
    return summary


def _print(summary: dict[str, Any], directory: Path) -> None:
    lat = summary["latency_s"]
    print(
        f"submitted {summary['submitted']}  delivered {summary['delivered']}"
        f"  lost {summary['lost']}  duplicates {summary['duplicates']}"
        f"  429s {summary['http_429']}  dead {summary['dead']}"
        f"  throughput {summary['throughput_per_s']}/s"
        f"  p99 high {lat['high']['p99']} s, normal {lat['normal']['p99']} s,"
        f" low {lat['low']['p99']} s  queue stable {summary['verdicts']['queue_stable']}"
    )
    print(f"report: {directory / 'report.html'}  summary: {directory / 'summary.json'}")


def main(args: argparse.Namespace) -> int:
    """Run the load test; exit 0 when nothing was lost and no 429 was received."""
    setup_logging("WARNING", "text")
    tune_collector()  # the services run in this process, set as `floodgate run` sets them
    try:
        summary = asyncio.run(_loadtest(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    _print(summary, args.report)
    return 0 if summary["lost"] == 0 and summary["http_429"] == 0 else 1
