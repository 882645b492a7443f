"""Polling mode: two ingest replicas poll 10 bots' getUpdates; one is killed and restarted;
no update is lost or stored twice."""

from __future__ import annotations

import secrets

import aiohttp
import orjson
import pytest
import redis.asyncio as redis

from floodgate.demo import demo_token
from shared.redis_broker import connect
from tests.helpers import AUTH, eventually
from tests.procs import floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

BOTS = list(range(1101, 1111))


async def _say(session: aiohttp.ClientSession, sandbox_url: str, users: range) -> None:
    for user in users:
        bot = BOTS[user % len(BOTS)]
        text = f"hello @bot{bot}" if user % 2 == 0 else f"note {user}"
        say = {"bot_id": bot, "chat_id": -3000 - user % 20, "user_id": 20_000 + user, "text": text}
        async with session.post(f"{sandbox_url}/_sandbox/users/say", json=say) as resp:
            assert resp.status == 200, await resp.text()


async def _stored(client: redis.Redis, stream: str) -> list[dict]:
    return [orjson.loads(fields[b"d"]) for _, fields in await client.xrange(stream)]


async def test_two_polling_replicas_and_a_restart(redis_url: str) -> None:
    sandbox = floodgate("sandbox", ["sandbox"], {})
    namespace = f"poll{secrets.token_hex(4)}"
    env = {
        "REDIS_URL": redis_url,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_BOT_USERNAMES": ",".join(f"{b}=bot{b}" for b in BOTS),
        "FLOODGATE_NAMESPACE": namespace,
        "FLOODGATE_POLLING_BOTS": "all",
        "FLOODGATE_POLL_TIMEOUT": "1",
        "FLOODGATE_POLL_LEASE_MS": "3000",
    }
    first = floodgate("ingest-a", ["run", "ingest"], {**env, "FLOODGATE_CONSUMER": "a"})
    second = floodgate("ingest-b", ["run", "ingest"], {**env, "FLOODGATE_CONSUMER": "b"})
    procs = [first, second]
    client = connect(redis_url)
    stream = f"{namespace}:updates"
    try:
        await sandbox.wait_healthy()
        for proc in procs:
            await proc.wait_healthy()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            await _say(session, sandbox.url, range(50))

            async def stored(count: int) -> bool:
                return len(await _stored(client, stream)) >= count

            await eventually(lambda: stored(50), timeout=30)  # both replicas are polling
            first.kill()
            await _say(session, sandbox.url, range(50, 80))
            again = floodgate("ingest-a2", ["run", "ingest"], {**env, "FLOODGATE_CONSUMER": "a"})
            procs.append(again)
            await again.wait_healthy()
            await _say(session, sandbox.url, range(80, 100))
            await eventually(lambda: stored(100), timeout=30)

            async def all_confirmed() -> bool:
                """No bot has an update left unconfirmed: none can be polled, so stored, again."""
                for bot in BOTS:
                    params = {"bot_id": str(bot)}
                    async with session.get(f"{sandbox.url}/_sandbox/updates", params=params) as r:
                        if (await r.json())["pending"]:
                            return False
                return True

            await eventually(all_confirmed, timeout=30)
        stored = await _stored(client, stream)
        ids = [(u["bot_id"], u["update_id"]) for u in stored]
        assert len(set(ids)) == 100, f"{len(set(ids))} distinct updates of 100"
        assert len(ids) == 100, f"{len(ids) - len(set(ids))} stored twice"
        assert sum(u["mentions_bot"] for u in stored) == 50
    finally:
        for proc in [*procs, sandbox]:
            proc.terminate()
        async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            await client.delete(key)
        await client.aclose()
