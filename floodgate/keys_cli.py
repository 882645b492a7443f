"""``floodgate keys create|list|revoke``: API keys, in the key store itself or over the API.

Without ``--url`` the command acts on the store that ``DATABASE_URL`` / ``REDIS_URL`` name, so
no service needs to run. With ``--url`` it asks a stats service, sending ``FLOODGATE_API_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from floodgate.cli_settings import CliSettings
from shared import redis_broker
from shared.api_keys import ApiKey, KeyStore, Role, new_key
from shared.broker import BrokerUnavailable
from shared.context import build_keystore
from shared.models import Priority
from shared.settings import CommonSettings

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``floodgate keys``."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="make a key; prints it alone on stdout, once")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--bots", default="", help="bot ids the key may send as: 1,2 (all)")
    create.add_argument("--rate", type=int, default=None, help="accepted messages per second")
    create.add_argument("--expires", default=None, help="30d, 12h, 45m, or an ISO date")
    create.add_argument("--name", default="", help="what the key is for")
    create.add_argument(
        "--max-priority",
        choices=[p.value for p in Priority],
        default=None,
        help="the highest priority the key may ask for (default: any)",
    )
    sub.add_parser("list", help="id, name, role, bots, rate, expiry, last use; never the key")
    revoke = sub.add_parser("revoke", help="stop a key (every replica within 5 s)")
    revoke.add_argument("id", help="the key's id (fg_<id>_...)")
    for each in sub.choices.values():
        each.add_argument(
            "--url",
            default=None,
            help="ask this stats service instead of the store (sends FLOODGATE_API_KEY)",
        )


def parse_expiry(text: str | None, now: float) -> float | None:
    """Seconds since the epoch at which a key expires: ``30d`` from now, or an ISO time."""
    if text is None:
        return None
    match = re.fullmatch(r"([0-9]+)([smhdw])", text.strip())
    if match:
        return now + int(match.group(1)) * UNITS[match.group(2)]
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("--expires: give a time zone, e.g. 2027-01-01T00:00:00Z")
    return when.timestamp()


def parse_bots(text: str) -> list[int]:
    """``1,2`` as bot ids."""
    return [int(part) for part in text.split(",") if part.strip()]


def key_from_args(args: argparse.Namespace) -> tuple[str, ApiKey]:
    """A new key as the flags describe it."""
    if args.rate is not None and args.rate < 1:
        raise ValueError("--rate: at least 1 message per second")
    return new_key(
        Role(args.role),
        name=args.name,
        bots=parse_bots(args.bots),
        rate=args.rate,
        expires_at=parse_expiry(args.expires, time.time()),
        max_priority=Priority(args.max_priority) if args.max_priority else None,
    )


async def _on_store(store: KeyStore, args: argparse.Namespace) -> tuple[int, Any]:
    match args.action:
        case "create":
            token, key = key_from_args(args)
            await store.add(key)
            return 0, token
        case "list":
            return 0, [k.describe() for k in await store.list()]
        case _:
            found = await store.revoke(args.id)
            return (0, {"revoked": args.id}) if found else (1, {"error": f"no key {args.id}"})


async def _direct(args: argparse.Namespace) -> tuple[int, Any]:
    settings = CommonSettings()
    if not settings.database_url and not settings.redis_url:
        raise ValueError(
            "no key store: set DATABASE_URL or REDIS_URL (on the embedded backend the only key"
            " is FLOODGATE_ADMIN_KEY)"
        )
    client = redis_broker.connect(settings.redis_url) if settings.redis_url else None
    store = build_keystore(settings, client)
    try:
        return await _on_store(store, args)
    finally:
        await store.close()
        if client is not None:
            await client.aclose()


async def _remote(args: argparse.Namespace) -> tuple[int, Any]:
    base = args.url.rstrip("/")
    headers = {"Authorization": f"Bearer {CliSettings().bearer()}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        if args.action == "create":
            _, key = key_from_args(args)  # validates the flags; the service makes the key
            body = {k: v for k, v in key.describe().items() if k in CREATE_FIELDS}
            async with session.post(f"{base}/v1/keys", json=body) as resp:
                doc = await resp.json()
                return (0, doc["key"]) if resp.status == 201 else (1, doc)
        if args.action == "list":
            async with session.get(f"{base}/v1/keys") as resp:
                doc = await resp.json()
                return (0, doc["keys"]) if resp.status == 200 else (1, doc)
        async with session.delete(f"{base}/v1/keys/{args.id}") as resp:
            return (0 if resp.status == 200 else 1), await resp.json()


CREATE_FIELDS = ("role", "name", "bots", "rate", "expires_at", "max_priority")


def main(args: argparse.Namespace) -> int:
    """Run the action; the new key alone on stdout, other answers as JSON."""
    try:
        status, answer = asyncio.run(_remote(args) if args.url else _direct(args))
    except (ValueError, BrokerUnavailable) as exc:
        print(f"floodgate keys: {exc}", file=sys.stderr)
        return 2
    except aiohttp.ClientError as exc:
        print(f"floodgate keys: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if isinstance(answer, str):
        print(answer)
    else:
        out = sys.stdout if status == 0 else sys.stderr
        out.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    return status
