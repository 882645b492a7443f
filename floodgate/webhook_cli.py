"""``floodgate webhook set|delete|info``: the bots' ingest webhooks, registered with Telegram."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from services.ingest.settings import IngestSettings
from shared.bots import parse_bots
from shared.settings import CommonSettings
from shared.telegram import TelegramClient, new_session
from shared.webhooks import parse_pairs, secrets_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``floodgate webhook``."""
    parser.add_argument("action", choices=["set", "delete", "info"])
    parser.add_argument(
        "--url",
        help="set: the public base URL of ingest, e.g. https://bots.example.com; each bot's "
        "webhook becomes {url}/webhook/telegram/{bot_id}",
    )
    parser.add_argument(
        "--drop-pending", action="store_true", help="set/delete: drop updates Telegram holds"
    )
    parser.add_argument("--max-connections", type=int, default=40, help="set: 1-100 (default 40)")


async def _run(args: argparse.Namespace) -> int:
    common, ingest = CommonSettings(), IngestSettings()
    bots = parse_bots(common.bots)
    if not bots:
        print("floodgate webhook: FLOODGATE_BOTS is empty", file=sys.stderr)
        return 2
    secrets = secrets_for(bots, parse_pairs(ingest.webhook_secrets, "FLOODGATE_WEBHOOK_SECRETS"))
    failed = 0
    async with new_session(8) as session:
        client = TelegramClient(session, common.telegram_api_base, common.telegram_timeout)
        for bot_id, token in bots.items():
            method, params = _call(args, bot_id, secrets[bot_id])
            result = await client.call(token, method, params)
            ok = result.outcome.value == "ok"
            failed += not ok
            shown: Any = result.result if ok else result.description
            line = {"bot_id": bot_id, "method": method, "ok": ok, "result": shown}
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
    return 1 if failed else 0


def _call(args: argparse.Namespace, bot_id: int, secret: str) -> tuple[str, dict[str, Any]]:
    if args.action == "set":
        url = f"{args.url.rstrip('/')}/webhook/telegram/{bot_id}"
        return "setWebhook", {
            "url": url,
            "secret_token": secret,
            "max_connections": args.max_connections,
            "drop_pending_updates": args.drop_pending,
        }
    if args.action == "delete":
        return "deleteWebhook", {"drop_pending_updates": args.drop_pending}
    return "getWebhookInfo", {}


def main(args: argparse.Namespace) -> int:
    """Run the action for every configured bot; exit 1 if any call failed."""
    if args.action == "set" and not args.url:
        print("floodgate webhook set: --url is required", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except ValueError as exc:
        print(f"floodgate webhook: {exc}", file=sys.stderr)
        return 2
