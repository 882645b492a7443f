"""Every Redis key and stream name, built from the namespace.

The delivery pipeline is split into ``FLOODGATE_PARTITIONS`` partitions, a bot's messages always
in the same one (``bot_id mod P``). Each partition's keys share one hash tag so the Lua scripts
that move a message between streams, delay sets and the dead-letter queue touch a single Redis
Cluster slot; idempotency keys and status records are written in the same scripts, so they share
it too. With one partition the tag is ``{pipeline}``, the layout floodgate always had; with more,
partition ``p``'s tag is chosen so its slot lies in the part of the slot space that the
bit-reversal of ``p`` points at, which spreads a power of two of partitions evenly over the slot
ranges a cluster's primaries hold (see ``partition_tag``).
Per-bot limiter state (sliding logs, holds) is tagged ``{bot:<id>}``. The updates stream keeps
the name the contract gives it (``{ns}:updates``, no tag); the keys written in one step with it
(update claims, urgent marks, polling offsets) carry the tag ``{<ns>:updates}``, which hashes to
the stream's own slot.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from shared.models import Priority

PRIORITIES: tuple[Priority, ...] = (Priority.HIGH, Priority.NORMAL, Priority.LOW)

SCHEDULER_GROUP = "scheduler"
SENDER_GROUP = "sender"

DELAY_SETS = ("scheduled", "deferred", "retry")

MAX_PARTITIONS = 256
# The slot space is cut in MAX_PARTITIONS equal ranges; a partition's tag hashes into one of them.
_RANGE = REDIS_CLUSTER_HASH_SLOTS // MAX_PARTITIONS

_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@.-")
_ALL_PLAIN = re.compile(r"[A-Za-z0-9_@.\-]*")


def key_part(value: object) -> str:
    """A chat or message id as a key part: numbers, @usernames and message ids as they are; any
    other byte of a string as ``%XX``, so no value can add a separator, a hash tag or a line to
    a key, and two different ids never share one. Anything else (a value queued before ingest
    checked ids) is escaped as its ``repr``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = value if isinstance(value, str) else repr(value)
    if _ALL_PLAIN.fullmatch(text):  # ids as they usually are: nothing to escape
        return text
    raw = text.encode("utf-8", "surrogatepass")
    return "".join(chr(b) if b in _PLAIN else f"%{b:02X}" for b in raw)


@cache
def partition_tag(partition: int, partitions: int) -> str:
    """The hash tag of one partition's keys.

    One partition keeps the tag ``pipeline``. Otherwise partition ``p`` gets the first of
    ``p<p>``, ``p<p>.1``, ``p<p>.2``, ... whose slot falls in range ``bitrev8(p)`` of the
    slot space's 256 equal ranges: partitions 0 and 1 land at its start and middle, 2 and 3 at
    its quarters, and so on. So when P is a power of two, P partitions spread over N primaries
    holding equal slot ranges (what ``redis-cli --cluster create`` gives) within one partition
    of P/N each; and a tag never depends on P. These names are part of the stored layout: never
    change them.
    """
    if partitions == 1:
        return "pipeline"
    start = int(f"{partition:08b}"[::-1], 2) * _RANGE
    tag, n = f"p{partition}", 0
    while not start <= key_slot(tag.encode()) < start + _RANGE:
        n += 1
        tag = f"p{partition}.{n}"
    return tag


class PartitionNeeded(LookupError):
    """A pipeline key was asked of the namespace's keys while the pipeline has several
    partitions: the caller must pick one (``Keys.of_bot``, ``Keys.of_stream``)."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Names of every key under one namespace; with ``partition`` set, of one partition."""

    namespace: str
    partitions: int = 1
    partition: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be 1 to {MAX_PARTITIONS}, not {self.partitions}")
        if self.partition is not None and not 0 <= self.partition < self.partitions:
            raise ValueError(f"partition {self.partition} is not one of {self.partitions}")

    @property
    def _pipeline(self) -> str:
        if self.partition is None and self.partitions > 1:
            raise PartitionNeeded("a pipeline key needs a partition: use of_bot or of_stream")
        return f"{self.namespace}:{{{partition_tag(self.partition or 0, self.partitions)}}}"

    @property
    def shards(self) -> tuple[Keys, ...]:
        """The keys of every partition, in order."""
        return _shards(self.namespace, self.partitions)

    def of_partition(self, partition: int) -> Keys:
        """The keys of one partition."""
        return self.shards[partition]

    def partition_of(self, bot_id: int) -> int:
        """The partition that carries a bot's messages."""
        return bot_id % self.partitions

    def of_bot(self, bot_id: int) -> Keys:
        """The keys of the partition that carries a bot's messages."""
        return self.shards[bot_id % self.partitions]

    def of_stream(self, stream: str) -> Keys:
        """The keys of the partition a pipeline stream belongs to (by its hash tag)."""
        start = stream.find("{")
        end = stream.find("}", start + 1)
        found = _tags(self.namespace, self.partitions).get(stream[start + 1 : end])
        if start < 0 or found is None:
            raise PartitionNeeded(f"not a pipeline key of this layout: {stream!r}")
        return found

    def of_message(self, message_id: str) -> Keys:
        """The keys of the partition a message id was made in (``new_message_id``); an id
        that names no partition of this layout gets partition 0."""
        if self.partitions == 1:
            return self.shards[0]
        try:
            partition = int(message_id[11:13], 16)
        except ValueError:
            partition = 0
        return self.shards[partition if 0 <= partition < self.partitions else 0]

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

    @property
    def schedulers(self) -> str:
        """Sorted set of the scheduler processes alive, scored by their last beat."""
        return f"{self.namespace}:schedulers"

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


@cache
def _shards(namespace: str, partitions: int) -> tuple[Keys, ...]:
    return tuple(Keys(namespace, partitions, p) for p in range(partitions))


@cache
def _tags(namespace: str, partitions: int) -> dict[str, Keys]:
    return {partition_tag(k.partition or 0, partitions): k for k in _shards(namespace, partitions)}
