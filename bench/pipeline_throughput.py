"""End-to-end throughput and cost: N messages through ingest, scheduler, sender and stats, one
process each over one Redis (or a Redis Cluster of 3 primaries), into the sandbox with its
limits off. Prints messages per second, and what each message cost: CPU time of every process
(from /proc) and of Redis (INFO cpu), Redis commands (INFO commandstats) and, with --senders 0,
Redis memory per queued message, by kind of key. On a cluster it also prints each primary's share of the
commands and of the CPU, and how far the busiest and idlest are from the mean.

    .venv/bin/python bench/pipeline_throughput.py --messages 20000 --senders 1
    .venv/bin/python bench/pipeline_throughput.py --topology both    # 1 server, then 3 primaries
    .venv/bin/python bench/pipeline_throughput.py --messages 100000 --senders 0   # memory
    .venv/bin/python bench/pipeline_throughput.py --senders 0 --idempotency     # with keys
    .venv/bin/python bench/pipeline_throughput.py --json > cost.json
    .venv/bin/python bench/pipeline_throughput.py --repeat 5      # medians of 5 runs

floodgate's own limits are raised out of the way (FLOODGATE_BOT_RATE and the chat rates), so
this measures the pipeline, not Telegram's rules. By default it starts its own redis-server on
a free port (no persistence), so that no other client's commands are counted; --redis-url
measures a Redis of your own instead (its INFO figures then include everyone's traffic).
--topology cluster starts a private Redis Cluster (3 primaries, each with a replica; the
pipeline in 16 partitions); its replicas' CPU is reported apart from the primaries'.

After the pipeline come two yardsticks, measured the same minute on the same machine: a bare
aiohttp client posting to the same sandbox, and a canned workload on the same Redis. The
sender's and Redis's CPU per message are also given as multiples of them, meant to follow the
code more than the machine's speed, which they do only in part (--no-baseline skips them;
judge a change by pairs of runs taken in turns).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import redis_yardstick
from bench._common import code_version, delete_namespace
from floodgate.demo import demo_token
from floodgate.observe import Received, percentile
from floodgate.workload import build_workload
from shared.redis_broker import connect
from tests.cluster import RedisCluster
from tests.helpers import AUTH
from tests.procs import Proc, RedisServer, floodgate

TICKS = os.sysconf("SC_CLK_TCK")
TOP_COMMANDS = 12
YARDSTICKS = (
    "bare_client_us_per_message",
    "sender_to_bare_client",
    "redis_yardstick_us_per_message",
    "redis_to_yardstick",
)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--bots", type=int, default=50)
    p.add_argument(
        "--topology",
        choices=["one", "cluster", "both"],
        default="one",
        help="one Redis server, a Redis Cluster of 3 primaries, or both one after the other",
    )
    p.add_argument(
        "--senders",
        type=int,
        default=1,
        help="sender processes; 0: none, to measure Redis memory per queued message",
    )
    p.add_argument(
        "--text-chars",
        type=int,
        default=70,
        help="characters of every message's text (default 70, a typical notification)",
    )
    p.add_argument(
        "--idempotency",
        action="store_true",
        help="every message carries an idempotency key (one more key per message in Redis)",
    )
    p.add_argument("--batch", type=int, default=500, help="messages per batch request")
    p.add_argument("--concurrency", type=int, default=4, help="batch requests in flight")
    p.add_argument(
        "--redis-url",
        default=None,
        help="a Redis of your own (default: a private redis-server started for the run)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per topology; with more than one, every figure is the median of the runs,"
        " and each run's CPU per message is listed too (one run on 2 busy cores varies by"
        " about 10%%: judge a change by medians taken in turns with the code before it)",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the yardstick runs after the pipeline: a bare aiohttp client posting"
        " sendMessage to the same sandbox (bench/bare_client.py) and a canned workload on the"
        " same Redis (bench/redis_yardstick.py, one server only), against which the sender's"
        " and Redis's CPU per message are given as ratios, meant to move less with the"
        " machine's speed (they do only in part)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def _say(args: argparse.Namespace, text: str) -> None:
    """Progress on stderr when the JSON goes to stdout."""
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _peak_rss_mb(pid: int) -> float:
    """The most resident memory a live process has had (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


Counters = tuple[float, dict[str, int], int]


async def _nodes_counters(nodes: dict[str, str]) -> dict[str, Counters]:
    """Every node's counters (see ``_redis_counters``), by node name."""
    return {name: await _redis_counters(url) for name, url in nodes.items()}


async def _redis_counters(url: str) -> Counters:
    """Redis's CPU seconds, calls by command and used memory, as INFO gives them now."""
    client = connect(url)
    try:
        cpu = await client.info("cpu")
        stats = await client.info("commandstats")
        memory = await client.info("memory")
    finally:
        await client.aclose()
    calls = {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in stats.items()
        if isinstance(v, dict)
    }
    used = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return used, calls, int(memory["used_memory"])


async def _submit(
    session: aiohttp.ClientSession, url: str, bodies: list[dict], concurrency: int
) -> None:
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            body = queue.pop()
            async with session.post(f"{url}/v1/messages/batch", json=body) as resp:
                if resp.status != 202:
                    raise RuntimeError(await resp.text())
                await resp.read()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _run(args: argparse.Namespace) -> None:
    topologies = ["one", "cluster"] if args.topology == "both" else [args.topology]
    results = []
    for topology in topologies:
        runs = []
        for n in range(args.repeat):
            if args.repeat > 1:
                _say(args, f"run {n + 1} of {args.repeat}")
            runs.append(await _run_on(args, topology))
        results.append(runs[0] if len(runs) == 1 else _medians(runs))
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
        return
    for result in results:
        _table(result, args)
    if len(results) == 2 and args.senders:
        one, cluster = results
        print()
        print(
            f"1 server: {one['end_to_end_per_s']:,.0f} messages/s, Redis "
            f"{one['cpu_us_per_message']['redis']:.1f} µs per message; 3 primaries: "
            f"{cluster['end_to_end_per_s']:,.0f} messages/s, busiest primary "
            f"{max(n['cpu_us_per_message'] for n in cluster['primaries'].values()):.1f} µs per"
            " message"
        )


async def _run_on(args: argparse.Namespace, topology: str) -> dict[str, Any]:
    bots = [7000 + i for i in range(args.bots)]
    per_bot = args.messages // len(bots)
    workload = build_workload(1, bots, private_chats=per_bot, per_chat=1, groups=0, per_group=0)
    requests = [_request(m.request(), args) for m in workload.messages]
    bodies = [
        {"messages": requests[i : i + args.batch]} for i in range(0, len(requests), args.batch)
    ]
    server: RedisServer | RedisCluster | None = None
    redis_url = args.redis_url
    if topology == "cluster":
        server = RedisCluster()
        server.start()
        redis_url = server.url
        roles = dict.fromkeys(server.primaries(), "primary") | dict.fromkeys(
            server.replicas(), "replica"
        )
        nodes = {f"{roles[p]}:{p}": f"redis://127.0.0.1:{p}/0" for p in sorted(roles)}
    else:
        if redis_url is None:
            server = RedisServer(appendonly=False)
            server.start()
            redis_url = server.url
        nodes = {"redis": redis_url}
    _say(args, f"topology: {topology} ({', '.join(nodes)})")
    sandbox = floodgate("sandbox", ["sandbox", "--no-limits"], {})
    env = {
        "REDIS_URL": redis_url,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in bots),
        "FLOODGATE_NAMESPACE": f"bench{secrets.token_hex(3)}",
        "FLOODGATE_BOT_RATE": "1000000",
        "FLOODGATE_CHAT_RATE": "1000000",
        "FLOODGATE_GROUP_RATE": "1000000",
        "FLOODGATE_LOG_LEVEL": "WARNING",
    }
    procs: list[Proc] = [
        floodgate("ingest", ["run", "ingest"], env),
        floodgate("scheduler", ["run", "scheduler"], env),
        floodgate("stats", ["run", "stats"], env),
    ] + [floodgate(f"sender-{i}", ["run", "sender"], env) for i in range(args.senders)]
    try:
        await sandbox.wait_healthy()
        for proc in procs:
            await proc.wait_healthy()
        result = await _measure(
            args, procs, sandbox, bodies, len(workload.messages), nodes, env["FLOODGATE_NAMESPACE"]
        )
        result["topology"] = topology
        if args.senders and args.baseline:
            _say(args, "the yardstick: a bare aiohttp client posting to the same sandbox")
            bare = await _bare_client(sandbox.url, min(len(workload.messages), 20_000))
            result["bare_client_us_per_message"] = bare
            sender = statistics.mean(
                us for name, us in result["cpu_us_per_message"].items() if name.startswith("sender")
            )
            result["sender_to_bare_client"] = round(sender / bare, 2)
        if topology == "one" and args.baseline:
            _say(args, "the Redis yardstick: a canned workload on the same Redis")
            yardstick = await redis_yardstick.measure(redis_url)
            result["redis_yardstick_us_per_message"] = yardstick
            result["redis_to_yardstick"] = round(
                result["cpu_us_per_message"]["redis"] / yardstick, 2
            )
        return result
    finally:
        for proc in [*procs, sandbox]:
            proc.terminate()
        if server is not None:
            server.cleanup()
        else:
            await delete_namespace(redis_url, env["FLOODGATE_NAMESPACE"])


async def _bare_client(sandbox_url: str, messages: int) -> float:
    """µs of CPU per sendMessage of bench/bare_client.py, run in a process of its own."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("bare_client.py")),
        "--sandbox",
        sandbox_url,
        "--messages",
        str(messages),
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench/bare_client.py failed ({proc.returncode})")
    return float(json.loads(out)["bare_client_us_per_message"])


def _request(body: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A workload request with its text padded or cut to --text-chars, and an idempotency key
    if asked for."""
    text = str(body["text"])
    body["text"] = (text + " " + "x" * args.text_chars)[: args.text_chars]
    if args.idempotency:
        body["idempotency_key"] = f"bench-{text.split(maxsplit=1)[0]}"
    return body


async def _measure(
    args: argparse.Namespace,
    procs: list[Proc],
    sandbox: Proc,
    bodies: list[dict],
    total: int,
    nodes: dict[str, str],
    namespace: str,
) -> dict[str, Any]:
    ingest_url, stats_url = procs[0].url, procs[2].url
    received = Received()
    timeout = aiohttp.ClientTimeout(total=120)
    watched = [*procs, sandbox]
    async with aiohttp.ClientSession(timeout=timeout, headers=AUTH) as session:
        cpu_before = {p.name: _cpu_seconds(p.popen.pid) for p in watched}
        redis_before = await _nodes_counters(nodes)
        started_wall, started = time.time(), time.perf_counter()
        await _submit(session, ingest_url, bodies, args.concurrency)
        submitted = time.perf_counter() - started
        _say(args, f"submitted {total} in {submitted:.2f} s ({total / submitted:,.0f} msg/s)")
        deadline = time.monotonic() + 600
        if args.senders == 0:
            await _wait_scheduled(args, session, stats_url, total, deadline)
        else:
            while len(received.messages) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                await received.refresh(session, sandbox.url)
                _say(args, f"  delivered {len(received.messages)}/{total}")
        cpu_after = {p.name: _cpu_seconds(p.popen.pid) for p in watched}
        peak_rss = {p.name: round(_peak_rss_mb(p.popen.pid), 1) for p in watched}
        redis_after = await _nodes_counters(nodes)
        kinds = await _memory_by_kind(nodes, namespace) if args.senders == 0 else {}
    result: dict[str, Any] = {
        "code": code_version(),
        "machine_cores": os.cpu_count(),
        "messages": total,
        "senders": args.senders,
        "accepted_per_s": round(total / submitted, 1),
    }
    if args.senders:
        last = max(m.ts for m in received.messages)
        elapsed = last - started_wall
        stamps = sorted(m.ts for m in received.messages)
        steady = [stamps[i] for i in range(len(stamps) // 10, len(stamps) * 9 // 10)]
        steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
        lat = [m.ts - started_wall for m in received.messages]
        result |= {
            "delivered": len(received.messages),
            "end_to_end_s": round(elapsed, 2),
            "end_to_end_per_s": round(total / elapsed, 1),
            "steady_per_s": round(steady_rate, 1),
            "deliver_p50_s": round(percentile(lat, 0.5), 2),
            "deliver_p99_s": round(percentile(lat, 0.99), 2),
        }
    cpu_us = {
        name: round((cpu_after[name] - cpu_before[name]) * 1e6 / total, 1) for name in cpu_before
    }
    per_node = {name: _node_cost(redis_before[name], redis_after[name], total) for name in nodes}
    primaries = {n: c for n, c in per_node.items() if not n.startswith("replica")}
    cpu_us["redis"] = round(sum(c["cpu_us_per_message"] for c in primaries.values()), 1)
    replicas = [c for n, c in per_node.items() if n.startswith("replica")]
    if replicas:
        cpu_us["redis replicas"] = round(sum(c["cpu_us_per_message"] for c in replicas), 1)
    calls: dict[str, int] = {}
    for cost in primaries.values():
        for name, n in cost["commands"].items():
            calls[name] = calls.get(name, 0) + n
    result["cpu_us_per_message"] = cpu_us
    result["peak_rss_mib"] = peak_rss
    result["floodgate_cpu_us_per_message"] = round(
        sum(v for k, v in cpu_us.items() if k not in ("sandbox", "redis", "redis replicas")), 1
    )
    result["redis_commands_per_message"] = round(sum(calls.values()) / total, 2)
    result["redis_commands"] = dict(sorted(calls.items(), key=lambda kv: -kv[1]))
    if len(primaries) > 1:
        result["primaries"] = {
            name: {k: v for k, v in cost.items() if k != "commands"}
            for name, cost in primaries.items()
        }
        result["primary_spread"] = _spread(primaries)
    if args.senders == 0:
        grown = sum(c["memory_grown"] for c in primaries.values())
        result["redis_bytes_per_queued_message"] = round(grown / total, 1)
        counted = sum(k["bytes"] for k in kinds.values())
        kinds["(outside keys)"] = {
            "keys": 0,
            "bytes": grown - counted,
        }
        result["redis_memory_by_kind"] = {
            kind: {
                "keys": k["keys"],
                "bytes_per_queued_message": round(k["bytes"] / total, 1),
                "bytes_per_key": round(k["bytes"] / k["keys"], 1) if k["keys"] else None,
            }
            for kind, k in sorted(kinds.items(), key=lambda kv: -kv[1]["bytes"])
        }
    return result


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result whose every figure is the median of the runs' (lists and text from the first
    run), with each run's CPU per message under "runs"."""

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, bool) or not all(type(v) is type(first) for v in values):
            return first
        if isinstance(first, int):  # counts stay whole
            return round(statistics.median(values))
        if isinstance(first, float):
            return statistics.median(values)
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values]) for k in first if all(k in v for v in values)}
        return first

    for run in runs:  # each run's cluster has ports of its own: its primaries by rank
        if "primaries" in run:
            ranked = sorted(run["primaries"].items())
            run["primaries"] = {f"primary {i + 1}": cost for i, (_, cost) in enumerate(ranked)}
    result: dict[str, Any] = merge(runs)
    result["runs"] = [
        {
            "cpu_us_per_message": run["cpu_us_per_message"],
            "end_to_end_per_s": run.get("end_to_end_per_s"),
        }
        | {k: run[k] for k in YARDSTICKS if k in run}
        for run in runs
    ]
    return result


def _node_cost(before: Counters, after: Counters, total: int) -> dict[str, Any]:
    """What one node spent over the run: CPU and commands per message, commands by name."""
    commands = {
        name: after[1][name] - before[1].get(name, 0)
        for name in after[1]
        if after[1][name] - before[1].get(name, 0) > 0 and name not in ("info",)
    }
    return {
        "cpu_us_per_message": round((after[0] - before[0]) * 1e6 / total, 1),
        "commands": commands,
        "commands_total": sum(commands.values()),
        "memory_grown": after[2] - before[2],
    }


async def _memory_by_kind(nodes: dict[str, str], namespace: str) -> dict[str, dict[str, int]]:
    """Keys and bytes (MEMORY USAGE, which counts a key's name, value and main table entry) of
    the run's namespace by kind of key on every primary: the word after the key's hash tag,
    e.g. ``msg`` for status records, ``chat`` for per-chat order state, ``send`` for the send
    streams. Only the run's own keys: --redis-url may name a Redis that holds others."""
    kinds: dict[str, dict[str, int]] = {}
    for name, url in nodes.items():
        if name.startswith("replica"):
            continue
        client = connect(url)
        try:
            names = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
            for i in range(0, len(names), 1000):
                chunk = names[i : i + 1000]
                async with client.pipeline(transaction=False) as pipe:
                    for key in chunk:
                        pipe.memory_usage(key, samples=0)
                    sizes = await pipe.execute()
                for key, size in zip(chunk, sizes, strict=True):
                    kind = _kind(key.decode() if isinstance(key, bytes) else key)
                    entry = kinds.setdefault(kind, {"keys": 0, "bytes": 0})
                    entry["keys"] += 1
                    entry["bytes"] += size or 0
        finally:
            await client.aclose()
    return kinds


def _kind(key: str) -> str:
    """``ns:{pipeline}:msg:<id>`` -> ``msg``; a key with no hash tag -> its second word."""
    rest = key.split("}:", 1)[1] if "}:" in key else key.split(":", 1)[-1]
    return rest.split(":", 1)[0]


def _spread(primaries: dict[str, dict[str, Any]]) -> dict[str, float]:
    """How far the busiest and the idlest primary are from the mean, in % of the mean, by
    commands and by CPU."""
    spread: dict[str, float] = {}
    for what in ("commands_total", "cpu_us_per_message"):
        values = [c[what] for c in primaries.values()]
        mean = sum(values) / len(values)
        spread[f"{what}_max_pct"] = round((max(values) / mean - 1) * 100, 1) if mean else 0.0
        spread[f"{what}_min_pct"] = round((min(values) / mean - 1) * 100, 1) if mean else 0.0
    return spread


async def _wait_scheduled(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    stats_url: str,
    total: int,
    deadline: float,
) -> None:
    """With no sender: until the scheduler has moved every message into the send queues."""
    while time.monotonic() < deadline:
        async with session.get(f"{stats_url}/queue/stats") as resp:
            stats = (await resp.json())["stats"]
        queued = sum(stats.get(q, 0) for q in ("high", "normal", "low"))
        _say(args, f"  in the send queues {queued}/{total}, ingest {stats.get('ingest', 0)}")
        if queued >= total and stats.get("ingest", 0) == 0:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the scheduler did not move every message in time")


def _table(result: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"code {result['code']}; machine: {result['machine_cores']} cores; processes: ingest, "
        f"scheduler, stats, {args.senders} sender(s), sandbox, redis ({result['topology']})"
    )
    print(f"messages         {result['messages']}")
    print(f"accepted         {result['accepted_per_s']:,.0f} messages/s by ingest")
    if args.senders:
        print(f"delivered        {result['delivered']}")
        print(
            f"end to end       {result['end_to_end_s']:.2f} s  ->  "
            f"{result['end_to_end_per_s']:,.0f} messages/s"
        )
        print(f"steady delivery  {result['steady_per_s']:,.0f} messages/s (middle 80%)")
        print(
            f"time to deliver  p50 {result['deliver_p50_s']:.2f} s, "
            f"p99 {result['deliver_p99_s']:.2f} s after the first submit"
        )
    print()
    print(
        "CPU per message (µs, user + system, from the first submit to the last delivery),"
        " and the most resident memory"
    )
    for name, us in result["cpu_us_per_message"].items():
        rss = result["peak_rss_mib"].get(name)
        print(f"  {name:<12} {us:>8.1f}" + (f"   {rss:>7.1f} MiB" if rss else ""))
    print(f"  {'floodgate':<12} {result['floodgate_cpu_us_per_message']:>8.1f}  (every service)")
    if "bare_client_us_per_message" in result:
        print(
            f"  {'bare client':<12} {result['bare_client_us_per_message']:>8.1f}  (aiohttp alone"
            " posting sendMessage to the same sandbox, just after; the sender is"
            f" {result['sender_to_bare_client']:.2f}x that)"
        )
    if "redis_yardstick_us_per_message" in result:
        print(
            f"  {'redis ystick':<12} {result['redis_yardstick_us_per_message']:>8.1f}  (Redis on a"
            " canned workload (bench/redis_yardstick.py), just after; the pipeline's Redis is"
            f" {result['redis_to_yardstick']:.2f}x that)"
        )
    if "runs" in result:
        print(f"  (medians of {len(result['runs'])} runs; each run's figures:)")
        for name in result["cpu_us_per_message"]:
            each = ", ".join(f"{run['cpu_us_per_message'][name]:.1f}" for run in result["runs"])
            print(f"    {name:<12} {each}")
        if args.senders:
            each = ", ".join(f"{run['end_to_end_per_s']:,.0f}" for run in result["runs"])
            print(f"    {'messages/s':<12} {each}")
        if "bare_client_us_per_message" in result:
            each = ", ".join(f"{run['bare_client_us_per_message']:.1f}" for run in result["runs"])
            print(f"    {'bare client':<12} {each}")
            each = ", ".join(f"{run['sender_to_bare_client']:.2f}" for run in result["runs"])
            print(f"    {'sender/bare':<12} {each}")
        if "redis_yardstick_us_per_message" in result:
            each = ", ".join(
                f"{run['redis_yardstick_us_per_message']:.1f}" for run in result["runs"]
            )
            print(f"    {'redis ystick':<12} {each}")
            each = ", ".join(f"{run['redis_to_yardstick']:.2f}" for run in result["runs"])
            print(f"    {'redis/ystick':<12} {each}")
    print()
    print(f"Redis commands per message: {result['redis_commands_per_message']:.2f}")
    for name, n in list(result["redis_commands"].items())[:TOP_COMMANDS]:
        print(f"  {name:<24} {n:>10,.0f}  ({n / result['messages']:.2f} per message)")
    if "primaries" in result:
        print()
        print("Each primary (commands, CPU per message of the whole run)")
        for name, cost in result["primaries"].items():
            share = cost["commands_total"] / max(1, sum(calls for calls in _totals(result)))
            print(
                f"  {name:<16} {cost['commands_total']:>10,} commands ({share:.0%}), "
                f"{cost['cpu_us_per_message']:>6.1f} µs"
            )
        spread = result["primary_spread"]
        print(
            f"  from the mean: commands {spread['commands_total_min_pct']:+.0f}% to "
            f"{spread['commands_total_max_pct']:+.0f}%, CPU {spread['cpu_us_per_message_min_pct']:+.0f}%"
            f" to {spread['cpu_us_per_message_max_pct']:+.0f}%"
        )
    if "redis_bytes_per_queued_message" in result:
        print()
        print(f"Redis memory per queued message: {result['redis_bytes_per_queued_message']:,.0f} B")
        for kind, k in result["redis_memory_by_kind"].items():
            per_key = f", {k['bytes_per_key']:,.0f} B per key" if k["bytes_per_key"] else ""
            print(
                f"  {kind:<16} {k['bytes_per_queued_message']:>7,.0f} B per message"
                f"  ({k['keys']:,} keys{per_key})"
            )
        print("  (outside keys: expiry entries, hash table slots, allocator overhead)")


def _totals(result: dict[str, Any]) -> list[int]:
    return [cost["commands_total"] for cost in result["primaries"].values()]


if __name__ == "__main__":
    asyncio.run(_run(_args()))
