"""Playing users: messages written to a bot become Telegram Updates.

Updates go to the bot's webhook if one is set (the webhook worker pushes them), or wait in
the queue that getUpdates reads.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.chats import JsonObject
from sandbox.state import SandboxState


class SayRequest(BaseModel):
    """Body of ``POST /_sandbox/users/say``."""

    model_config = ConfigDict(extra="forbid")

    bot_id: int
    chat_id: int
    user_id: int
    text: str = Field(min_length=1, max_length=4096)
    chat_type: Literal["private", "group", "supergroup", "channel"] | None = None
    chat_title: str | None = None
    first_name: str | None = None
    username: str | None = None
    reply_to_message_id: int | None = None
    entities: list[dict[str, Any]] | None = None


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def auto_entities(text: str, bot_id: int) -> list[JsonObject]:
    """Entities Telegram would find: a leading /command and mentions of ``@bot<id>``."""
    entities: list[JsonObject] = []
    command_end = 0
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        command_end = len(command)
        entities.append({"offset": 0, "length": utf16_length(command), "type": "bot_command"})
    mention = f"@bot{bot_id}"
    start = text.find(mention)
    while start != -1:
        end = start + len(mention)
        # "@bot12" must not be found inside "@bot123", nor inside "/start@bot12".
        whole_word = end == len(text) or not (text[end].isalnum() or text[end] == "_")
        if whole_word and start >= command_end:
            entities.append(
                {
                    "offset": utf16_length(text[:start]),
                    "length": utf16_length(mention),
                    "type": "mention",
                }
            )
        start = text.find(mention, end)
    return entities


def _author(state: SandboxState, said: SayRequest) -> JsonObject:
    directory = state.directory
    if said.first_name is not None or said.username is not None:
        current = directory.user(said.user_id)
        directory.set_user(
            said.user_id,
            said.first_name or str(current["first_name"]),
            said.username if said.username is not None else current.get("username"),
        )
    return directory.user(said.user_id)


def user_message(state: SandboxState, said: SayRequest) -> JsonObject:
    """Build the Message a user's text becomes, and remember it for replies."""
    author = _author(state, said)
    chat = state.directory.set_chat(said.chat_id, said.chat_type, said.chat_title)
    message: JsonObject = {
        "message_id": state.store.next_id(said.bot_id, said.chat_id),
        "date": int(time.time()),
        "chat": chat,
    }
    if chat["type"] == "channel":
        message["sender_chat"] = chat
    else:
        message["from"] = author
    message["text"] = said.text
    entities = said.entities if said.entities is not None else auto_entities(said.text, said.bot_id)
    if entities:
        message["entities"] = entities
    if said.reply_to_message_id is not None:
        replied = state.store.get(said.bot_id, said.chat_id, said.reply_to_message_id)
        if replied is not None:
            message["reply_to_message"] = {
                k: v for k, v in replied.items() if k != "reply_to_message"
            }
    state.store.remember(said.bot_id, message)
    return message


def say(state: SandboxState, said: SayRequest) -> JsonObject:
    """A user writes to a bot: queue the Update and return it."""
    message = user_message(state, said)
    kind = "channel_post" if message["chat"]["type"] == "channel" else "message"
    return state.updates(said.bot_id).push({kind: message})
