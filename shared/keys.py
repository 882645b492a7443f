"""Every Redis key and stream name, built from the namespace.

Keys of the delivery pipeline share the ``{pipeline}`` hash tag so the Lua scripts that move a
message between streams, delay sets and the dead-letter queue touch a single Redis Cluster slot.
Idempotency keys are claimed in the same script as the ingest append, so they share that tag.
Per-bot limiter state (sliding logs, holds) is tagged ``{bot:<id>}``. The updates stream keeps
the name the contract gives it (``{ns}:updates``, no tag); the keys written in one step with it
(update claims, urgent marks, polling offsets) carry the tag ``{<ns>:updates}``, which hashes to
the stream's own slot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.models import Priority

PRIORITIES: tuple[Priority, ...] = (Priority.HIGH, Priority.NORMAL, Priority.LOW)

SCHEDULER_GROUP = "scheduler"
SENDER_GROUP = "sender"

DELAY_SETS = ("scheduled", "deferred", "retry")

_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@.-")


def key_part(value: object) -> str:
    """A chat or message id as a key part: numbers, @usernames and message ids as they are; any
    other byte of a string as ``%XX``, so no value can add a separator, a hash tag or a line to
    a key, and two different ids never share one. Anything else (a value queued before ingest
    checked ids) is escaped as its ``repr``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = value if isinstance(value, str) else repr(value)
    raw = text.encode("utf-8", "surrogatepass")
    return "".join(chr(b) if b in _PLAIN else f"%{b:02X}" for b in raw)


@dataclass(frozen=True, slots=True)
class Keys:
    """Names of every key under one namespace."""

    namespace: str

    @property
    def _pipeline(self) -> str:
        return f"{self.namespace}:{{pipeline}}"

    @property
    def ingest(self) -> str:
        """Stream of accepted messages, consumed by the scheduler."""
        return f"{self._pipeline}:ingest"

    def send(self, priority: Priority) -> str:
        """Send queue of one priority, consumed by the senders."""
        return f"{self._pipeline}:send:{priority.value}"

    @property
    def send_streams(self) -> tuple[str, str, str]:
        """Send queues, highest priority first."""
        return (self.send(Priority.HIGH), self.send(Priority.NORMAL), self.send(Priority.LOW))

    def delayed(self, name: str) -> str:
        """Sorted set of messages waiting for their time: scheduled, deferred or retry."""
        return f"{self._pipeline}:delay:{name}"

    @property
    def dlq_index(self) -> str:
        """Sorted set of dead message ids, scored by time of death."""
        return f"{self._pipeline}:dlq:index"

    @property
    def dlq_payloads(self) -> str:
        """Hash: dead message id to its routed payload."""
        return f"{self._pipeline}:dlq:payload"

    @property
    def dlq_meta(self) -> str:
        """Hash: dead message id to the JSON of its last error and attempt history."""
        return f"{self._pipeline}:dlq:meta"

    def chat_state(self, bot_id: int, chat_id: int | str, priority: Priority) -> str:
        """Hash of one (bot, chat, priority): ``seq`` handed out so far, ``cur`` settled so far."""
        return f"{self._pipeline}:chat:{bot_id}:{key_part(chat_id)}:{priority.value}"

    def parked(self, bot_id: int, chat_id: int | str, priority: Priority) -> str:
        """Sorted set of a chat's messages waiting for an earlier one, scored by sequence."""
        return f"{self._pipeline}:parked:{bot_id}:{key_part(chat_id)}:{priority.value}"

    def order(self, bot_id: int, chat_id: int | str, priority: Priority) -> tuple[str, str]:
        """The chat state and parked keys of one (bot, chat, priority)."""
        return self.chat_state(bot_id, chat_id, priority), self.parked(bot_id, chat_id, priority)

    @property
    def parked_count(self) -> str:
        """How many messages wait in parked sets, over every chat."""
        return f"{self._pipeline}:parked:count"

    def commit_mark(self, token: str) -> str:
        """Marks a commit as applied, so the same commit retried after a lost reply is a no-op."""
        return f"{self._pipeline}:commit:{token}"

    def record(self, message_id: str) -> str:
        """Hash with the status of one accepted message (in the pipeline's slot, so the scripts
        that move a message write its status in the same step)."""
        return f"{self._pipeline}:msg:{key_part(message_id)}"

    def proxy_request(self, bot_id: int, fingerprint: str) -> str:
        """Hash naming the message last queued for one drop-in Bot API request (bot, method and
        canonical params, as a digest), so the same request sent again can find it."""
        return f"{self._pipeline}:proxy:{bot_id}:{fingerprint}"

    def idempotency(self, bot_id: int, key: str, api_key: str | None = None) -> str:
        """String holding the id first accepted under an idempotency key: per bot, and per API
        key when the request came with one (so two producers' keys never meet)."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        scope = f"{api_key}:" if api_key else ""
        return f"{self._pipeline}:idem:{scope}{bot_id}:{digest}"

    def api_key(self, key_id: str) -> str:
        """Hash of one API key (its role, scopes, the hash of its secret); in one slot with the
        set of ids, so a key and its id are added in one transaction on a Redis Cluster too
        (each process reads a key at most once per 5 s, so one slot carries them all)."""
        return f"{self.namespace}:{{auth}}:key:{key_id}"

    @property
    def api_key_ids(self) -> str:
        """Set of every API key id."""
        return f"{self.namespace}:{{auth}}:keys"

    def key_rate(self, key_id: str) -> str:
        """Sliding log of the messages accepted under one API key in the last second."""
        return f"{self.namespace}:{{key:{key_id}}}:rate"

    @property
    def senders(self) -> str:
        """Sorted set of the sender processes alive, scored by their last beat."""
        return f"{self.namespace}:senders"

    def bot_window(self, bot_id: int) -> str:
        """Sliding log of one bot's sends (those under way scored a lease ahead)."""
        return f"{self.namespace}:{{bot:{bot_id}}}:rl:bot"

    def chat_window(self, bot_id: int, chat_id: int | str) -> str:
        """Sliding log of one bot's sends to one chat."""
        return f"{self.namespace}:{{bot:{bot_id}}}:rl:chat:{key_part(chat_id)}"

    def bot_adaptation(self, bot_id: int) -> str:
        """Hash of a bot's adaptive rate factor after a 429, and when it was cut."""
        return f"{self.namespace}:{{bot:{bot_id}}}:adapt"

    def bot_hold(self, bot_id: int) -> str:
        """Set while Telegram told the bot to wait (429 retry_after)."""
        return f"{self.namespace}:{{bot:{bot_id}}}:hold"

    def chat_holds(self, bot_id: int) -> str:
        """Hash of a bot's chats that Telegram told it to wait before writing to: chat id ->
        when the hold ends (ms, Redis time)."""
        return f"{self.namespace}:{{bot:{bot_id}}}:hold:chats"

    @property
    def _inbound(self) -> str:
        # "{ns:updates}" hashes exactly as the untagged key "ns:updates" does
        return f"{self.namespace}:{{{self.updates}}}"

    def urgent(self, bot_id: int, chat_id: int | str, message_id: int) -> str:
        """Marks an incoming message that mentioned the bot or replied to it: answers to it are
        high priority."""
        return f"{self._inbound}:urgent:{bot_id}:{key_part(chat_id)}:{message_id}"

    def update_seen(self, bot_id: int, update_id: int) -> str:
        """Marks an update as stored, so Telegram's retries of it are stored once."""
        return f"{self._inbound}:update:{bot_id}:{update_id}"

    def poll_lease(self, bot_id: int) -> str:
        """Held by the one ingest replica polling a bot's getUpdates."""
        return f"{self._pipeline}:poll:{bot_id}:lease"

    def poll_offset(self, bot_id: int) -> str:
        """Hash: the next getUpdates offset of a bot (field ``next``)."""
        return f"{self._inbound}:poll:{bot_id}:offset"

    @property
    def events(self) -> str:
        """Stream of settled outgoing messages (sent or dead), for the message store."""
        return f"{self._pipeline}:events"

    @property
    def updates(self) -> str:
        """Stream of normalized inbound updates, for applications."""
        return f"{self.namespace}:updates"
