"""One Bot API call as the method handlers see it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sandbox.params import Params
from sandbox.state import SandboxState


@dataclass(slots=True)
class Call:
    """The authenticated bot, the method and its parameters.

    Handlers set ``chat_id`` once they know it, for the request log.
    """

    state: SandboxState
    bot_id: int
    method: str
    params: Params
    chat_id: int | None = None


@dataclass(frozen=True, slots=True)
class Described:
    """A result that Telegram answers with a ``description`` beside it."""

    result: Any
    description: str


Handler = Callable[[Call], Awaitable[Any]]
