"""``POST /v1/keys`` refuses, with a 422 naming the field, every value some key store cannot
keep as given: never a 503 that says the store is away (a client would retry it), never a 500,
and never a key kept with a value other than the one asked for."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest

from services.stats.app import StatsService
from services.stats.settings import StatsSettings
from shared.context import build_context
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, serving
from tests.shared.test_keystore import private_database

pytestmark = pytest.mark.timeout(60)

REFUSED = [
    ({"rate": 3_000_000_000}, "rate"),
    ({"rate": 0}, "rate"),
    ({"bots": [2**63]}, "bots.0"),
    ({"bots": [0]}, "bots.0"),
    ({"bots": [True]}, "bots.0"),
    ({"name": "a\x00b"}, "name"),
    ({"expires_at": math.nan}, "expires_at"),
    ({"expires_at": math.inf}, "expires_at"),
    ({"expires_at": 1e20}, "expires_at"),
    ({"expires_at": -1e20}, "expires_at"),
    ({"expires_at": 1_000_000_000}, "expires_at"),
]


@pytest.fixture(params=["redis", "memory", "postgres"])
async def keys_api(request, redis_url: str, namespace: str) -> AsyncIterator[str]:
    async with AsyncExitStack() as stack:
        env: dict[str, Any] = {}
        if request.param == "postgres":
            env["DATABASE_URL"] = await stack.enter_async_context(private_database())
        settings = CommonSettings(
            REDIS_URL=None if request.param == "memory" else redis_url,
            FLOODGATE_NAMESPACE=namespace,
            FLOODGATE_BOTS=",".join(TOKENS.values()),
            FLOODGATE_ADMIN_KEY=ADMIN_KEY,
            **env,
        )
        ctx = build_context(settings, allow_memory=True)
        stack.push_async_callback(ctx.close)
        yield await stack.enter_async_context(serving(ctx, [StatsService(ctx, StatsSettings())]))


async def _call(url: str, method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(headers=AUTH) as s,
        s.request(method, url, json=body) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.parametrize(("spec", "field"), REFUSED, ids=[str(s) for s, _ in REFUSED])
async def test_a_value_no_store_keeps_is_422_naming_it(keys_api, spec, field) -> None:
    status, doc = await _call(f"{keys_api}/v1/keys", "POST", {"role": "producer", **spec})
    assert status == 422, doc
    assert field in [e["field"] for e in doc["errors"]], doc
    status, listed = await _call(f"{keys_api}/v1/keys", "GET")
    assert (status, listed["keys"]) == (200, [])


async def test_the_bounds_themselves_are_kept_as_given(keys_api) -> None:
    spec = {
        "role": "producer",
        "name": "edge",
        "bots": [1, 2**63 - 1],
        "rate": 2**31 - 1,
        "expires_at": round(time.time()) + 86400.0,
    }
    status, doc = await _call(f"{keys_api}/v1/keys", "POST", spec)
    assert status == 201, doc
    status, listed = await _call(f"{keys_api}/v1/keys", "GET")
    (key,) = listed["keys"]
    assert {k: key[k] for k in spec} == spec


async def test_an_unknown_key_is_404_quoting_a_bounded_id(keys_api) -> None:
    status, doc = await _call(f"{keys_api}/v1/keys/{'a' * 5000}", "DELETE")
    assert status == 404
    assert doc["errors"] == [{"field": "id", "reason": "no such key"}]
    assert len(doc["error"]) < 100
