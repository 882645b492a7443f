"""A key's secret never leaves the request that carries it: not into logs, metrics, status
records, the dead-letter queue, Redis or the message store."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis

from floodgate.demo import demo_token
from tests.helpers import AUTH, eventually
from tests.procs import floodgate
from tests.shared.test_keystore import private_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BOT, BLOCKED = 4001, 77


def _create_key(env: dict[str, str]) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "floodgate.cli",
            "keys",
            "create",
            "--role",
            "producer",
            "--bots",
            str(BOT),
            "--rate",
            "3",
            "--name",
            "secrecy",
        ],
        env={**os.environ, **env},
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout.decode().strip()


async def _redis_dump(url: str, namespace: str) -> str:
    """Every key and value under the namespace, as text."""
    client = redis.Redis.from_url(url)
    parts: list[str] = []
    try:
        async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            kind = (await client.type(key)).decode()
            value: Any
            if kind == "string":
                value = await client.get(key)
            elif kind == "hash":
                value = await client.hgetall(key)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = await client.smembers(key)
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            else:
                value = await client.xrange(key)
            parts.append(f"{key!r} {value!r}")
    finally:
        await client.aclose()
    return "\n".join(parts)


async def _store_dump(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        rows = []
        for table in tables:
            rows += [r[0] for r in await conn.fetch(f"SELECT row_to_json(t)::text FROM {table} t")]
        return "\n".join(rows)
    finally:
        await conn.close()


async def test_the_secret_is_nowhere(redis_url: str) -> None:
    sandbox = floodgate("sandbox", ["sandbox", "--blocked-chats", str(BLOCKED)], {})
    async with private_database() as database:
        namespace = f"sec{secrets.token_hex(4)}"
        env = {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database,
            "TELEGRAM_API_BASE": sandbox.url,
            "FLOODGATE_BOTS": demo_token(BOT),
            "FLOODGATE_NAMESPACE": namespace,
            "FLOODGATE_LOG_LEVEL": "DEBUG",
            "TELEGRAM_MAX_RETRIES": "0",
        }
        token = _create_key(env)
        secret = token.split("_", 2)[2]
        proc = floodgate("all", ["run", "all"], env)
        try:
            await sandbox.wait_healthy()
            await proc.wait_healthy()
            texts = await _use_the_key(proc.url, token)
            listed = subprocess.run(
                [sys.executable, "-m", "floodgate.cli", "keys", "list"],
                env={**os.environ, **env},
                capture_output=True,
                check=True,
                timeout=30,
            )
            listing = listed.stdout.decode()
            texts.append(listing)
            texts.append(await _redis_dump(redis_url, namespace))

            async def recorded() -> bool:
                return "secrecy-dead" in await _store_dump(database)

            await eventually(recorded, timeout=30)
        finally:
            proc.terminate()
            sandbox.terminate()
        texts.append(await _store_dump(database))
        texts.append(proc.log_path.read_text(errors="replace"))
    assert "secrecy-dead" in texts[-2]  # the store was read, and holds the dead message
    assert '"name": "secrecy"' in listing
    assert '"last_used_at": null' not in listing  # the key was seen in use
    for text in texts:
        assert secret not in text
        assert secret[:16] not in text


async def _use_the_key(url: str, token: str) -> list[str]:
    """Send, fail, retry over quota, read back; the answers and what the services show."""
    texts: list[str] = []
    mine = {"Authorization": f"Bearer {token}"}
    wrong = {"Authorization": f"Bearer {token[:-3]}abc"}
    async with aiohttp.ClientSession() as s:
        bodies = [
            {"bot_id": BOT, "chat_id": 5, "text": "secrecy-sent", "idempotency_key": "k1"},
            {"bot_id": BOT, "chat_id": BLOCKED, "text": "secrecy-dead"},
        ]
        ids = []
        for body in bodies:
            async with s.post(f"{url}/v1/messages", json=body, headers=mine) as resp:
                assert resp.status == 202
                ids.append((await resp.json())["id"])
        for path, headers in (
            ("/v1/messages", mine),
            ("/v1/messages", wrong),
            ("/queue/stats", mine),
        ):
            async with s.post(f"{url}{path}", json=bodies[0], headers=headers) as resp:
                texts.append(await resp.text())
        async with s.post(
            f"{url}/v1/messages/batch", json={"messages": bodies * 3}, headers=mine
        ) as resp:
            texts.append(await resp.text())

        async def dead() -> bool:
            async with s.get(f"{url}/v1/messages/{ids[1]}", headers=mine) as resp:
                return (await resp.json())["status"] == "dead"

        await eventually(dead, timeout=30)
        for ident in ids:
            async with s.get(f"{url}/v1/messages/{ident}", headers=mine) as resp:
                texts.append(await resp.text())
        for path in ("/v1/dlq", "/metrics", "/v1/keys", "/queue/stats"):
            async with s.get(f"{url}{path}", headers=AUTH) as resp:
                texts.append(await resp.text())
    return texts
