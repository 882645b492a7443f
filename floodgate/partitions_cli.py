"""``floodgate partitions [show|set N]``: the pipeline's stored layout, and changing it.

Every process splits the pipeline into ``FLOODGATE_PARTITIONS`` partitions and refuses to start
when Redis holds another number (``shared.layout``). ``set`` changes the stored number, and only
when nothing could be stranded: no scheduler or sender is alive and the pipeline, dead letters
included, is empty under the layout it has now.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson
import redis.asyncio as redis

from services.stats.depths import partition_depths, queue_stats
from shared import redis_broker
from shared.broker import BrokerUnavailable
from shared.context import dlq_keys
from shared.keys import MAX_PARTITIONS, Keys
from shared.layout import current_partitions, store_partitions
from shared.presence import ALIVE_FOR_MS
from shared.settings import CommonSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``floodgate partitions``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("show", help="the stored number, this environment's, and each partition's depth")
    change = sub.add_parser(
        "set",
        help="store a new number of partitions: only with every scheduler and sender stopped and"
        " the pipeline drained (nothing queued, no dead letters)",
    )
    change.add_argument(
        "count", type=int, help=f"1 to {MAX_PARTITIONS}; a power of two spreads best"
    )


async def _alive(client: redis.Redis, keys: Keys) -> list[str]:
    seconds, micros = await client.time()
    since = seconds * 1000 + micros // 1000 - ALIVE_FOR_MS
    names: list[str] = []
    for key in (keys.senders, keys.schedulers):
        found: Any = await client.zrangebyscore(key, since, "+inf")
        names += [n.decode() for n in found]
    return names


async def _show(client: redis.Redis, settings: CommonSettings) -> tuple[int, dict[str, Any]]:
    here = settings.pipeline_partitions
    stored = await current_partitions(client, Keys(settings.namespace, here))
    keys = Keys(settings.namespace, stored or here)
    broker = redis_broker.RedisBroker(client, dlq_keys(keys))
    depths = {}
    for part in keys.shards:
        depths[str(part.partition)] = sum((await partition_depths(broker, part)).values())
    return 0, {"stored": stored, "environment": here, "queued_and_dead_by_partition": depths}


async def _set(
    client: redis.Redis, settings: CommonSettings, count: int
) -> tuple[int, dict[str, Any]]:
    if not 1 <= count <= MAX_PARTITIONS:
        return 2, {"error": f"count: must be 1 to {MAX_PARTITIONS}"}
    stored = await current_partitions(client, Keys(settings.namespace))
    keys = Keys(settings.namespace, stored or settings.pipeline_partitions)
    alive = await _alive(client, keys)
    if alive:
        return 1, {"error": "stop every scheduler and sender first", "alive": alive}
    broker = redis_broker.RedisBroker(client, dlq_keys(keys))
    doc = await queue_stats(broker, keys)
    if doc["total_queued"] or doc["total_failed"]:
        return 1, {
            "error": "the pipeline is not drained: let the senders finish, and replay or drop"
            " the dead letters, then try again",
            **doc,
        }
    await store_partitions(client, keys, count)
    return 0, {
        "stored": count,
        "was": stored,
        "next": f"start every process with FLOODGATE_PARTITIONS={count}",
    }


async def _run(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    settings = CommonSettings()
    if not settings.redis_url:
        return 2, {"error": "REDIS_URL is not set: the layout lives in Redis"}
    client = redis_broker.connect(settings.redis_url)
    try:
        if args.action == "set":
            return await _set(client, settings, args.count)
        return await _show(client, settings)
    finally:
        await client.aclose()


def main(args: argparse.Namespace) -> int:
    """Run the action; answers as JSON (errors on stderr)."""
    try:
        status, answer = asyncio.run(_run(args))
    except BrokerUnavailable as exc:
        print(f"floodgate partitions: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout if status == 0 else sys.stderr
    out.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    return status
