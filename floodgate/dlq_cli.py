"""``floodgate dlq list|replay|drop``: dead-letter administration over the stats service's API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp
import orjson

from floodgate.cli_settings import CliSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``floodgate dlq``."""
    settings = CliSettings()
    parser.add_argument(
        "action",
        choices=["list", "replay", "drop"],
        help="list dead letters, replay them into the queue, or drop one",
    )
    parser.add_argument(
        "ids", nargs="*", help="message ids (replay: default all; drop: at least one)"
    )
    parser.add_argument(
        "--url",
        default=settings.stats_url,
        help="stats service base URL (env FLOODGATE_STATS_URL; default http://127.0.0.1:8083)",
    )
    parser.add_argument("--limit", type=int, default=100, help="list: how many (default 100)")
    parser.add_argument(
        "--api-key",
        default=settings.bearer() or None,
        help="the key sent as Authorization: Bearer (env FLOODGATE_API_KEY)",
    )


async def _call(args: argparse.Namespace) -> tuple[int, list[Any]]:
    base = args.url.rstrip("/")
    answers: list[Any] = []
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        if args.action == "list":
            async with session.get(f"{base}/v1/dlq", params={"limit": str(args.limit)}) as resp:
                return resp.status, [await resp.json()]
        if args.action == "replay":
            body = {"ids": args.ids} if args.ids else {}
            async with session.post(f"{base}/v1/dlq/replay", json=body) as resp:
                return resp.status, [await resp.json()]
        status = 200
        for ident in args.ids:
            async with session.delete(f"{base}/v1/dlq/{ident}") as resp:
                answers.append(await resp.json())
                status = max(status, resp.status)
        return status, answers


def main(args: argparse.Namespace) -> int:
    """Run the action; print the service's answers as JSON; exit 1 on an error answer."""
    if args.action == "drop" and not args.ids:
        print("floodgate dlq drop: name at least one message id", file=sys.stderr)
        return 2
    try:
        status, answers = asyncio.run(_call(args))
    except aiohttp.ClientError as exc:
        print(f"floodgate dlq: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    for answer in answers:
        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if status < 400 else 1
