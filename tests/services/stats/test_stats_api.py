"""The stats service: queue depths, dead-letter administration, health and metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
import orjson
import pytest

from sandbox import SandboxConfig
from services.stats.app import StatsService
from services.stats.settings import StatsSettings
from shared.broker import Commit, routed
from shared.context import Context, build_context
from shared.keys import SENDER_GROUP
from shared.models import Envelope, Priority
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, eventually, free_port, serving
from tests.services.sender.harness import BOT, ZERO_STATS, Pipeline, backend, running

__all__ = ["backend"]  # the parametrized backend fixture, re-exported for pytest

pytestmark = pytest.mark.timeout(60)

BLOCKED, MISSING = 77, 78


def _stats_only_ctx(redis_url: str | None, namespace: str) -> Context:
    settings = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
    )
    return build_context(settings, allow_memory=True)


@pytest.fixture
async def stats_api(backend, namespace) -> AsyncIterator[tuple[str, Context]]:
    """The stats service alone, over a backend the test fills directly."""
    ctx = _stats_only_ctx(backend, namespace)
    async with serving(ctx, [StatsService(ctx, StatsSettings())]) as url:
        yield url, ctx
    await ctx.close()


async def _bury(ctx: Context, count: int) -> list[str]:
    """Put ``count`` dead letters straight into the backend; their ids."""
    now, commit = time.time(), Commit()
    ids = [f"dead{i:05d}" for i in range(count)]
    for i, ident in enumerate(ids):
        env = Envelope(
            id=ident,
            bot_id=BOT,
            method="sendMessage",
            params={"chat_id": 1000 + i},
            parts=["x"],
            accepted_at=now,
        )
        meta = orjson.dumps({"error": "Forbidden: bot was blocked by the user", "history": []})
        commit.dead.append((ident, routed(Priority.NORMAL, env.dumps()), meta))
    await ctx.broker.commit(commit)
    return ids


def _assert_stats(doc: dict, queued: int, failed: int, **depths: int) -> None:
    """``/queue/stats`` has its contract's shape, the given depths and zero elsewhere."""
    assert set(doc) == {"stats", "total_queued", "total_failed"}
    assert set(ZERO_STATS) <= set(doc["stats"])
    assert doc["stats"] == dict.fromkeys(doc["stats"], 0) | depths, doc
    assert (doc["total_queued"], doc["total_failed"]) == (queued, failed), doc


async def _call(method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=AUTH) as s, s.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json()


async def _dead_message(p: Pipeline, chat_id: int) -> str:
    ident = await p.submit({"bot_id": BOT, "chat_id": chat_id, "text": f"to {chat_id}"})
    await p.wait_status(ident, "dead")
    return ident


async def test_health_readiness_and_metrics(backend, namespace) -> None:
    async with running(backend, namespace) as p:
        code, ready = await p.call("GET", "/readyz")
        assert (code, ready["ready"]) == (200, True)
        assert ready["backend"] == ("redis" if backend else "memory")
        code, alive = await p.call("GET", "/healthz")
        assert code == 200
        assert sorted(alive["services"]) == ["ingest", "scheduler", "sender", "stats"]
        async with p.session.get(f"{p.url}/metrics") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            text = await resp.text()
        for name in (
            "floodgate_messages_sent_total",
            "floodgate_telegram_responses_total",
            "floodgate_queue_depth",
            "floodgate_queued_messages",
        ):
            assert f"# TYPE {name} " in text, name


async def test_unreachable_redis_is_503(namespace) -> None:
    ctx = _stats_only_ctx(f"redis://127.0.0.1:{free_port()}/0", namespace)
    async with serving(ctx, [StatsService(ctx, StatsSettings())]) as url:
        for path in ("/readyz", "/queue/stats", "/v1/dlq"):
            code, doc = await _call("GET", url + path)
            assert code == 503, (path, doc)
        code, _ = await _call("POST", f"{url}/v1/dlq/replay")
        assert code == 503
    await ctx.close()


def _in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_queue_stats_counts_each_queue(backend, namespace) -> None:
    async with running(backend, namespace, names=["ingest", "scheduler", "stats"]) as p:
        _assert_stats(await p.stats(), queued=0, failed=0)
        for extra in ({"kind": "system"}, {"priority": "high"}, {}, {"priority": "low"}):
            await p.submit({"bot_id": BOT, "chat_id": 5, "text": "x", **extra})
        await p.submit({"bot_id": BOT, "chat_id": 5, "text": "x", "send_at": _in_days(30)})

        async def routed_all() -> bool:
            return (await p.stats())["stats"]["ingest"] == 0

        await eventually(routed_all, 5, step=0.02)
        _assert_stats(await p.stats(), queued=5, failed=0, high=2, normal=1, low=1, scheduled=1)


async def test_dlq_lists_and_replays_all(backend, namespace) -> None:
    config = SandboxConfig(blocked_chats=frozenset({BLOCKED}))
    async with running(backend, namespace, config) as p:
        ident = await _dead_message(p, BLOCKED)
        code, listing = await p.call("GET", "/v1/dlq")
        assert code == 200
        assert listing["count"] == 1
        [item] = listing["items"]
        assert item["id"] == ident
        assert "blocked" in item["error"]
        assert item["message"]["params"]["chat_id"] == BLOCKED
        assert (await p.stats())["total_failed"] == 1

        p.sandbox.configure(blocked_chats=frozenset())
        code, answer = await p.call("POST", "/v1/dlq/replay")
        assert (code, answer) == (200, {"replayed": 1})
        doc = await p.wait_status(ident, "sent")
        assert doc["attempts"] == 0
        assert [r.text for r in p.delivered(BLOCKED)] == [f"to {BLOCKED}"]
        stats = await p.wait_idle()
        assert (stats["total_failed"], stats["stats"]["dlq"]) == (0, 0)
        _, listing = await p.call("GET", "/v1/dlq")
        assert listing == {"items": [], "count": 0}


async def test_dlq_replay_by_ids_and_drop(backend, namespace) -> None:
    config = SandboxConfig(blocked_chats=frozenset({BLOCKED}), missing_chats=frozenset({MISSING}))
    async with running(backend, namespace, config) as p:
        first = await _dead_message(p, BLOCKED)
        second = await _dead_message(p, MISSING)
        p.sandbox.configure(blocked_chats=frozenset(), missing_chats=frozenset())

        code, answer = await p.call("POST", "/v1/dlq/replay", json={"ids": [first, "nope"]})
        assert (code, answer) == (200, {"replayed": 1})
        await p.wait_status(first, "sent")
        _, listing = await p.call("GET", "/v1/dlq")
        assert [i["id"] for i in listing["items"]] == [second]

        code, answer = await p.call("DELETE", f"/v1/dlq/{second}")
        assert (code, answer) == (200, {"dropped": second})
        code, answer = await p.call("DELETE", f"/v1/dlq/{second}")
        assert code == 404
        assert second in answer["error"]
        code, _ = await p.call("DELETE", "/v1/dlq/no-such-id")
        assert code == 404

        stats = await p.wait_idle()
        assert (stats["total_failed"], stats["total_queued"]) == (0, 0)
        assert (await p.status(second))["status"] == "dead"
        assert p.delivered(MISSING) == []
        assert len(p.delivered(BLOCKED)) == 1


async def test_dlq_limit_and_body_validation(stats_api) -> None:
    url, ctx = stats_api
    ids = await _bury(ctx, 3)
    for bad in ("abc", "0", "-1", "10001", "1.5"):
        code, doc = await _call("GET", f"{url}/v1/dlq", params={"limit": bad})
        assert code == 422, bad
        assert "limit" in doc["error"]
    code, doc = await _call("GET", f"{url}/v1/dlq", params={"limit": "2"})
    assert (code, doc["count"], [i["id"] for i in doc["items"]]) == (200, 2, ids[:2])
    for body in (b"{not json", b'{"ids": "dead00000"}', b'{"ids": [1, 2]}'):
        code, doc = await _call(
            "POST", f"{url}/v1/dlq/replay", data=body, headers={"Content-Type": "application/json"}
        )
        assert code == 422, body
    code, doc = await _call("GET", f"{url}/queue/stats")
    assert (doc["total_failed"], doc["stats"]["dlq"]) == (3, 3)


async def test_dlq_replay_all_replays_every_dead_letter(stats_api) -> None:
    url, ctx = stats_api
    await _bury(ctx, 1001)
    code, answer = await _call("POST", f"{url}/v1/dlq/replay")
    assert code == 200
    _, stats = await _call("GET", f"{url}/queue/stats")
    assert (answer["replayed"], stats["total_failed"], stats["stats"]["normal"]) == (1001, 0, 1001)


async def test_total_queued_counts_messages_waiting_behind_their_chat(backend, namespace) -> None:
    faulty = SandboxConfig(fault_5xx_rate=1.0, limits_enabled=False)
    fast = {"TELEGRAM_MAX_RETRIES": 50, "TELEGRAM_BASE_DELAY": 0.05, "FLOODGATE_CHAT_RATE": 1000}
    async with running(backend, namespace, faulty, **fast) as p:
        ids = [await p.submit({"bot_id": BOT, "chat_id": 56, "text": f"m{i}"}) for i in range(3)]

        async def retrying() -> bool:
            return p.sandbox.state.stats.server_errors >= 3

        # m0 is retried; m1 and m2 wait for it to settle
        await eventually(retrying, 5, step=0.02)
        stats = await p.stats()
        assert stats["total_queued"] == 3, stats
        p.sandbox.configure(fault_5xx_rate=0.0)
        for ident in ids:
            await p.wait_status(ident, "sent")
        assert (await p.wait_idle())["total_queued"] == 0


async def test_dlq_lists_an_unreadable_entry(backend, namespace) -> None:
    async with running(backend, namespace) as p:
        junk = Commit(adds=[(p.ctx.keys.ingest, "junk", b"\xffnot json", "")])
        await p.ctx.broker.commit(junk)

        async def buried() -> bool:
            return (await p.stats())["total_failed"] == 1

        await eventually(buried, 5, step=0.02)
        async with p.session.get(f"{p.url}/v1/dlq") as resp:
            assert resp.status == 200, await resp.text()
            listing = await resp.json()
        [item] = listing["items"]
        assert item["id"].startswith("poison-")
        assert "unreadable" in item["error"]
        code, answer = await p.call("DELETE", f"/v1/dlq/{item['id']}")
        assert (code, answer) == (200, {"dropped": item["id"]})


async def test_dlq_replay_refuses_a_body_that_is_not_an_object(stats_api) -> None:
    url, ctx = stats_api
    ids = await _bury(ctx, 3)
    code, _ = await _call("POST", f"{url}/v1/dlq/replay", json=[ids[0]])
    _, stats = await _call("GET", f"{url}/queue/stats")
    assert (code, stats["total_failed"]) == (422, 3)


async def test_housekeeping_forgets_gone_consumers_and_trims_updates(redis_url, namespace) -> None:
    ctx = _stats_only_ctx(redis_url, namespace)
    keys, broker = ctx.keys, ctx.broker
    stream = keys.send(Priority.NORMAL)
    await broker.ensure_group(stream, SENDER_GROUP)
    await broker.ensure_group(keys.updates, "app")
    await broker.commit(Commit(adds=[(keys.updates, "u1", b"{}", "")]))
    await broker.commit(Commit(adds=[(stream, "m1", b"{}", "")]))
    [entry] = await broker.read([stream], SENDER_GROUP, "old-pod", 1, None)
    await broker.commit(Commit(group=SENDER_GROUP, acks=[(stream, entry.entry_id)]))
    settings = StatsSettings(
        FLOODGATE_UPDATES_RETENTION=0.05,
        FLOODGATE_FORGET_CONSUMERS_AFTER=0.05,
        FLOODGATE_HOUSEKEEPING_INTERVAL=0.05,
    )
    client = cast(Any, broker).client
    assert await _consumers(client, stream) == [b"old-pod"]

    async def clean() -> bool:
        return await _consumers(client, stream) == [] and await client.xlen(keys.updates) == 0

    stop = asyncio.Event()
    service = asyncio.create_task(StatsService(ctx, settings).run(stop))
    try:
        await eventually(clean, 5)
    finally:
        stop.set()
        await service
        await ctx.close()


async def test_housekeeping_drops_dead_letters_past_their_retention(redis_url, namespace) -> None:
    """With FLOODGATE_DLQ_RETENTION, dead letters that outlived it leave the queue (counted,
    and logged); younger ones stay. 0 keeps them for good."""
    ctx = _stats_only_ctx(redis_url, namespace)
    await _bury(ctx, 3)
    await asyncio.sleep(0.3)
    await ctx.broker.commit(Commit(dead=[("fresh", routed(Priority.NORMAL, b"{}"), b"{}")]))
    keep_ctx = _stats_only_ctx(redis_url, namespace)
    keep = StatsSettings(FLOODGATE_DLQ_RETENTION=0)
    await StatsService(keep_ctx, keep)._housekeep()
    await keep_ctx.close()
    assert len(await ctx.broker.dlq_list(10)) == 4, "0 keeps them for good"
    service = StatsService(ctx, StatsSettings(FLOODGATE_DLQ_RETENTION=0.2))
    await service._housekeep()
    assert [d.message_id for d in await ctx.broker.dlq_list(10)] == ["fresh"]
    assert service._metrics.dlq_expired._value.get() == 3
    await ctx.close()


async def _consumers(client: Any, stream: str) -> list[bytes]:
    return [c["name"] for c in await client.xinfo_consumers(stream, SENDER_GROUP)]
