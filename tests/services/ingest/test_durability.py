"""FLOODGATE_DURABILITY=replicated: ingest answers 202 (the webhook 200) only once a replica has
the write; without a replica's word in time the answer is 503 and nothing is promised."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from shared.broker import Commit, NotReplicated
from shared.context import ConfigError, build_context, dlq_keys
from shared.keys import Keys
from shared.redis_broker import RedisBroker
from shared.redis_client import connect
from shared.settings import CLUSTER_PARTITIONS, CommonSettings
from shared.webhooks import derived_secret
from tests.cluster import RedisCluster, SentinelSetup
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, serving

BOT = 111
UPDATE = {
    "update_id": 7,
    "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "hi"},
}


async def _ingest(url: str, namespace: str) -> AsyncIterator[str]:
    settings = CommonSettings(
        REDIS_URL=url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_DURABILITY="replicated",
        FLOODGATE_REPLICATION_TIMEOUT_MS=200,
    )
    ctx = build_context(settings, allow_memory=False)
    async with serving(ctx, [IngestService(ctx, IngestSettings())]) as base:
        yield base
    await ctx.close()


async def _send(base: str, key: str) -> tuple[int, dict]:
    message = {"bot_id": BOT, "chat_id": 5, "text": "hi", "idempotency_key": key}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base}/v1/messages", json=message, headers=AUTH) as resp,
    ):
        return resp.status, await resp.json()


async def _send_and_webhook(base: str) -> tuple[tuple[int, dict], tuple[int, dict]]:
    header = {"X-Telegram-Bot-Api-Secret-Token": derived_secret(TOKENS[BOT])}
    sent = await _send(base, "k1")
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base}/webhook/telegram/{BOT}", json=UPDATE, headers=header) as resp,
    ):
        return sent, (resp.status, await resp.json())


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
async def test_replicated_answers_once_a_replica_has_it(
    request: pytest.FixtureRequest, topology: str, namespace: str
) -> None:
    setup: RedisCluster | SentinelSetup = request.getfixturevalue(f"redis_{topology}")
    async for base in _ingest(setup.url, namespace):
        (status, body), (hook, _) = await _send_and_webhook(base)
        assert (status, body["status"], hook) == (202, "queued", 200)


async def test_cluster_waits_on_the_replica_of_the_written_slot(
    redis_cluster: RedisCluster, namespace: str
) -> None:
    """WAIT counts the replicas of the connection that wrote: with the replica of the primary
    of the bot's partition stopped, a write there is not confirmed, whatever other nodes do."""
    stream = Keys(namespace, CLUSTER_PARTITIONS).of_bot(BOT).ingest
    replica = redis_cluster.replica_of(redis_cluster.owner(stream))
    async for base in _ingest(redis_cluster.url, namespace):
        assert (await _send(base, "before"))[0] == 202
        redis_cluster.pause(replica, paused=True)
        try:
            status, body = await _send(base, "paused")
        finally:
            redis_cluster.pause(replica, paused=False)
        assert status == 503
        assert "nothing is promised" in body["error"]


async def test_replicated_without_a_replica_is_503_promising_nothing(
    redis_url: str, namespace: str, redis_client
) -> None:
    async for base in _ingest(redis_url, namespace):  # the shared test Redis has no replica
        (status, body), (hook, stored) = await _send_and_webhook(base)
        assert (status, hook) == (503, 503)
        for answer in (body, stored):
            assert "no replica confirmed it" in answer["error"]
            assert "nothing is promised" in answer["error"]


def test_embedded_backend_refuses_replicated() -> None:
    settings = CommonSettings(FLOODGATE_DURABILITY="replicated", FLOODGATE_ADMIN_KEY=ADMIN_KEY)
    with pytest.raises(ConfigError, match="needs REDIS_URL"):
        build_context(settings, allow_memory=True)


async def test_a_duplicate_is_promised_only_once_its_first_copy_is_replicated(
    redis_cluster: RedisCluster, keys: Keys
) -> None:
    """A retry answered as a duplicate, on a connection that wrote nothing, still waits until
    a replica has the first copy."""
    keys = keys.of_bot(111)
    replica = redis_cluster.replica_of(redis_cluster.owner(keys.ingest))
    clients = [connect(redis_cluster.url), connect(redis_cluster.url)]
    first, retry = (RedisBroker(c, dlq_keys(keys), 200) for c in clients)

    def commit() -> Commit:
        idem = keys.idempotency(111, "k")
        return Commit(
            idempotency=[(idem, "m1")], adds=[(keys.ingest, "m1", b"x", "")], replicated=True
        )

    try:
        redis_cluster.pause(replica, paused=True)
        try:
            with pytest.raises(NotReplicated):
                await first.commit(commit())
            with pytest.raises(NotReplicated):
                await retry.commit(commit())  # m1 is taken, its copy still unknown
        finally:
            redis_cluster.pause(replica, paused=False)
        assert await retry.commit(commit()) == {"m1": "m1"}
    finally:
        for client in clients:
            await client.aclose()
