"""``floodgate keys create|list|revoke``: on the key store itself, and over the stats API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from floodgate.cli import main
from floodgate.keys_cli import parse_expiry
from services.stats.app import StatsService
from services.stats.settings import StatsSettings
from shared.context import Context, build_context
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, serving

pytestmark = pytest.mark.timeout(60)


async def _keys(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["keys", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
async def stats(redis_url: str, namespace: str, redis_client) -> AsyncIterator[tuple[str, Context]]:
    settings = CommonSettings(
        REDIS_URL=redis_url, FLOODGATE_NAMESPACE=namespace, FLOODGATE_ADMIN_KEY=ADMIN_KEY
    )
    ctx = build_context(settings, allow_memory=False)
    async with serving(ctx, [StatsService(ctx, StatsSettings())]) as url:
        yield url, ctx
    await ctx.close()


async def _status(url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as s, s.get(f"{url}/queue/stats") as resp:
        return resp.status


async def test_create_list_revoke_on_the_store(
    stats, capsys, monkeypatch, redis_url, namespace
) -> None:
    url, _ = stats
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FLOODGATE_NAMESPACE", namespace)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    code, out, _ = await _keys(
        capsys, "create", "--role", "viewer", "--name", "dash", "--expires", "30d", "--bots", "1,2"
    )
    assert code == 0
    token = out.strip()
    assert token.startswith("fg_")
    assert len(out.splitlines()) == 1
    assert await _status(url, token) == 200
    code, out, _ = await _keys(capsys, "list")
    [listed] = orjson.loads(out)
    key_id = token.split("_")[1]
    assert (listed["id"], listed["name"], listed["role"], listed["bots"]) == (
        key_id,
        "dash",
        "viewer",
        [1, 2],
    )
    assert listed["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=60)
    assert listed["last_used_at"] is not None
    assert token.split("_", 2)[2] not in out
    assert (await _keys(capsys, "revoke", key_id))[0] == 0
    assert (await _keys(capsys, "revoke", "nosuch"))[0] == 1
    assert orjson.loads((await _keys(capsys, "list"))[1])[0]["revoked"] is True


async def test_over_the_api_with_the_api_key(stats, capsys, monkeypatch) -> None:
    url, ctx = stats
    monkeypatch.setenv("FLOODGATE_API_KEY", ADMIN_KEY)
    code, out, _ = await _keys(capsys, "create", "--role", "producer", "--rate", "5", "--url", url)
    assert code == 0
    token = out.strip()
    [stored] = await ctx.keystore.list()
    assert (stored.id, stored.rate) == (token.split("_")[1], 5)
    code, out, _ = await _keys(capsys, "list", "--url", url)
    assert [k["id"] for k in orjson.loads(out)] == [stored.id]
    monkeypatch.setenv("FLOODGATE_API_KEY", token)  # a producer may not manage keys
    code, _, err = await _keys(capsys, "list", "--url", url)
    assert code == 1
    assert "a producer key may not GET /v1/keys" in err
    monkeypatch.setenv("FLOODGATE_API_KEY", ADMIN_KEY)
    assert (await _keys(capsys, "revoke", stored.id, "--url", url))[0] == 0
    assert (await ctx.keystore.list())[0].revoked


async def test_the_embedded_backend_has_no_store(capsys, monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    code, _, err = await _keys(capsys, "create", "--role", "admin")
    assert code == 2
    assert "FLOODGATE_ADMIN_KEY" in err


def test_expiry_forms() -> None:
    assert parse_expiry("30d", 1000.0) == 1000.0 + 30 * 86400
    assert parse_expiry("12h", 0.0) == 12 * 3600
    assert parse_expiry("2030-01-01T00:00:00Z", 0.0) == 1893456000.0
    with pytest.raises(ValueError, match="time zone"):
        parse_expiry("2030-01-01T00:00:00", 0.0)
