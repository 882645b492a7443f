"""Pushes a bot's pending updates to its webhook, one at a time and in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
import orjson

from sandbox.config import SandboxConfig
from sandbox.updates import BotUpdates, JsonObject, Webhook

log = logging.getLogger(__name__)

AUTH_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def post_update(
    session: aiohttp.ClientSession, hook: Webhook, update: JsonObject, seconds: float
) -> str | None:
    """POST one update; return None when the webhook took it, else Telegram-like error text."""
    headers = {"Content-Type": "application/json"}
    if hook.secret_token:
        headers[AUTH_HEADER] = hook.secret_token
    try:
        async with session.post(
            hook.url,
            data=orjson.dumps(update),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            if 200 <= response.status < 300:
                return None
            return f"Wrong response from the webhook: {response.status} {response.reason}"
    except TimeoutError:
        return "Read timeout expired"
    except aiohttp.ClientError as exc:
        return f"Connection failed: {type(exc).__name__}"


async def run_webhook_worker(
    bot_id: int,
    updates: BotUpdates,
    session: aiohttp.ClientSession,
    get_config: Callable[[], SandboxConfig],
) -> None:
    """Deliver the bot's updates while a webhook is set, retrying with backoff; never dies.

    An update leaves the queue only once a 2xx answer came, so a failing webhook keeps
    them (like Telegram) and later updates wait behind the first, keeping their order.
    """
    failures = 0
    while not updates.closed:
        hook = updates.webhook
        if hook is None or not updates.pending:
            await updates.changed()
            continue
        update = updates.pending[0]
        config = get_config()
        try:
            error = await post_update(session, hook, update, config.webhook_timeout)
        except Exception:  # the worker is the only way updates leave; it must go on
            log.exception("webhook worker of bot %s failed; retrying", bot_id)
            error = "Internal sandbox error"
        if error is None:
            updates.acknowledge(update)
            failures = 0
            continue
        hook.last_error_date = int(time.time())
        hook.last_error_message = error
        delay = min(config.webhook_retry_min * 2**failures, config.webhook_retry_max)
        failures = min(failures + 1, 30)
        await asyncio.sleep(delay)
