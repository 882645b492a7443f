"""Plays the plan in real time: users write to the bots, the application sends and answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiohttp
import orjson

from floodgate.loadtest.ledger import Ledger, answer_tag
from floodgate.loadtest.plan import Plan, Say, Send
from floodgate.loadtest.stack import Stack
from shared.broker import Commit

log = logging.getLogger("floodgate.loadtest")

TICK_S = 0.05
BATCH = 1000
APP_GROUP = "loadtest-app"
READ_COUNT = 200
READ_BLOCK_MS = 200
RETRY_S = 0.5
SUBMIT_ATTEMPTS = 20


async def submit(
    session: aiohttp.ClientSession, stack: Stack, bodies: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """``POST /v1/messages/batch``, retried while ingest is unavailable; None if it never took."""
    for _ in range(SUBMIT_ATTEMPTS):
        try:
            async with session.post(
                f"{stack.ingest_url}/v1/messages/batch",
                json={"messages": bodies},
                headers=stack.headers,
            ) as resp:
                if resp.status == 202:
                    results: list[dict[str, Any]] = (await resp.json())["results"]
                    return results
                log.warning("ingest answered %s to a batch", resp.status)
        except aiohttp.ClientError as exc:
            log.warning("ingest unreachable: %s", exc)
        await asyncio.sleep(RETRY_S)
    return None


async def _send_batch(
    session: aiohttp.ClientSession, stack: Stack, ledger: Ledger, sends: Sequence[Send]
) -> None:
    at = time.time()
    results = await submit(session, stack, [s.request() for s in sends])
    for s, result in zip(sends, results or [{}] * len(sends), strict=True):
        if result.get("status") == "queued":
            ledger.accept(s.tag, at, result["priority"], s.source)
        else:
            ledger.refused += 1


async def _say(session: aiohttp.ClientSession, sandbox_url: str, ledger: Ledger, say: Say) -> None:
    body: dict[str, Any] = {
        "bot_id": say.bot_id,
        "chat_id": say.chat_id,
        "user_id": say.user_id,
        "chat_type": "private" if say.chat_id > 0 else "supergroup",
        "username": f"user{say.user_id}",
        "text": say.text,
    }
    replied = ledger.bot_messages.get((say.bot_id, say.chat_id)) if say.reply else None
    if replied is not None:
        body["reply_to_message_id"] = replied
    elif say.reply:
        body["text"] = f"@bot{say.bot_id} are you there?"
    at = time.time()
    async with session.post(f"{sandbox_url}/_sandbox/users/say", json=body) as resp:
        if resp.status != 200:
            ledger.say_errors += 1
            return
        update = await resp.json()
    ledger.said += 1
    if say.mention or say.reply:
        ledger.said_at[answer_tag(say.bot_id, update["update_id"])] = at


async def _play(
    events: Sequence[Any], started: float, act: Callable[[list[Any]], Coroutine[Any, Any, None]]
) -> None:
    """Act on the events (sorted by ``at``) as their time comes, those due together at once."""
    i, pending = 0, set[asyncio.Task[None]]()
    while i < len(events):
        now = time.monotonic() - started
        due = []
        while i < len(events) and events[i].at <= now:
            due.append(events[i])
            i += 1
        if due:
            task = asyncio.create_task(act(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(TICK_S)
    if pending:
        await asyncio.gather(*pending)


async def play_users(
    session: aiohttp.ClientSession, stack: Stack, ledger: Ledger, plan: Plan, started: float
) -> None:
    """Users write to the bots (the sandbox pushes webhooks or queues for getUpdates)."""

    async def act(due: list[Say]) -> None:
        await asyncio.gather(*(_say(session, stack.sandbox.url, ledger, s) for s in due))

    await _play(plan.says, started, act)


async def play_application(
    session: aiohttp.ClientSession, stack: Stack, ledger: Ledger, plan: Plan, started: float
) -> None:
    """The application's notices, regular messages, broadcast and burst."""

    async def act(due: list[Send]) -> None:
        for start in range(0, len(due), BATCH):
            await _send_batch(session, stack, ledger, due[start : start + BATCH])

    await _play(plan.sends, started, act)


def answer_for(update: dict[str, Any]) -> dict[str, Any] | None:
    """The answer to an update that mentions the bot or replies to it (as examples/responder.py)."""
    if not (update.get("mentions_bot") or update.get("replies_to_bot")):
        return None
    if update.get("chat_id") is None or update.get("message_id") is None:
        return None
    tag = answer_tag(update["bot_id"], update["update_id"])
    return {
        "bot_id": update["bot_id"],
        "chat_id": update["chat_id"],
        "reply_to_message_id": update["message_id"],
        "text": f"{tag} hello @{update.get('sender_username') or 'there'}",
        "idempotency_key": tag,
    }


async def _answer_round(
    session: aiohttp.ClientSession, stack: Stack, ledger: Ledger, consumer: str
) -> None:
    stream = stack.keys.updates
    entries = await stack.broker.read([stream], APP_GROUP, consumer, READ_COUNT, READ_BLOCK_MS)
    answers = [a for e in entries if (a := answer_for(orjson.loads(e.payload))) is not None]
    if answers:
        at = time.time()
        results = await submit(session, stack, answers)
        for answer, result in zip(answers, results or [{}] * len(answers), strict=True):
            tag = answer["text"].split(" ", 1)[0]
            if result.get("status") == "queued":
                ledger.accept(tag, at, result["priority"], "answer")
            else:
                ledger.refused += 1
    if entries:
        seen = [(stream, e.entry_id) for e in entries]
        await stack.broker.commit(Commit(group=APP_GROUP, seen=seen))


async def answer_updates(
    session: aiohttp.ClientSession, stack: Stack, ledger: Ledger, stop: asyncio.Event
) -> None:
    """Read the updates stream in a consumer group of its own and answer mentions and replies."""
    await stack.broker.ensure_group(stack.keys.updates, APP_GROUP)
    while not stop.is_set():
        try:
            await _answer_round(session, stack, ledger, "loadtest")
        except Exception:
            log.exception("answering updates failed; going on")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_S)
