"""Messages as they travel through the pipeline, and the public request models."""

from __future__ import annotations

import enum
import secrets
import time
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from shared.validation import (
    DEFAULT_HORIZON_S,
    BotId,
    ChatId,
    MessageId,
    SendAt,
    Text,
    check_params,
    within_horizon,
)

TELEGRAM_TEXT_LIMIT = 4096
MAX_TEXT_CHARS = 65536
MAX_BATCH = 1000


class Priority(enum.StrEnum):
    """Send queues, in the order senders drain them."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Kind(enum.StrEnum):
    """What the message is, as a hint for the scheduler's choice of priority."""

    SYSTEM = "system"
    REPLY = "reply"
    REGULAR = "regular"
    BACKGROUND = "background"


class Status(enum.StrEnum):
    """Where an accepted message is."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DEAD = "dead"


class SendRequest(BaseModel):
    """Body of ``POST /v1/messages``: a text for a chat, or any Bot API method with its params."""

    model_config = ConfigDict(extra="forbid", str_max_length=MAX_TEXT_CHARS)

    bot_id: BotId
    chat_id: ChatId | None = None
    text: Text | None = Field(None, min_length=1)
    method: str | None = Field(None, pattern=r"^[A-Za-z]{2,64}$")
    params: dict[str, Any] | None = None
    priority: Priority | None = None
    kind: Kind | None = None
    reply_to_message_id: MessageId | None = None
    parse_mode: Text | None = Field(None, max_length=32)
    disable_notification: bool | None = Field(None, strict=True)
    idempotency_key: Text | None = Field(None, min_length=1, max_length=256)
    send_at: SendAt | None = None

    @field_validator("params")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_params(value)

    @field_validator("send_at")
    @classmethod
    def _not_too_far(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None:
            context = info.context or {}
            within_horizon(value, context.get("horizon_s", DEFAULT_HORIZON_S))
        return value

    @model_validator(mode="after")
    def _one_form(self) -> SendRequest:
        if self.method is None:
            if self.chat_id is None:
                raise ValueError("chat_id is required with text")
            if self.text is None:
                raise ValueError("text is required (or method with params)")
            if self.params is not None:
                raise ValueError("params needs method")
            return self
        if self.text is not None:
            raise ValueError("give either text or method with params, not both")
        if not self.params or "chat_id" not in self.params:
            raise ValueError("params.chat_id is required with method")
        return self


class Envelope(BaseModel):
    """One accepted message with everything the scheduler and the senders need."""

    id: str
    bot_id: int
    method: str
    params: dict[str, Any]
    parts: list[str] | None = None
    part: int = 0
    priority: Priority | None = None
    kind: Kind | None = None
    accepted_at: float
    send_at: float | None = None
    attempts: int = 0
    redirected: int = 0
    seq: int | None = None
    order_chat: int | str | None = None
    sent_ids: list[int] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    # the drop-in Bot API endpoint answers with Telegram's own answer: the status record keeps it
    keep_result: bool = False

    @property
    def chat_id(self) -> int | str:
        """The target chat, as the Bot API takes it."""
        chat: int | str = self.params.get("chat_id", 0)
        return chat

    @property
    def order_key(self) -> int | str:
        """The chat whose order the message keeps: the first target, even after a migration."""
        return self.order_chat if self.order_chat is not None else self.chat_id

    def dumps(self) -> bytes:
        """Wire form for streams and delay sets."""
        return orjson.dumps(self.model_dump(mode="json", exclude_defaults=True))

    @classmethod
    def loads(cls, data: bytes | str) -> Envelope:
        """Parse the wire form."""
        return cls.model_validate_json(data)


def new_message_id(partition: int = 0) -> str:
    """Time-ordered unique id: milliseconds in hex, the pipeline partition that carries the
    message (two hex digits, so its status record can be found from the id alone), then 56
    random bits."""
    return f"{time.time_ns() // 1_000_000:011x}{partition:02x}{secrets.token_hex(7)}"


def envelope_from_request(req: SendRequest, message_id: str, now: float) -> Envelope:
    """Turn a validated request into the envelope the pipeline carries."""
    if req.method is None:
        params: dict[str, Any] = {"chat_id": req.chat_id}
        for name in ("reply_to_message_id", "parse_mode", "disable_notification"):
            value = getattr(req, name)
            if value is not None:
                params[name] = value
        method, parts = "sendMessage", [req.text or ""]
    else:
        params, method, parts = dict(req.params or {}), req.method, None
    return Envelope(
        id=message_id,
        bot_id=req.bot_id,
        method=method,
        params=params,
        parts=parts,
        priority=req.priority,
        kind=req.kind,
        accepted_at=now,
        send_at=req.send_at.timestamp() if req.send_at else None,
    )


def salvage_order(payload: bytes, message_id: str, seq: int | None) -> Envelope | None:
    """For an entry that is no valid envelope (a bug, or two versions of floodgate that disagree
    on the envelope during an upgrade) but holds a place in its chat's order: a stand-in that
    names that place (bot, chat, priority, seq) where its JSON still says them, so that the
    place can be given up when it is dead-lettered and the chat's later messages do not wait
    behind it forever. None when it has no place, or its JSON does not say where."""
    if seq is None:
        return None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    bot, params = doc.get("bot_id"), doc.get("params")
    chat = doc.get("order_chat")
    if chat is None and isinstance(params, dict):
        chat = params.get("chat_id")
    priority = doc.get("priority")
    if type(bot) is not int or bot <= 0 or priority not in set(Priority):
        return None
    if not ((type(chat) is int and chat != 0) or (isinstance(chat, str) and chat)):
        return None
    return Envelope(
        id=message_id,
        bot_id=bot,
        method="?",
        params={},
        priority=Priority(priority),
        accepted_at=0,
        order_chat=chat,
        seq=seq,
    )
