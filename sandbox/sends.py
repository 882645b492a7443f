"""The send methods: the only calls that count against limits and that faults hit.

Every send goes the same way (``run_send``): draw its fault, validate, refuse blocked,
missing or migrated chats, apply the limits, deliver, and answer. There is no ``await``
between the limit check and the delivery, so no other request can slip in between.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.call import Call, Handler
from sandbox.chats import JsonObject
from sandbox.config import SandboxConfig
from sandbox.errors import ApiError, GatewayFault, bad_request
from sandbox.faults import FaultKind
from sandbox.params import (
    Params,
    Upload,
    bool_param,
    chat_id_param,
    int_param,
    json_param,
    str_param,
    visible_text,
)

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
MEDIA_FIELDS = ("photo", "document", "video", "audio", "animation", "voice", "sticker")
# What a copy or forward takes over from the source message.
CONTENT_FIELDS = ("text", "entities", "caption", "caption_entities", *MEDIA_FIELDS)
PASSED_ON = ("entities", "caption_entities", "reply_markup", "link_preview_options")


@dataclass(slots=True)
class Outgoing:
    """A validated send: where it goes, what the Message will hold, what the log records."""

    chat_id: int
    content: JsonObject
    text: str | None
    reply: JsonObject | None = None
    id_only: bool = False


Prepare = Callable[[Call], Outgoing]


async def run_send(call: Call, prepare: Prepare) -> Any:
    """Answer one send request, from fault draw to result."""
    state = call.state
    config = state.config
    # Drawn before anything can fail, so the fault sequence depends only on the seed
    # and the order of send requests.
    fault = state.faults.draw(config)
    out = prepare(call)
    call.chat_id = out.chat_id
    if fault.kind is FaultKind.GATEWAY:
        raise GatewayFault(fault.status, "5xx")
    if fault.kind is FaultKind.TIMEOUT:
        await state.pause(config.timeout_seconds)
        raise GatewayFault(fault.status, "timeout")
    check_chat(config, out.chat_id)
    now = time.monotonic()
    state.admit(call.bot_id, out.chat_id, now)
    message = _compose(call, out, now)
    lost = fault.kind is FaultKind.AFTER_SEND
    outcome = "5xx_after_send" if lost else "ok"
    state.deliver(
        bot_id=call.bot_id,
        method=call.method,
        params=call.params,
        message=message,
        text=out.text,
        outcome=outcome,
        now=now,
    )
    if lost:
        raise GatewayFault(fault.status, outcome)
    return {"message_id": message["message_id"]} if out.id_only else message


def _compose(call: Call, out: Outgoing, now: float) -> JsonObject:
    state = call.state
    message: JsonObject = {
        "message_id": state.store.next_id(call.bot_id, out.chat_id),
        "from": state.directory.bot_user(call.bot_id),
        "chat": state.directory.chat(out.chat_id),
        "date": int(state.wall(now)),
        **out.content,
    }
    if out.reply is not None:
        message["reply_to_message"] = out.reply
    return message


def check_chat(config: SandboxConfig, chat_id: int) -> None:
    """Refuse chats configured as migrated, blocked or missing."""
    new_id = config.migrated_chats.get(chat_id)
    if new_id is not None:
        raise ApiError(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            outcome="migrated",
            parameters={"migrate_to_chat_id": new_id},
        )
    if chat_id in config.blocked_chats:
        raise ApiError(403, "Forbidden: bot was blocked by the user", outcome="blocked")
    if chat_id in config.missing_chats:
        raise ApiError(400, "Bad Request: chat not found", outcome="missing")


def checked_text(params: Params) -> str:
    """The message text, 1 to 4096 characters once markup is stripped."""
    text = str_param(params, "text") or ""
    length = len(visible_text(text, str_param(params, "parse_mode")))
    if length == 0:
        raise bad_request("message text is empty")
    if length > TEXT_LIMIT:
        raise bad_request("message is too long")
    return text


def checked_caption(params: Params) -> str | None:
    """An optional caption of at most 1024 characters once markup is stripped."""
    caption = str_param(params, "caption")
    if not caption:
        return None
    if len(visible_text(caption, str_param(params, "parse_mode"))) > CAPTION_LIMIT:
        raise bad_request("message caption is too long")
    return caption


def _pass_on(params: Params, content: JsonObject) -> JsonObject:
    for name in PASSED_ON:
        value = json_param(params, name)
        if value:
            content[name] = value
    return content


def _replied(call: Call, chat_id: int) -> JsonObject | None:
    params = call.params
    reply_id = int_param(params, "reply_to_message_id")
    reply_parameters = json_param(params, "reply_parameters")
    if reply_id is None and isinstance(reply_parameters, dict):
        reply_id = int_param(reply_parameters, "message_id")
    if reply_id is None:
        return None
    known = call.state.store.get(call.bot_id, chat_id, reply_id)
    if known is not None:
        return {key: value for key, value in known.items() if key != "reply_to_message"}
    if call.state.config.strict_message_refs:
        if bool_param(params, "allow_sending_without_reply"):
            return None
        raise bad_request("message to be replied not found")
    # Telegram's shape for a message the bot cannot see: date 0.
    return {"message_id": reply_id, "chat": call.state.directory.chat(chat_id), "date": 0}


def prepare_message(call: Call) -> Outgoing:
    """sendMessage."""
    chat_id = chat_id_param(call.params)
    call.chat_id = chat_id
    text = checked_text(call.params)
    content = _pass_on(call.params, {"text": text})
    return Outgoing(chat_id, content, text, _replied(call, chat_id))


def _file_id(kind: str, media: object) -> str:
    if isinstance(media, str) and not media.startswith(("http://", "https://")):
        return media  # an existing file_id is sent again as itself
    source = f"{media.filename}:{media.size}" if isinstance(media, Upload) else str(media)
    return f"sandbox-{kind}-{hashlib.blake2b(source.encode(), digest_size=9).hexdigest()}"


def _media_object(kind: str, file_id: str, media: object) -> Any:
    unique = file_id.rsplit("-", 1)[-1][:16]
    if kind == "photo":
        sizes = ((90, 67), (320, 240), (800, 600))
        return [
            {"file_id": f"{file_id}-{w}", "file_unique_id": f"{unique}{w}", "width": w, "height": h}
            for w, h in sizes
        ]
    obj: JsonObject = {"file_id": file_id, "file_unique_id": unique}
    if isinstance(media, Upload):
        obj["file_name"] = media.filename
        obj["file_size"] = media.size
    return obj


def media_preparer(kind: str) -> Prepare:
    """The prepare step of sendPhoto, sendDocument, … (by URL, file_id or upload)."""

    def prepare(call: Call) -> Outgoing:
        chat_id = chat_id_param(call.params)
        call.chat_id = chat_id
        media = call.params.get(kind)
        if media is None or media == "":
            raise bad_request(f"there is no {kind} in the request")
        content: JsonObject = {kind: _media_object(kind, _file_id(kind, media), media)}
        caption = checked_caption(call.params)
        if caption is not None:
            content["caption"] = caption
        return Outgoing(chat_id, _pass_on(call.params, content), caption, _replied(call, chat_id))

    return prepare


def _source(call: Call, action: str) -> tuple[int, JsonObject | None]:
    from_chat_id = chat_id_param(call.params, "from_chat_id")
    message_id = int_param(call.params, "message_id")
    if message_id is None:
        raise bad_request("message identifier is not specified")
    known = call.state.store.get(call.bot_id, from_chat_id, message_id)
    if known is None and call.state.config.strict_message_refs:
        raise bad_request(f"message to {action} not found")
    return from_chat_id, known


def prepare_copy(call: Call) -> Outgoing:
    """copyMessage: the source's content, caption replaceable; answers only the new id."""
    chat_id = chat_id_param(call.params)
    call.chat_id = chat_id
    _, source = _source(call, "copy")
    content = {k: v for k, v in (source or {}).items() if k in CONTENT_FIELDS}
    caption = checked_caption(call.params)
    if caption is not None and "text" not in content:
        content["caption"] = caption
    text = content.get("text", content.get("caption"))
    return Outgoing(chat_id, content, text, _replied(call, chat_id), id_only=True)


def prepare_forward(call: Call) -> Outgoing:
    """forwardMessage: the source's content with its origin."""
    chat_id = chat_id_param(call.params)
    call.chat_id = chat_id
    from_chat_id, source = _source(call, "forward")
    content = {k: v for k, v in (source or {}).items() if k in CONTENT_FIELDS}
    if source is not None and "from" in source:
        origin = {"type": "user", "sender_user": source["from"], "date": source["date"]}
    else:
        chat = call.state.directory.chat(from_chat_id)
        origin = {"type": "chat", "sender_chat": chat, "date": 0}
    content["forward_origin"] = origin
    return Outgoing(chat_id, content, content.get("text", content.get("caption")))


def _send_handler(prepare: Prepare) -> Handler:
    async def handle(call: Call) -> Any:
        return await run_send(call, prepare)

    return handle


SEND_METHODS: dict[str, Handler] = {
    "sendMessage": _send_handler(prepare_message),
    "copyMessage": _send_handler(prepare_copy),
    "forwardMessage": _send_handler(prepare_forward),
    **{f"send{kind.title()}": _send_handler(media_preparer(kind)) for kind in MEDIA_FIELDS},
}
