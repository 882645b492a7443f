"""A python-telegram-bot program that sends through floodgate's drop-in endpoint, as a process.

    python -m tests.e2e.ptb_bot --base URL --token T --chats 1000:1060 --per-chat 5 --tag p1

Each chat gets its messages one after another (``<tag>-<chat>-<n>``), every chat at once, as
a bot answering many users does. Prints one JSON object: the Message objects' (chat, text,
message_id) and the exceptions PTB raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from telegram import Bot
from telegram.request import HTTPXRequest


def bot_for(base: str, token: str, read_timeout: float, connections: int = 64) -> Bot:
    """PTB's Bot with its base URL at floodgate and a read timeout above the proxy wait."""
    request = HTTPXRequest(
        connection_pool_size=connections,
        read_timeout=read_timeout,
        write_timeout=read_timeout,
        pool_timeout=read_timeout,
    )
    return Bot(token, base_url=f"{base}/bot", request=request)


async def _chat(bot: Bot, chat: int, per_chat: int, tag: str, out: dict[str, list]) -> None:
    for n in range(per_chat):
        text = f"{tag}-{chat}-{n}"
        try:
            message = await bot.send_message(chat, text)
        except Exception as exc:
            out["errors"].append({"text": text, "error": f"{type(exc).__name__}: {exc}"})
            continue
        out["messages"].append(
            {"chat": message.chat.id, "text": message.text, "message_id": message.message_id}
        )


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--chats", required=True, help="first:end")
    p.add_argument("--per-chat", type=int, default=5)
    p.add_argument("--tag", required=True)
    p.add_argument("--read-timeout", type=float, default=90.0)
    args = p.parse_args()
    first, end = (int(x) for x in args.chats.split(":"))
    out: dict[str, list] = {"messages": [], "errors": []}
    bot = bot_for(args.base, args.token, args.read_timeout, end - first)
    async with bot, asyncio.TaskGroup() as tg:
        for chat in range(first, end):
            tg.create_task(_chat(bot, chat, args.per_chat, args.tag, out))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
