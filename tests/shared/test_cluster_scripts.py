"""Every Lua script and multi-key path on a real Redis Cluster: each must declare its keys and
touch one slot, or the cluster refuses it (CROSSSLOT, or a script touching an undeclared key of
another slot)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

import redis.asyncio as redis

from services.ingest.webhook import URGENT_TTL, add_update
from shared.api_keys import ApiKey, Role
from shared.broker import Commit, routed
from shared.context import dlq_keys
from shared.keys import Keys
from shared.limiter import Policy
from shared.models import Priority
from shared.presence import Presence
from shared.redis_broker import RedisBroker
from shared.redis_key_rate import RedisKeyRate
from shared.redis_keystore import RedisKeyStore
from shared.redis_limiter import RedisLimiter
from shared.updates import Update


def _update(update_id: int, text: str) -> Update:
    return Update.model_validate(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 0,
                "chat": {"id": 5, "type": "private"},
                "from": {"id": 5, "is_bot": False, "first_name": "u"},
                "text": text,
                "reply_to_message": {
                    "message_id": 1,
                    "date": 0,
                    "chat": {"id": 5, "type": "private"},
                    "from": {"id": 9, "is_bot": True, "first_name": "b", "username": "fgbot"},
                },
            },
        }
    )


async def test_webhook_and_polling_commits_touch_one_slot(
    cluster_client: redis.Redis, keys: Keys
) -> None:
    broker = RedisBroker(cluster_client, dlq_keys(keys))
    ctx = cast(Any, SimpleNamespace(keys=keys))
    webhook = Commit(record_ttl=URGENT_TTL)
    add_update(ctx, webhook, 9, _update(1, "hi @fgbot"), "fgbot")
    assert await broker.commit(webhook) == {}
    polled = Commit(record_ttl=URGENT_TTL)
    for n in (1, 2):
        add_update(ctx, polled, 9, _update(n, "again"), "fgbot")
    polled.records.append((keys.poll_offset(9), "", {"next": "3"}))
    assert list(await broker.commit(polled)) == ["u9:1"]  # update 1 was stored already
    assert await cluster_client.xlen(keys.updates) == 2
    assert await broker.get_record(keys.poll_offset(9)) == {"next": "3"}
    assert await broker.get_record(keys.urgent(9, 5, 1)) == {"update_id": "1"}


async def test_commit_that_kills_declares_the_dead_letter_keys(
    cluster_client: redis.Redis, keys: Keys
) -> None:
    broker = RedisBroker(cluster_client, dlq_keys(keys))
    member = routed(Priority.NORMAL, b"p", keys.chat_state(1, 5, Priority.NORMAL))
    await broker.commit(Commit(dead=[("d1", member, b"{}")]))
    assert [d.message_id for d in await broker.dlq_list(10)] == ["d1"]
    assert await broker.dlq_requeue(keys.send_streams, [("d1", member)]) == 1
    assert await broker.dlq_drop("d1") is False


async def test_recorder_reads_updates_and_events_of_two_slots(
    cluster_client: redis.Redis, keys: Keys
) -> None:
    broker = RedisBroker(cluster_client, dlq_keys(keys))
    streams = [keys.updates, keys.events]
    for stream in streams:
        await broker.ensure_group(stream, "store")
    assert await broker.read(streams, "store", "c", 10, 50) == []
    await broker.commit(Commit(adds=[(keys.events, "e1", b"x", "")]))
    got = await broker.read(streams, "store", "c", 10, 50)
    assert [(e.stream, e.payload) for e in got] == [(keys.events, b"x")]
    assert (await broker.depths(streams, [keys.delayed("retry")]))[keys.events] == 1


async def test_limiter_scripts_touch_one_slot(cluster_client: redis.Redis, keys: Keys) -> None:
    limiter = RedisLimiter(cluster_client, keys, Policy())
    grants = await limiter.acquire_many(7, [5, -100, "@chan"])
    assert all(g.wait_ms == 0 for g in grants)
    tickets = [g.ticket for g in grants]
    extend = limiter._extend  # renewed by a timer in service; called here directly
    call, args = limiter._token_call(7, [5, -100, "@chan"])
    assert await extend.call(call, [*args, *tickets]) == 3
    for chat, ticket in zip([5, -100, "@chan"], tickets, strict=True):
        await limiter.sent(7, chat, ticket)
    await limiter.flush()
    await limiter.hold(7, None, 1.0)
    await limiter.hold(7, 5, 1.0)
    assert (await limiter.acquire(7, 5)).wait_ms > 0


async def test_key_rate_presence_and_keystore_touch_one_slot(
    cluster_client: redis.Redis, keys: Keys
) -> None:
    rate = RedisKeyRate(cluster_client, keys)
    grant = await rate.take("k1", 10, 3)
    await rate.give_back("k1", grant)
    presence = Presence(cluster_client, keys.senders, "s1")
    assert await presence.beat() == ["s1"]
    await presence.leave()
    store = RedisKeyStore(cluster_client, keys)
    key = ApiKey(id="0123456789ab", role=Role.PRODUCER, secret_hash="h", created_at=time.time())
    await store.add(key)
    assert [k.id for k in await store.list()] == [key.id]
    assert await store.revoke(key.id)
