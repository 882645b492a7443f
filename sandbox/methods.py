"""The Bot API methods that are not sends: no limits, no faults."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from sandbox.call import Call, Described, Handler
from sandbox.chats import JsonObject
from sandbox.errors import bad_request
from sandbox.params import (
    bool_param,
    chat_id_param,
    float_param,
    int_param,
    json_param,
    str_param,
)
from sandbox.sends import SEND_METHODS, checked_text
from sandbox.updates import Webhook

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
MAX_POLL_LIMIT = 100
DEFAULT_MAX_CONNECTIONS = 40


async def get_me(call: Call) -> JsonObject:
    """getMe: the bot as a User."""
    return {
        **call.state.directory.bot_user(call.bot_id),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


async def send_chat_action(call: Call) -> bool:
    """sendChatAction: not a message, so no limit applies."""
    call.chat_id = chat_id_param(call.params)
    if str_param(call.params, "action") not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    return True


def _message_ref(call: Call) -> tuple[int, int]:
    chat_id = chat_id_param(call.params)
    call.chat_id = chat_id
    message_id = int_param(call.params, "message_id")
    if message_id is None:
        raise bad_request("message identifier is not specified")
    return chat_id, message_id


async def edit_message_text(call: Call) -> JsonObject | bool:
    """editMessageText: the edited Message (True for inline messages)."""
    if call.params.get("inline_message_id"):
        checked_text(call.params)
        return True
    chat_id, message_id = _message_ref(call)
    text = checked_text(call.params)
    state = call.state
    current = state.store.get(call.bot_id, chat_id, message_id)
    if current is None:
        if state.config.strict_message_refs:
            raise bad_request("message to edit not found")
        current = {
            "message_id": message_id,
            "from": state.directory.bot_user(call.bot_id),
            "chat": state.directory.chat(chat_id),
            "date": int(time.time()),
        }
    if current.get("from", {}).get("id") != call.bot_id:
        raise bad_request("message can't be edited")
    markup = json_param(call.params, "reply_markup")
    if current.get("text") == text and markup == current.get("reply_markup"):
        raise bad_request(
            "message is not modified: specified new message content and reply markup "
            "of the specified old message are exactly the same"
        )
    edited = {k: v for k, v in current.items() if k not in ("entities", "reply_markup")}
    edited.update(text=text, edit_date=int(time.time()))
    for name in ("entities", "reply_markup"):
        value = json_param(call.params, name)
        if value:
            edited[name] = value
    state.store.remember(call.bot_id, edited)
    return edited


async def delete_message(call: Call) -> bool:
    """deleteMessage."""
    chat_id, message_id = _message_ref(call)
    known = call.state.store.forget(call.bot_id, chat_id, message_id)
    if not known and call.state.config.strict_message_refs:
        raise bad_request("message to delete not found")
    return True


async def get_updates(call: Call) -> list[JsonObject]:
    """getUpdates: long polling; an offset confirms every update below it."""
    limit = int_param(call.params, "limit") or MAX_POLL_LIMIT
    # Telegram takes whole seconds; fractions are accepted so tests can poll briefly.
    timeout = float_param(call.params, "timeout") or 0.0
    updates = call.state.updates(call.bot_id)
    return await updates.poll(
        int_param(call.params, "offset"),
        min(max(limit, 1), MAX_POLL_LIMIT),
        max(timeout, 0.0),
    )


def _webhook_from(call: Call, url: str) -> Webhook:
    parts = urlsplit(url)
    # Telegram wants HTTPS; a local stand-in has to accept plain HTTP too.
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request("bad webhook: invalid webhook URL specified")
    secret = str_param(call.params, "secret_token") or None
    if secret is not None and not SECRET_TOKEN.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")
    connections = int_param(call.params, "max_connections") or DEFAULT_MAX_CONNECTIONS
    if not 1 <= connections <= 100:
        raise bad_request("bad webhook: max_connections must be between 1 and 100")
    allowed = json_param(call.params, "allowed_updates")
    return Webhook(url, secret, connections, allowed if isinstance(allowed, list) else None)


async def set_webhook(call: Call) -> Described:
    """setWebhook; an empty url removes the webhook."""
    url = str_param(call.params, "url") or ""
    if not url:
        return await delete_webhook(call)
    hook = _webhook_from(call, url)
    updates = call.state.updates(call.bot_id)
    if bool_param(call.params, "drop_pending_updates"):
        updates.pending.clear()
    updates.webhook = hook
    updates.notify()
    call.state.start_webhook_worker(call.bot_id)
    return Described(True, "Webhook was set")


async def delete_webhook(call: Call) -> Described:
    """deleteWebhook; pending updates stay for getUpdates unless dropped."""
    updates = call.state.updates(call.bot_id)
    if bool_param(call.params, "drop_pending_updates"):
        updates.pending.clear()
    had_webhook = updates.webhook is not None
    updates.webhook = None
    updates.notify()
    return Described(True, "Webhook was deleted" if had_webhook else "Webhook is already deleted")


async def get_webhook_info(call: Call) -> JsonObject:
    """getWebhookInfo."""
    return call.state.updates(call.bot_id).info()


def _registry() -> dict[str, tuple[str, Handler]]:
    handlers: dict[str, Handler] = {
        **SEND_METHODS,
        "getMe": get_me,
        "sendChatAction": send_chat_action,
        "editMessageText": edit_message_text,
        "deleteMessage": delete_message,
        "getUpdates": get_updates,
        "setWebhook": set_webhook,
        "deleteWebhook": delete_webhook,
        "getWebhookInfo": get_webhook_info,
    }
    # Telegram matches method names without regard to case.
    return {name.lower(): (name, handler) for name, handler in handlers.items()}


METHODS: dict[str, tuple[str, Handler]] = _registry()


def find_method(name: str) -> tuple[str, Handler] | None:
    """The canonical name and handler of a method, matched case-insensitively."""
    return METHODS.get(name.lower())
