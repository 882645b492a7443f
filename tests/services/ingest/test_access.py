"""Access control on the routes of ingest and stats, with keys in Redis (and in PostgreSQL's
api_sessions), checked by two replicas that each keep their own cache."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.stats.app import StatsService
from services.stats.settings import StatsSettings
from shared.api_keys import Role, new_key
from shared.context import ConfigError, Context, build_context
from shared.models import Priority
from shared.runtime import Service
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, eventually, serving
from tests.shared.test_keystore import private_database

pytestmark = pytest.mark.timeout(60)

A, B = 111, 222
REVOKED_WITHIN_S = 5.0  # what the README promises, whatever the cache's setting


@dataclass
class Replica:
    """One process's worth of ingest and stats, with its own key cache."""

    url: str
    ctx: Context


def _ctx(redis_url: str | None, namespace: str, **extra: Any) -> Context:
    env = {
        "REDIS_URL": redis_url,
        "FLOODGATE_NAMESPACE": namespace,
        "FLOODGATE_BOTS": ",".join(TOKENS.values()),
        "FLOODGATE_ADMIN_KEY": ADMIN_KEY,
        **extra,
    }
    settings = CommonSettings(**env)
    return build_context(settings, allow_memory=True)


@asynccontextmanager
async def replicas(
    redis_url: str | None, namespace: str, count: int = 2, **extra: Any
) -> AsyncIterator[list[Replica]]:
    """``count`` apps serving ingest and stats over one Redis, each with its own context."""
    async with AsyncExitStack() as stack:
        made = []
        for _ in range(count):
            ctx = _ctx(redis_url, namespace, **extra)
            stack.push_async_callback(ctx.close)
            services: list[Service] = [
                IngestService(ctx, IngestSettings()),
                StatsService(ctx, StatsSettings()),
            ]
            made.append(Replica(await stack.enter_async_context(serving(ctx, services)), ctx))
        yield made


@pytest.fixture
async def pair(redis_url: str, namespace: str, redis_client) -> AsyncIterator[list[Replica]]:
    async with replicas(redis_url, namespace) as made:
        yield made


async def make_key(ctx: Context, role: Role, **spec: Any) -> str:
    token, record = new_key(role, **spec)
    await ctx.keystore.add(record)
    return token


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


async def call(
    url: str, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession(headers=bearer(token)) as s,
        s.request(method, url + path, json=body) as resp,
    ):
        return resp.status, await resp.json(), dict(resp.headers)


def message(bot: int = A, **extra: Any) -> dict[str, Any]:
    return {"bot_id": bot, "chat_id": 5, "text": "hi", **extra}


ROUTES: list[tuple[str, str, Any, frozenset[Role]]] = [
    ("POST", "/v1/messages", message(), frozenset({Role.PRODUCER, Role.ADMIN})),
    (
        "POST",
        "/v1/messages/batch",
        {"messages": [message()]},
        frozenset({Role.PRODUCER, Role.ADMIN}),
    ),
    ("GET", "/v1/messages/nosuch", None, frozenset(Role)),
    ("GET", "/openapi.json", None, frozenset(Role)),
    ("GET", "/queue/stats", None, frozenset({Role.VIEWER, Role.ADMIN})),
    ("GET", "/v1/dlq", None, frozenset({Role.VIEWER, Role.ADMIN})),
    ("POST", "/v1/dlq/replay", {"ids": ["nosuch"]}, frozenset({Role.ADMIN})),
    ("DELETE", "/v1/dlq/nosuch", None, frozenset({Role.ADMIN})),
    ("GET", "/v1/keys", None, frozenset({Role.ADMIN})),
    ("POST", "/v1/keys", {"role": "viewer"}, frozenset({Role.ADMIN})),
    ("DELETE", "/v1/keys/nosuch", None, frozenset({Role.ADMIN})),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES)
async def test_every_route_needs_a_key_of_its_roles(pair, method, path, body, allowed) -> None:
    one = pair[0]
    tokens = {role: await make_key(one.ctx, role) for role in Role}
    tokens[Role.ADMIN] = ADMIN_KEY  # the bootstrap key is an admin like a stored one
    wrong = tokens[Role.VIEWER][:-2] + "xx"
    for token in (None, "", wrong, "fg_nosuch_secret", ADMIN_KEY + "x"):
        status, doc, headers = await call(one.url, method, path, token, body)
        assert status == 401, (token, doc)
        assert doc["error"]
        assert headers["WWW-Authenticate"] == "Bearer"
    for role, token in tokens.items():
        status, doc, _ = await call(one.url, method, path, token, body)
        if role in allowed:
            assert status not in {401, 403}, (role, doc)
        else:
            assert status == 403, (role, doc)
            assert role.value in doc["error"]


async def test_open_routes_need_no_key(pair) -> None:
    async with aiohttp.ClientSession() as s:
        for path in ("/healthz", "/readyz", "/metrics"):
            async with s.get(pair[0].url + path) as resp:
                assert resp.status == 200, path
        async with s.post(f"{pair[0].url}/webhook/telegram/{A}", json={"update_id": 1}) as resp:
            assert resp.status == 401  # no Telegram secret: refused by the webhook itself
        async with s.get(f"{pair[0].url}/nowhere", headers=AUTH) as resp:
            assert (resp.status, (await resp.json())["error"]) == (404, "Not Found")


async def test_a_producer_sends_only_as_its_bots(pair) -> None:
    one = pair[0]
    token = await make_key(one.ctx, Role.PRODUCER, bots=[A])
    assert (await call(one.url, "POST", "/v1/messages", token, message(A)))[0] == 202
    status, doc, _ = await call(one.url, "POST", "/v1/messages", token, message(B))
    assert status == 403
    assert doc["errors"][0]["field"] == "bot_id"
    batch = {"messages": [message(A), message(B)]}
    status, doc, _ = await call(one.url, "POST", "/v1/messages/batch", token, batch)
    assert status == 403
    assert str(B) in doc["error"]
    assert await _queued(one.ctx) == 1  # nothing of the refused batch
    anybot = await make_key(one.ctx, Role.PRODUCER)
    assert (await call(one.url, "POST", "/v1/messages", anybot, message(B)))[0] == 202


async def _queued(ctx: Context) -> int:
    return (await ctx.broker.depths([ctx.keys.ingest], []))[ctx.keys.ingest]


@pytest.mark.parametrize(
    "method",
    ["setWebhook", "deleteWebhook", "logOut", "close", "getUpdates", "setMyName", "getMe"],
)
async def test_producers_may_not_call_bot_administration(pair, method) -> None:
    one = pair[0]
    token = await make_key(one.ctx, Role.PRODUCER)
    body = {"bot_id": A, "method": method, "params": {"chat_id": 5, "url": "https://evil"}}
    status, doc, _ = await call(one.url, "POST", "/v1/messages", token, body)
    assert status == 422
    assert [e["field"] for e in doc["errors"]] == ["method"]
    status, doc, _ = await call(one.url, "POST", "/v1/messages/batch", token, {"messages": [body]})
    assert (status, doc["results"][0]["code"], doc["results"][0]["errors"][0]["field"]) == (
        202,
        422,
        "method",
    )
    assert await _queued(one.ctx) == 0


async def test_sending_and_editing_methods_pass(pair) -> None:
    one = pair[0]
    token = await make_key(one.ctx, Role.PRODUCER)
    for method in ("sendPhoto", "editMessageText", "deleteMessage", "copyMessage"):
        body = {"bot_id": A, "method": method, "params": {"chat_id": 5, "message_id": 1}}
        assert (await call(one.url, "POST", "/v1/messages", token, body))[0] == 202, method


async def test_a_producer_reads_only_its_own_messages(pair) -> None:
    one, two = pair
    mine = await make_key(one.ctx, Role.PRODUCER)
    theirs = await make_key(one.ctx, Role.PRODUCER)
    viewer = await make_key(one.ctx, Role.VIEWER)
    _, doc, _ = await call(one.url, "POST", "/v1/messages", mine, message())
    path = f"/v1/messages/{doc['id']}"
    assert (await call(two.url, "GET", path, mine))[0] == 200
    status, answer, _ = await call(two.url, "GET", path, theirs)
    assert (status, answer["error"]) == (404, f"no message with id {doc['id']}")
    assert (await call(two.url, "GET", path, viewer))[0] == 200
    assert (await call(two.url, "GET", path, ADMIN_KEY))[0] == 200


async def test_idempotency_keys_are_per_api_key(pair) -> None:
    one, two = pair
    first = await make_key(one.ctx, Role.PRODUCER)
    second = await make_key(one.ctx, Role.PRODUCER)
    body = message(idempotency_key="order-42")
    _, a1, _ = await call(one.url, "POST", "/v1/messages", first, body)
    _, a2, _ = await call(two.url, "POST", "/v1/messages", first, body)
    _, b1, _ = await call(one.url, "POST", "/v1/messages", second, body)
    assert a2 == {**a1, "duplicate": True}
    assert "duplicate" not in b1
    assert b1["id"] != a1["id"]
    assert await _queued(one.ctx) == 2


async def test_a_key_may_be_held_to_a_highest_priority(pair) -> None:
    one = pair[0]
    token = await make_key(one.ctx, Role.PRODUCER, max_priority=Priority.LOW)
    status, doc, _ = await call(one.url, "POST", "/v1/messages", token, message(priority="high"))
    assert (status, doc["errors"][0]["field"]) == (422, "priority")
    _, doc, _ = await call(one.url, "POST", "/v1/messages", token, message(kind="system"))
    assert doc["priority"] == "low"
    _, doc, _ = await call(one.url, "POST", "/v1/messages", token, message(priority="low"))
    assert doc["priority"] == "low"


@pytest.mark.parametrize("store", ["redis", "postgres"])
async def test_revoked_and_expired_keys_stop_on_every_replica(
    redis_url: str, namespace: str, redis_client, store: str
) -> None:
    async with AsyncExitStack() as stack:
        extra: dict[str, Any] = {}
        if store == "postgres":
            extra["DATABASE_URL"] = await stack.enter_async_context(private_database())
        one, two = await stack.enter_async_context(replicas(redis_url, namespace, **extra))
        revoked = await make_key(one.ctx, Role.PRODUCER)
        expiring = await make_key(one.ctx, Role.PRODUCER, expires_at=time.time() + 1.5)
        for token in (revoked, expiring):
            for replica in (one, two):  # both caches now hold the key
                assert (await call(replica.url, "POST", "/v1/messages", token, message()))[0] == 202
        listed = {k.id: k for k in await one.ctx.keystore.list()}
        assert all(k.last_used_at for k in listed.values())
        assert await one.ctx.keystore.revoke(revoked.split("_")[1])
        revoked_at = time.monotonic()

        async def refused(token: str) -> bool:
            return (await call(two.url, "POST", "/v1/messages", token, message()))[0] == 401

        await eventually(lambda: refused(revoked), timeout=REVOKED_WITHIN_S + 1, step=0.2)
        assert time.monotonic() - revoked_at < REVOKED_WITHIN_S + 1  # the last poll's slack
        await eventually(lambda: refused(expiring), timeout=3, step=0.2)
        assert (await call(one.url, "POST", "/v1/messages", expiring, message()))[0] == 401


async def test_quota_holds_across_two_replicas(pair, redis_client) -> None:
    """--rate 10: 10 accepted in any second over both replicas; the rest 429 and not queued."""
    one, two = pair
    token = await make_key(one.ctx, Role.PRODUCER, rate=10)
    answers = []
    began = time.monotonic()
    for i in range(40):
        replica = (one, two)[i % 2]
        answers.append(await call(replica.url, "POST", "/v1/messages", token, message()))
    span = time.monotonic() - began
    accepted = [doc for status, doc, _ in answers if status == 202]
    refused = [(doc, headers) for status, doc, headers in answers if status != 202]
    # at most 10 in any 1-second window: the burst spans ceil(span) windows at most
    assert 10 <= len(accepted) <= 10 * (int(span) + 1)
    for doc, headers in refused:
        assert set(doc) == {"error", "retry_after"}
        assert int(headers["Retry-After"]) == doc["retry_after"] >= 1
    assert len(accepted) + len(refused) == 40
    assert await _queued(one.ctx) == len(accepted)
    records = [k async for k in redis_client.scan_iter(match=f"{one.ctx.keys.record('')}*")]
    assert len(records) == len(accepted)


async def test_quota_in_a_batch_takes_the_first_messages_that_fit(pair) -> None:
    one, two = pair
    token = await make_key(one.ctx, Role.PRODUCER, rate=5)
    batch = {"messages": [message(text=f"m{i}") for i in range(8)]}
    status, doc, headers = await call(one.url, "POST", "/v1/messages/batch", token, batch)
    assert status == 202
    codes = [r.get("code", 202) for r in doc["results"]]
    assert codes == [202] * 5 + [429] * 3
    assert int(headers["Retry-After"]) >= 1
    status, doc, headers = await call(two.url, "POST", "/v1/messages/batch", token, batch)
    if status == 429:  # still in the same second: the whole batch refused, nothing queued
        assert set(doc) == {"error", "retry_after"}
        assert int(headers["Retry-After"]) == doc["retry_after"]
        assert await _queued(one.ctx) == 5
    else:  # a second has passed since the first batch: at most 5 more
        taken = sum(1 for r in doc["results"] if r["status"] == "queued")
        assert 1 <= taken <= 5
        assert await _queued(one.ctx) == 5 + taken


async def test_auth_off_serves_without_keys(redis_url: str, namespace: str, redis_client) -> None:
    async with replicas(redis_url, namespace, count=1, FLOODGATE_AUTH="off") as [one]:
        assert (await call(one.url, "POST", "/v1/messages", None, message()))[0] == 202
        assert (await call(one.url, "GET", "/queue/stats", None))[0] == 200


async def test_auth_off_refuses_a_browser_page_of_another_site(
    redis_url: str, namespace: str, redis_client
) -> None:
    """With keys off, a page open in a browser could post a form to a floodgate on localhost
    (no preflight for a form) and send as any bot: a request with a foreign Origin is a 403."""
    async with replicas(redis_url, namespace, count=1, FLOODGATE_AUTH="off") as [one]:
        host = one.url.removeprefix("http://")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        body = orjson.dumps(message())
        rebound = {"Origin": "http://evil.example:8080", "Host": "evil.example:8080"}
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Origin": f"https://{host}.evil.example"},
            rebound,  # DNS rebinding: the page's own name in both, resolved to 127.0.0.1
        ):
            async with (
                aiohttp.ClientSession() as s,
                s.post(f"{one.url}/v1/messages", data=body, headers={**form, **headers}) as r,
            ):
                assert r.status == 403, headers
                assert "another site" in (await r.json())["error"]
        assert await _queued(one.ctx) == 0
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{one.url}/v1/messages", json=message(), headers={"Origin": one.url}) as r,
        ):
            assert r.status == 202  # the same site, and clients that send no Origin, pass
        assert (await call(one.url, "POST", "/v1/messages", None, message()))[0] == 202


def test_a_short_admin_key_is_refused_without_repeating_it(namespace: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _ctx(None, namespace, FLOODGATE_ADMIN_KEY="short-but-secret")
    assert "32" in str(caught.value)
    assert "short-but-secret" not in str(caught.value)


async def test_embedded_backend_keys_work_too(namespace: str) -> None:
    async with replicas(None, namespace, count=1) as [one]:
        token = await make_key(one.ctx, Role.PRODUCER, bots=[A], rate=2)
        codes = [
            (await call(one.url, "POST", "/v1/messages", token, message()))[0] for _ in range(4)
        ]
        assert codes[:2] == [202, 202]
        assert 429 in codes
        assert (await call(one.url, "GET", "/queue/stats", token))[0] == 403


async def test_refusals_are_counted_by_status(pair) -> None:
    one = pair[0]
    viewer = await make_key(one.ctx, Role.VIEWER)

    def refused() -> dict[str, float | None]:
        name = "floodgate_http_auth_refused_total"
        return {s: one.ctx.registry.get_sample_value(name, {"status": s}) for s in ("401", "403")}

    assert refused() == {"401": 0.0, "403": 0.0}  # there from the start, for rates and alerts
    await call(one.url, "GET", "/queue/stats", None)
    await call(one.url, "GET", "/queue/stats", "fg_nosuch_secret")
    await call(one.url, "POST", "/v1/messages", viewer, message())
    await call(one.url, "GET", "/queue/stats", viewer)  # allowed: not counted
    assert refused() == {"401": 2.0, "403": 1.0}
