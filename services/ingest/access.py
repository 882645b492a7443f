"""What a key may send: its bots, the Bot API methods of sending and editing, its highest
priority, and its quota of accepted messages per second."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from shared.access import Principal
from shared.api_keys import Role
from shared.broker import BrokerUnavailable
from shared.context import Context
from shared.key_rate import Grant
from shared.models import Priority, SendRequest

# An allow-list: anything else (setWebhook, deleteWebhook, logOut, close, getUpdates, setMy*,
# chat administration...) changes the bot itself and is not a producer's to call.
SENDING_METHODS = frozenset(
    {
        "sendMessage",
        "forwardMessage",
        "forwardMessages",
        "copyMessage",
        "copyMessages",
        "sendPhoto",
        "sendAudio",
        "sendDocument",
        "sendVideo",
        "sendAnimation",
        "sendVoice",
        "sendVideoNote",
        "sendPaidMedia",
        "sendMediaGroup",
        "sendLocation",
        "sendVenue",
        "sendContact",
        "sendPoll",
        "sendChecklist",
        "sendDice",
        "sendSticker",
        "sendInvoice",
        "sendGame",
        "sendChatAction",
        "setMessageReaction",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageLiveLocation",
        "stopMessageLiveLocation",
        "editMessageReplyMarkup",
        "editMessageChecklist",
        "stopPoll",
        "deleteMessage",
        "deleteMessages",
    }
)

RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


@dataclass(frozen=True, slots=True)
class Origin:
    """Who a message is accepted for: the key it is recorded under and its highest priority."""

    key_id: str | None = None
    max_priority: Priority | None = None

    def cap(self, priority: Priority) -> Priority:
        """``priority``, lowered to the key's highest."""
        if self.max_priority is not None and RANK[priority] < RANK[self.max_priority]:
            return self.max_priority
        return priority


def origin_of(principal: Principal) -> Origin:
    """The origin of messages sent with a key."""
    return Origin(principal.key_id, principal.max_priority)


def refusal(principal: Principal, req: SendRequest) -> tuple[int, dict[str, Any]] | None:
    """Why this key may not send this request (status, body), or None when it may."""
    if not principal.may_send_as(req.bot_id):
        reason = "not among the bots of this key"
        return 403, {
            "error": f"bot_id: {reason}",
            "errors": [{"field": "bot_id", "reason": reason}],
        }
    if principal.role is Role.PRODUCER and req.method and req.method not in SENDING_METHODS:
        reason = f"{req.method} is not a sending or editing method"
        return 422, {
            "error": f"method: {reason}",
            "errors": [{"field": "method", "reason": reason}],
        }
    top = principal.max_priority
    if top is not None and req.priority is not None and RANK[req.priority] < RANK[top]:
        reason = f"this key may ask for {top.value} at most"
        return 422, {
            "error": f"priority: {reason}",
            "errors": [{"field": "priority", "reason": reason}],
        }
    return None


def foreign_bots(principal: Principal, items: Sequence[Any]) -> list[int]:
    """The bots named in a batch's items that the key may not send as."""
    named = {b for i in items if isinstance(i, dict) and type(b := i.get("bot_id")) is int}
    return sorted(b for b in named if not principal.may_send_as(b))


async def take_quota(ctx: Context, principal: Principal, wanted: int) -> Grant | None:
    """Places in the key's per-second quota for ``wanted`` messages; None for a key without one.

    Raises ``BrokerUnavailable`` when Redis is away."""
    if principal.rate is None or principal.key_id is None or wanted == 0:
        return None
    return await ctx.key_rate.take(principal.key_id, principal.rate, wanted)


async def give_back(ctx: Context, principal: Principal, grant: Grant | None) -> None:
    """Return the places of messages that were not accepted after all (best effort)."""
    if grant is not None and principal.key_id is not None:
        # should Redis be away, the places leave the window within a second anyway
        with contextlib.suppress(BrokerUnavailable):
            await ctx.key_rate.give_back(principal.key_id, grant)


def over_quota(grant: Grant) -> dict[str, Any]:
    """The body of a refusal for a full quota."""
    return {"error": "over this key's rate: retry later", "retry_after": grant.retry_after}


def too_many(grant: Grant) -> web.Response:
    """429 with Retry-After, in seconds rounded up."""
    return web.json_response(
        over_quota(grant), status=429, headers={"Retry-After": str(grant.retry_after)}
    )
