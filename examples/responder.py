"""An example application on floodgate: answers every message that mentions a bot or replies to it.

It reads the normalized updates floodgate publishes on ``{namespace}:updates`` in a consumer
group of its own (``floodgate.client_updates``), and answers through floodgate's API with
``reply_to_message_id`` (``floodgate.client``); floodgate sees that the message answered
mentioned the bot and sends the answer as high priority, ahead of any normal backlog. Together with the sandbox playing users, it drives demos and load tests.

    python examples/responder.py --redis-url redis://127.0.0.1:6379/0 --ingest-url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

import aiohttp

from floodgate.client import Floodgate, FloodgateError
from floodgate.client_updates import Updates

log = logging.getLogger("responder")

GROUP = "responder"
BATCH = 100


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--namespace", default=os.environ.get("FLOODGATE_NAMESPACE", "fg"))
    parser.add_argument(
        "--api-key",
        default=os.environ.get("FLOODGATE_API_KEY", ""),
        help="a producer key for the bots it answers for (env FLOODGATE_API_KEY)",
    )
    parser.add_argument(
        "--ingest-url", default=os.environ.get("FLOODGATE_INGEST_URL", "http://127.0.0.1:8080")
    )
    return parser.parse_args()


def answer_for(update: dict[str, Any]) -> dict[str, Any] | None:
    """The send request answering an update, or None if the update asks for nothing."""
    if not (update.get("mentions_bot") or update.get("replies_to_bot")):
        return None
    if update.get("chat_id") is None or update.get("message_id") is None:
        return None
    who = update.get("sender_username") or "there"
    return {
        "bot_id": update["bot_id"],
        "chat_id": update["chat_id"],
        "reply_to_message_id": update["message_id"],
        "text": f"answer-{update['bot_id']}-{update['update_id']} hello @{who}",
        "idempotency_key": f"answer:{update['bot_id']}:{update['update_id']}",
    }


async def _answer(fg: Floodgate, requests: list[dict[str, Any]]) -> None:
    """Send the answers; retried until accepted, so a crash-free run answers each update once
    (the idempotency key makes a retry after a lost answer harmless)."""
    while True:
        try:
            await fg.send_batch(requests)
            return
        except (FloodgateError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("ingest refused or unreachable (%s), retrying", exc)
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Consume updates and answer until stopped."""
    updates = Updates(args.redis_url, GROUP, namespace=args.namespace, batch=BATCH)
    async with updates, Floodgate(args.ingest_url, args.api_key or None) as fg:
        while not stop.is_set():
            batch = await updates.read()
            answers = [a for a in (answer_for(i.update) for i in batch) if a is not None]
            if answers:
                await _answer(fg, answers)
            await updates.ack(batch)


def main() -> None:
    """Run until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = _args()

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(args, stop)

    asyncio.run(_main())


if __name__ == "__main__":
    main()
