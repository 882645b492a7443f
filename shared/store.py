"""The PostgreSQL message store: the queries on the hot path, each served by an index."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

# Did the message being answered (chat, Telegram message id) come in mentioning or replying to
# this bot? Served by ix_messages_reply_lookup (chat_db_id, bot_id, telegram_message_id).
REPLY_LOOKUP = """
SELECT m.mentions_bot, m.replies_to_bot
FROM messages m
JOIN chats c ON c.id = m.chat_db_id
WHERE c.bot_id = $1 AND c.telegram_chat_id = $2
  AND m.chat_db_id = c.id AND m.bot_id = $1 AND m.telegram_message_id = $3
  AND m.direction = 'in'
LIMIT 1
"""

# A message by its Telegram id in a chat (ix_messages_chat_telegram_msg).
BY_TELEGRAM_ID = """
SELECT id, direction, status FROM messages
WHERE chat_db_id = $1 AND telegram_message_id = $2
"""

# A bot's incoming messages since a time (ix_messages_incoming).
INCOMING_SINCE = """
SELECT id, chat_db_id, text FROM messages
WHERE bot_id = $1 AND created_at >= $2 AND direction = 'in'
ORDER BY created_at
LIMIT $3
"""

# An API session by token, still valid (ix_sessions_token_active_expires).
SESSION_LOOKUP = """
SELECT id FROM api_sessions
WHERE token_id = $1 AND is_active AND expires_at > now()
"""

# Sessions to expire (ix_sessions_expires_active).
SESSIONS_EXPIRED = """
SELECT id FROM api_sessions WHERE expires_at <= now() AND is_active LIMIT $1
"""


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """What floodgate knows of an incoming message being answered."""

    mentions_bot: bool
    replies_to_bot: bool

    @property
    def urgent(self) -> bool:
        """An answer to a message that mentioned the bot or replied to it goes out first."""
        return self.mentions_bot or self.replies_to_bot


async def reply_target(
    conn: asyncpg.Connection, bot_id: int, chat_id: int, telegram_message_id: int
) -> ReplyTarget | None:
    """The incoming message a send request replies to, if the store has it."""
    row = await conn.fetchrow(REPLY_LOOKUP, bot_id, chat_id, telegram_message_id)
    return None if row is None else ReplyTarget(row["mentions_bot"], row["replies_to_bot"])
