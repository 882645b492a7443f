"""The answers of the HTTP API as pydantic models, for its OpenAPI description."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import MAX_BATCH, Priority, Status

DLQ_LIMIT_DEFAULT = 100
DLQ_LIMIT_MAX = 10_000


class _Open(BaseModel):
    """An answer may gain fields; clients must ignore those they do not know."""

    model_config = ConfigDict(extra="allow")


class FieldError(_Open):
    """One field at fault and why."""

    field: str
    reason: str


class ErrorAnswer(_Open):
    """Every error answer: a sentence, and the fields at fault."""

    error: str
    errors: list[FieldError]


class BotApiAnswer(_Open):
    """An answer of the drop-in Bot API endpoint, in Telegram's shape: ``ok`` with ``result``,
    or ``error_code`` and ``description``."""

    ok: bool
    result: Any = None
    error_code: int | None = None
    description: str | None = None


class AcceptedAnswer(_Open):
    """``202``: the message is queued and will not be lost."""

    id: str
    status: Literal["queued"]
    priority: Priority
    duplicate: bool | None = None


class RejectedItem(_Open):
    """A batch slot whose message was refused."""

    status: Literal["rejected"]
    code: int
    error: str
    errors: list[FieldError]


class BatchRequest(BaseModel):
    """Body of ``POST /v1/messages/batch``; each message is accepted or refused on its own."""

    # Any item is taken: one that is no SendRequest gets its error in its own slot.
    messages: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="messages as POST /v1/messages takes them (SendRequest)",
    )


class BatchAnswer(_Open):
    """One result per message, in order."""

    results: list[AcceptedAnswer | RejectedItem]


class MessageStatusAnswer(_Open):
    """Where one accepted message is."""

    id: str
    status: Status
    priority: Priority | None = None
    attempts: int
    telegram_message_id: int | None = None
    telegram_message_ids: list[int] | None = None
    error: str | None = None


class WebhookAnswer(_Open):
    """``200``: the update is stored (once, however often it came)."""

    ok: bool
    duplicate: bool


class QueueStatsAnswer(_Open):
    """Depth of every queue."""

    stats: dict[str, int]
    total_queued: int
    total_failed: int


class DeadLetterItem(_Open):
    """One dead message with its last error and its history."""

    id: str
    priority: Priority
    bot_id: int | None = None
    chat_id: int | str | None = None
    method: str | None = None
    attempts: int = 0
    error: str | None = None
    reason: str | None = None
    history: list[Any] = Field(default_factory=list)
    dead_at: float
    message: dict[str, Any]


class DlqAnswer(_Open):
    """Dead letters, oldest first."""

    items: list[DeadLetterItem]
    count: int


class ReplayRequest(BaseModel):
    """Body of ``POST /v1/dlq/replay``: the ids to replay, or none for all."""

    ids: list[str] | None = None


class ReplayAnswer(_Open):
    """How many dead letters went back to their queues."""

    replayed: int


class DropAnswer(_Open):
    """The dead letter dropped."""

    dropped: str


class HealthAnswer(_Open):
    """The process is alive."""

    status: str
    services: list[str]


class ReadyAnswer(_Open):
    """Whether the process's backends answer."""

    ready: bool
