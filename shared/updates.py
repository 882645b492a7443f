"""Telegram updates as they arrive, and the normalized form floodgate publishes for applications.

The models keep every field Telegram sends (``extra="allow"``): Telegram adds fields over time
and an update must never be refused for carrying one floodgate does not know yet.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MESSAGE_KINDS = ("message", "edited_message", "channel_post", "edited_channel_post")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class User(_Open):
    """A Telegram user or bot."""

    id: int
    is_bot: bool = False
    first_name: str = ""
    username: str | None = None


class Chat(_Open):
    """A private chat, group, supergroup or channel."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None


class MessageEntity(_Open):
    """A special span of a text: a mention, a command, a link..."""

    type: str
    offset: int
    length: int
    user: User | None = None


class Message(_Open):
    """A message, as far as floodgate reads it."""

    message_id: int
    date: int
    chat: Chat
    from_: User | None = Field(None, alias="from")
    sender_chat: Chat | None = None
    text: str | None = None
    caption: str | None = None
    entities: list[MessageEntity] = Field(default_factory=list)
    caption_entities: list[MessageEntity] = Field(default_factory=list)
    reply_to_message: Message | None = None


class Update(_Open):
    """An incoming update; kinds floodgate does not read are kept and published as ``other``."""

    update_id: int = Field(ge=0)
    message: Message | None = None
    edited_message: Message | None = None
    channel_post: Message | None = None
    edited_channel_post: Message | None = None


class NormalizedUpdate(BaseModel):
    """What applications read from ``{namespace}:updates``."""

    bot_id: int
    update_id: int
    kind: Literal["message", "edited_message", "channel_post", "edited_channel_post", "other"]
    chat_id: int | None = None
    chat_type: str | None = None
    message_id: int | None = None
    sender_id: int | None = None
    sender_username: str | None = None
    text: str | None = None
    entities: list[dict[str, Any]] = Field(default_factory=list)
    mentions_bot: bool = False
    replies_to_bot: bool = False
    reply_to_message_id: int | None = None
    date: int | None = None
    raw_kind: str | None = None


MAX_UPDATE_ID = 2**63 - 1  # the next getUpdates offset, one more, is still a signed 64-bit


def usable_update_id(raw: Any) -> int | None:
    """The update_id of a raw update if it is one Telegram could give (an integer whose next
    offset still fits in 64 bits), else None."""
    value = raw.get("update_id") if isinstance(raw, dict) else None
    return value if type(value) is int and 0 <= value < MAX_UPDATE_ID else None


def unreadable_update(update_id: int) -> Update:
    """A stand-in for an update that the models cannot read (a field of a type Telegram never
    sent so far, nesting past what can be parsed): its id, published as kind ``other`` with
    ``raw_kind`` "unreadable", so that applications see it came."""
    return Update.model_validate({"update_id": update_id, "unreadable": True})


def _utf16_slice(data: bytes, offset: int, length: int) -> str:
    """Entity offsets count UTF-16 units: a span of the text encoded as UTF-16-LE."""
    return data[offset * 2 : (offset + length) * 2].decode("utf-16-le", "replace")


def _mentions(msg: Message, bot_id: int, username: str | None) -> bool:
    text = msg.text or msg.caption or ""
    data = b""  # the text in UTF-16, encoded once for all its entities
    for entity in msg.entities or msg.caption_entities:
        if entity.type == "text_mention" and entity.user is not None and entity.user.id == bot_id:
            return True
        if entity.type in {"mention", "bot_command"} and username:
            data = data or text.encode("utf-16-le")
            span = _utf16_slice(data, entity.offset, entity.length).lower()
            if span == f"@{username.lower()}" or span.endswith(f"@{username.lower()}"):
                return True
    return False


def normalize(update: Update, bot_id: int, username: str | None) -> NormalizedUpdate:
    """The normalized form of an update received by ``bot_id`` (whose @username may be known)."""
    for kind in MESSAGE_KINDS:
        msg: Message | None = getattr(update, kind)
        if msg is not None:
            return _from_message(update.update_id, kind, msg, bot_id, username)
    extra = set(update.model_extra or {})
    return NormalizedUpdate(
        bot_id=bot_id, update_id=update.update_id, kind="other", raw_kind=min(extra, default=None)
    )


def _from_message(
    update_id: int, kind: str, msg: Message, bot_id: int, username: str | None
) -> NormalizedUpdate:
    sender = msg.from_
    reply = msg.reply_to_message
    replied_author = reply.from_ if reply is not None else None
    return NormalizedUpdate(
        bot_id=bot_id,
        update_id=update_id,
        kind=kind,
        chat_id=msg.chat.id,
        chat_type=msg.chat.type,
        message_id=msg.message_id,
        sender_id=sender.id if sender else (msg.sender_chat.id if msg.sender_chat else None),
        sender_username=sender.username if sender else None,
        text=msg.text if msg.text is not None else msg.caption,
        entities=[e.model_dump(mode="json") for e in (msg.entities or msg.caption_entities)],
        mentions_bot=_mentions(msg, bot_id, username),
        replies_to_bot=replied_author is not None and replied_author.id == bot_id,
        reply_to_message_id=reply.message_id if reply is not None else None,
        date=msg.date,
    )
