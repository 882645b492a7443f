"""A batch whose messages lie in several partitions, one of which is away (its Redis Cluster
primary failing over): the others are accepted, its own are refused one by one with a 503, and
the refused take no place of the API key's rate.

The outage is injected at the broker, around a real Redis: commits that touch the away
partition's keys fail as an unreachable primary's do, everything else runs on Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
import redis.asyncio as redis

from floodgate.client import Accepted, Floodgate
from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from shared.api_keys import Role, new_key
from shared.broker import BrokerUnavailable, Commit
from shared.context import Context, build_context, dlq_keys
from shared.keys import Keys
from shared.memory_key_rate import MemoryKeyRate
from shared.redis_broker import RedisBroker
from shared.redis_key_rate import RedisKeyRate
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, TOKENS, serving

AWAY_BOT, HOME_BOT = 111, 222  # partitions 3 and 2 of 4


class _OnePartitionAway(RedisBroker):
    """A broker whose commits to one partition fail as if its primary did not answer (with
    ``times``, only that many times)."""

    away: Keys | None = None
    times: int | None = None

    async def commit(self, commit: Commit) -> dict[str, str]:
        touched = [stream for stream, *_ in commit.adds]
        if self.away is not None and any(self.away.ingest == s for s in touched):
            if self.times is not None:
                self.times -= 1
                if self.times <= 0:
                    self.away = None
            raise BrokerUnavailable("redis unreachable: the partition's primary is away (test)")
        return await super().commit(commit)


@pytest.fixture
async def ingest(
    redis_url: str, namespace: str, redis_client: redis.Redis
) -> AsyncIterator[tuple[str, Context, _OnePartitionAway]]:
    settings = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        FLOODGATE_PARTITIONS=4,
    )
    built = build_context(settings, allow_memory=False)
    broker = _OnePartitionAway(built.broker.client, dlq_keys(built.keys))
    ctx = replace(built, broker=broker)
    async with serving(ctx, [IngestService(ctx, IngestSettings())]) as url:
        yield url, ctx, broker
    await ctx.close()


async def _batch(url: str, token: str, bots: list[int]) -> tuple[int, dict]:
    body = {"messages": [{"bot_id": b, "chat_id": 5, "text": f"to {b}"} for b in bots]}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.post(f"{url}/v1/messages/batch", json=body) as resp,
    ):
        return resp.status, await resp.json()


async def test_only_the_away_partitions_messages_are_refused(ingest, redis_client) -> None:
    url, ctx, broker = ingest
    assert ctx.keys.partition_of(AWAY_BOT) != ctx.keys.partition_of(HOME_BOT)
    token, record = new_key(Role.PRODUCER, rate=10)
    await ctx.keystore.add(record)
    broker.away = ctx.keys.of_bot(AWAY_BOT)

    status, doc = await _batch(url, token, [HOME_BOT, AWAY_BOT, HOME_BOT])
    assert status == 202
    home, away, home_again = doc["results"]
    assert home["status"] == home_again["status"] == "queued"
    assert (away["status"], away["code"]) == ("rejected", 503)
    assert "not accepted" in away["error"]
    # the refused message holds no place of the key's rate: two places taken, not three
    assert await redis_client.zcard(ctx.keys.key_rate(record.id)) == 2
    home_ingest = ctx.keys.of_bot(HOME_BOT).ingest
    assert await redis_client.xlen(home_ingest) == 2
    assert await redis_client.exists(broker.away.ingest) == 0

    status, doc = await _batch(url, token, [AWAY_BOT])  # every message refused: a plain 503
    assert status == 503

    broker.away = None
    status, doc = await _batch(url, token, [AWAY_BOT])
    assert status == 202
    assert doc["results"][0]["status"] == "queued"
    assert await redis_client.xlen(ctx.keys.of_bot(AWAY_BOT).ingest) == 1


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_a_grant_given_back_in_part_keeps_the_rest(
    backend: str, redis_client: redis.Redis, namespace: str
) -> None:
    rate = RedisKeyRate(redis_client, Keys(namespace)) if backend == "redis" else MemoryKeyRate()
    grant = await rate.take("k1", 5, 3)
    await rate.give_back("k1", replace(grant, taken=1))
    assert (await rate.take("k1", 5, 5)).taken == 3, "two of the three places are still held"


async def test_the_client_sends_the_refused_messages_again(ingest, redis_client) -> None:
    url, ctx, broker = ingest
    broker.away, broker.times = ctx.keys.of_bot(AWAY_BOT), 1  # back for the second attempt
    async with Floodgate(url, ADMIN_KEY) as client:
        results = await client.send_batch(
            [{"bot_id": b, "chat_id": 5, "text": f"to {b}"} for b in (HOME_BOT, AWAY_BOT)]
        )
    assert all(isinstance(r, Accepted) for r in results), results
    assert await redis_client.xlen(ctx.keys.of_bot(AWAY_BOT).ingest) == 1
    assert await redis_client.xlen(ctx.keys.of_bot(HOME_BOT).ingest) == 1, "not sent twice"
