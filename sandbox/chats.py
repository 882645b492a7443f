"""Who and what the sandbox knows: bots, users, chats and the messages sent in them.

Every bot has its own view of a chat (its own message ids), as a bot has in Telegram's
private chats. Objects handed out here are cached and shared, so they are never mutated:
changes replace them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

JsonObject = dict[str, Any]
MessageKey = tuple[int, int, int]

# Telegram gives supergroups and channels ids of -100xxxxxxxxxx, i.e. at most -10**12.
SUPERGROUP_ID_LIMIT = -1_000_000_000_000


def default_chat_type(chat_id: int) -> str:
    """Chat type implied by an id: positive private, -100… supergroup, other negative group."""
    if chat_id > 0:
        return "private"
    if chat_id <= SUPERGROUP_ID_LIMIT:
        return "supergroup"
    return "group"


class Directory:
    """Bots, users and chats as Telegram objects."""

    def __init__(self) -> None:
        self._bots: dict[int, JsonObject] = {}
        self._users: dict[int, JsonObject] = {}
        self._chats: dict[int, JsonObject] = {}

    def bot_user(self, bot_id: int) -> JsonObject:
        """The bot as the ``from`` of its own messages."""
        bot = self._bots.get(bot_id)
        if bot is None:
            bot = {
                "id": bot_id,
                "is_bot": True,
                "first_name": f"Sandbox Bot {bot_id}",
                "username": f"bot{bot_id}",
            }
            self._bots[bot_id] = bot
        return bot

    def user(self, user_id: int) -> JsonObject:
        """A (human) user; made up on first sight unless introduced by ``set_user``."""
        user = self._users.get(user_id)
        if user is None:
            user = self.set_user(user_id, f"User {user_id}", f"user{user_id}")
        return user

    def set_user(self, user_id: int, first_name: str, username: str | None) -> JsonObject:
        """Introduce or rename a user; their private chat follows."""
        user: JsonObject = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        user["language_code"] = "en"
        self._users[user_id] = user
        self._chats.pop(user_id, None)
        return user

    def chat(self, chat_id: int) -> JsonObject:
        """The Chat object of an id, with the type its id implies unless set otherwise."""
        chat = self._chats.get(chat_id)
        if chat is None:
            chat_type = default_chat_type(chat_id)
            chat = self._build_chat(chat_id, chat_type, None)
        return chat

    def set_chat(self, chat_id: int, chat_type: str | None, title: str | None) -> JsonObject:
        """Fix a chat's type or title, as a user writing from it describes it."""
        current = self.chat(chat_id)
        chat_type = chat_type or str(current["type"])
        title = title or current.get("title")
        if chat_type == current["type"] and title == current.get("title"):
            return current
        return self._build_chat(chat_id, chat_type, title)

    def _build_chat(self, chat_id: int, chat_type: str, title: str | None) -> JsonObject:
        chat: JsonObject = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            user = self.user(chat_id)
            chat["first_name"] = user["first_name"]
            if "username" in user:
                chat["username"] = user["username"]
        else:
            chat["title"] = title or f"Sandbox {chat_type.title()} {abs(chat_id)}"
        self._chats[chat_id] = chat
        return chat


class MessageStore:
    """Message ids per (bot, chat), and the recent messages, for replies, copies and edits."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._next_ids: dict[tuple[int, int], int] = {}
        self._known: OrderedDict[MessageKey, JsonObject] = OrderedDict()

    def next_id(self, bot_id: int, chat_id: int) -> int:
        """Allocate the next message id of a chat, as seen by a bot."""
        key = (bot_id, chat_id)
        message_id = self._next_ids.get(key, 0) + 1
        self._next_ids[key] = message_id
        return message_id

    def remember(self, bot_id: int, message: JsonObject) -> None:
        """Keep a message for later lookups; the oldest go once over capacity."""
        key = (bot_id, message["chat"]["id"], message["message_id"])
        self._known[key] = message
        self._known.move_to_end(key)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def get(self, bot_id: int, chat_id: int, message_id: int) -> JsonObject | None:
        """A message the sandbox still knows, or None."""
        return self._known.get((bot_id, chat_id, message_id))

    def forget(self, bot_id: int, chat_id: int, message_id: int) -> bool:
        """Drop a message; return whether it was known."""
        return self._known.pop((bot_id, chat_id, message_id), None) is not None
