"""No user value can break a key or a stored entry: separators, hash tags, lines, NUL, size."""

from __future__ import annotations

import asyncio

import pytest

from shared.broker import Broker, Commit, routed, unroute
from shared.keys import Keys
from shared.models import Priority

G = "sender"

HOSTILE = [
    "555001:normal|x",
    "|",
    "a||b",
    "x:y:z",
    "{pipeline}",
    "}{bot:1}",
    "line\nbreak\r\n",
    "nul\x00byte",
    "%41",
    "@Name",
    "é²🙂",
    "",
    " ",
    "x" * 100_000,
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_routed_members_split_back_exactly(value: str) -> None:
    payload = f'{{"text": "{value}|{value}"}}'.encode()
    for priority in Priority:
        assert unroute(routed(priority, payload, value)) == (priority, value, payload)
        assert unroute(routed(priority, value.encode())) == (priority, "", value.encode())


def test_key_builders_keep_their_slot_and_never_collide(keys: Keys) -> None:
    chats: list[int | str] = [*HOSTILE, 5, -1001, "5x", "@name"]
    builders = {
        "chat_state": lambda c: keys.chat_state(1, c, Priority.NORMAL),
        "parked": lambda c: keys.parked(1, c, Priority.NORMAL),
        "chat_window": lambda c: keys.chat_window(1, c),
        "urgent": lambda c: keys.urgent(1, c, 7),
        "record": lambda c: keys.record(str(c)),
    }
    for name, build in builders.items():
        built = [build(c) for c in chats]
        assert len(set(built)) == len(chats), f"{name}: two ids share a key"
        tags = {"chat_window": "{bot:1}", "urgent": f"{{{keys.updates}}}"}
        tag = tags.get(name, "{pipeline}")
        for key in built:
            head = f"{keys.namespace}:{tag}:"
            assert key.startswith(head), name
            rest = key[len(head) :]
            for bad in ("|", "{", "}", "\n", "\r", "\x00", " "):
                assert bad not in rest, f"{name}: {bad!r} in {rest[:60]!r}"


async def _send_groups(broker: Broker, keys: Keys) -> None:
    for stream in keys.send_streams:
        await broker.ensure_group(stream, G)


@pytest.mark.parametrize("value", HOSTILE[:10], ids=range(10))
async def test_promote_and_requeue_keep_hostile_parts_apart(
    broker: Broker, keys: Keys, value: str
) -> None:
    """A chat state key and a payload full of separators go where they belong, and the chat
    whose key is a prefix of the hostile one (the victim) is not touched."""
    await _send_groups(broker, keys)
    stream = keys.send(Priority.NORMAL)
    victim = keys.chat_state(1, 555001, Priority.NORMAL)
    hostile_chat = f"{victim}|{value}"
    payload = f"payload|{value}|end".encode()
    scheduled = keys.delayed("scheduled")
    member = routed(Priority.NORMAL, payload, hostile_chat)
    await broker.commit(Commit(delays=[(scheduled, 0, member)]))
    await broker.commit(Commit(dead=[("d1", routed(Priority.NORMAL, b"{}"), b"{}")]))
    await asyncio.sleep(0.01)
    assert await broker.promote_due(scheduled, keys.send_streams, 10) == 1
    assert await broker.dlq_requeue(keys.send_streams, [("d1", member)]) == 1
    got = await broker.read([stream], G, "c", 10, None)
    assert [(e.payload, e.seq) for e in got] == [(payload, 1), (payload, 2)]
    # the victim's own next message is its first: nothing moved its counter
    await broker.commit(Commit(delays=[(scheduled, 0, routed(Priority.NORMAL, b"v", victim))]))
    await asyncio.sleep(0.01)
    await broker.promote_due(scheduled, keys.send_streams, 10)
    [own] = await broker.read([stream], G, "c", 10, None)
    assert (own.payload, own.seq) == (b"v", 1)


async def test_dead_letters_keep_hostile_payloads(broker: Broker, keys: Keys) -> None:
    for i, value in enumerate(HOSTILE):
        payload = f"|{value}|".encode()
        member = routed(Priority.LOW, payload, f"{value}|{value}")
        await broker.commit(Commit(dead=[(f"d{i}", member, b"{}")]))
    letters = {d.message_id: d for d in await broker.dlq_list(100)}
    for i, value in enumerate(HOSTILE):
        assert letters[f"d{i}"].payload == f"|{value}|".encode()
        assert letters[f"d{i}"].priority is Priority.LOW


async def test_members_queued_before_the_length_prefix_are_still_read(
    broker: Broker, keys: Keys
) -> None:
    """After an upgrade, delay sets and the DLQ may hold members of the old format."""
    await _send_groups(broker, keys)
    chat = keys.chat_state(2, 9, Priority.LOW)
    old = b"l|" + chat.encode() + b'|{"text": "a|b"}'
    scheduled = keys.delayed("scheduled")
    await broker.commit(Commit(delays=[(scheduled, 0, old)]))
    await broker.commit(Commit(dead=[("d9", b"l||old dead", b"{}")]))
    await asyncio.sleep(0.01)
    assert await broker.promote_due(scheduled, keys.send_streams, 10) == 1
    [letter] = await broker.dlq_list(10)
    assert (letter.priority, letter.payload) == (Priority.LOW, b"old dead")
    assert await broker.dlq_requeue(keys.send_streams, [("d9", old)]) == 1
    got = await broker.read([keys.send(Priority.LOW)], G, "c", 10, None)
    assert [(e.payload, e.seq) for e in got] == [(b'{"text": "a|b"}', 1), (b'{"text": "a|b"}', 2)]
