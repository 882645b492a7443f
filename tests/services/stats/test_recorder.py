"""The recorder: updates and settled messages land in PostgreSQL, and catch up after an outage."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
from prometheus_client import CollectorRegistry

from services.stats import recorder as recorder_module
from services.stats.recorder import Recorder, RecorderMetrics
from shared import migrations
from shared.broker import Commit
from shared.context import Context, build_context
from shared.migrations import migrate
from shared.settings import CommonSettings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    pg = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, server_settings={"search_path": schema}
    )
    async with pg.acquire() as conn:
        await migrate(conn)
    yield pg
    await pg.close()
    await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    await admin.close()


@pytest.fixture(params=["redis", "memory", "cluster"])
async def ctx(request, redis_url: str, namespace: str, redis_client) -> AsyncIterator[Context]:
    url = {"redis": redis_url, "memory": None}.get(request.param)
    if request.param == "cluster":  # the updates and events streams lie in two slots there
        url = request.getfixturevalue("redis_cluster").url
    context = build_context(
        CommonSettings(REDIS_URL=url, FLOODGATE_NAMESPACE=namespace), allow_memory=True
    )
    yield context
    await context.close()


def _update(n: int, **extra) -> bytes:
    doc = {
        "bot_id": 5,
        "update_id": n,
        "kind": "message",
        "chat_id": -77,
        "chat_type": "group",
        "message_id": 100 + n,
        "sender_id": 9,
        "text": f"in {n}",
        "mentions_bot": n == 1,
        "replies_to_bot": False,
        "date": 1_790_000_000,
        **extra,
    }
    return orjson.dumps(doc)


def _event(n: int) -> bytes:
    return orjson.dumps(
        {
            "id": f"m{n}",
            "bot_id": 5,
            "chat_id": -77,
            "status": "sent",
            "priority": "high",
            "telegram_message_id": 500 + n,
            "reply_to_message_id": 101,
            "text": f"out {n}",
            "accepted_at": 1_790_000_001.5,
        }
    )


async def _publish(ctx: Context, n: int) -> None:
    # as ingest and the sender write them: apart (two slots on a Redis Cluster)
    await ctx.broker.commit(Commit(adds=[(ctx.keys.updates, f"u{n}", _update(n), "")]))
    await ctx.broker.commit(Commit(adds=[(ctx.keys.of_bot(5).events, f"m{n}", _event(n), "")]))


# what ``_publish(ctx, 1)`` and ``_publish(ctx, 2)`` record: direction, Telegram message id
TWO_EACH_WAY = [("in", 101), ("in", 102), ("out", 501), ("out", 502)]


async def _rows(pool: asyncpg.Pool) -> list[tuple]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT m.direction, m.telegram_message_id, m.text, m.mentions_bot, m.status,"
            " c.telegram_chat_id FROM messages m JOIN chats c ON c.id = m.chat_db_id"
            " ORDER BY m.direction, m.telegram_message_id"
        )
    return [tuple(r) for r in rows]


async def test_records_in_and_out(ctx: Context, pool: asyncpg.Pool) -> None:
    recorder = Recorder(ctx, pool)
    await recorder.start()
    for n in (1, 2):
        await _publish(ctx, n)
    assert await recorder.step() is True
    assert await _rows(pool) == [
        ("in", 101, "in 1", True, None, -77),
        ("in", 102, "in 2", False, None, -77),
        ("out", 501, "out 1", False, "sent", -77),
        ("out", 502, "out 2", False, "sent", -77),
    ]
    depths = await ctx.broker.depths([ctx.keys.of_bot(5).events], [])
    assert depths[ctx.keys.of_bot(5).events] == 0, "recorded events are deleted"
    await ctx.broker.ensure_group(ctx.keys.updates, "app-of-its-own")
    app = await ctx.broker.read([ctx.keys.updates], "app-of-its-own", "x", 10, None)
    assert len(app) == 2, "updates stay for the applications' own groups"


async def test_store_outage_catches_up(ctx: Context, pool: asyncpg.Pool) -> None:
    recorder = Recorder(ctx, pool)
    await recorder.start()
    await _publish(ctx, 1)
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE messages RENAME TO messages_away")
    with pytest.raises(asyncpg.PostgresError):
        await recorder.step()
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE messages_away RENAME TO messages")
    await _publish(ctx, 2)
    while await recorder.step():
        pass
    assert [r[:2] for r in await _rows(pool)] == TWO_EACH_WAY


async def test_rows_the_store_refuses_are_set_aside(
    ctx: Context, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL in a text or a chat id past bigint spoils only its own entry, with the reason."""
    registry = CollectorRegistry()
    recorder = Recorder(ctx, pool, RecorderMetrics(registry))
    await recorder.start()
    nul = orjson.loads(_event(2)) | {"text": "a\x00b"}
    huge = orjson.loads(_event(3)) | {"chat_id": 2**63}
    bad_update = orjson.loads(_update(4)) | {"text": "nul\x00"}
    await _publish(ctx, 1)
    await ctx.broker.commit(
        Commit(
            adds=[
                (ctx.keys.of_bot(5).events, "m2", orjson.dumps(nul), ""),
                (ctx.keys.of_bot(5).events, "m3", json.dumps(huge).encode(), ""),
                (ctx.keys.of_bot(5).events, "m6", b"not json", ""),
            ]
        )
    )
    await ctx.broker.commit(Commit(adds=[(ctx.keys.updates, "u4", orjson.dumps(bad_update), "")]))
    await _publish(ctx, 5)
    with caplog.at_level(logging.WARNING, logger="floodgate.store"):
        while await recorder.step():
            pass
    assert [r[:3] for r in await _rows(pool)] == [
        ("in", 101, "in 1"),
        ("in", 105, "in 5"),
        ("out", 501, "out 1"),
        ("out", 505, "out 5"),
    ]
    assert (await ctx.broker.depths([ctx.keys.of_bot(5).events], []))[
        ctx.keys.of_bot(5).events
    ] == 0
    set_aside = registry.get_sample_value
    total = sum(
        set_aside("floodgate_store_rows_set_aside_total", {"stream": s, "error": e}) or 0
        for s in ("events", "updates")
        for e in (
            "CharacterNotInRepertoireError",
            "DataError",
            "JSONDecodeError",
            "UntranslatableCharacterError",
            "OverflowError",
            "ValueError",
        )
    )
    assert total == 4
    reasons = [r for r in caplog.records if "set aside" in r.getMessage()]
    assert len(reasons) == 4
    assert all(getattr(r, "reason", "") for r in reasons)


async def test_a_gone_recorders_pending_entries_are_claimed(
    ctx: Context, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stats pod replaced mid-batch (its name goes with it) left entries pending under its
    name: the next recorder claims them once idle, or they were never recorded."""
    monkeypatch.setattr(recorder_module, "CLAIM_IDLE_MS", 0)
    gone = Recorder(ctx, pool)
    await gone.start()
    for n in (1, 2):
        await _publish(ctx, n)
    streams = [ctx.keys.updates, ctx.keys.of_bot(5).events]
    taken = await ctx.broker.read(streams, recorder_module.GROUP, "stats-gone-1", 100, None)
    assert len(taken) == 4, "pending under the gone recorder's name"
    await asyncio.sleep(0.05)
    recorder = Recorder(ctx, pool)  # its groups made by its first step
    while await recorder.step():
        pass
    assert [r[:2] for r in await _rows(pool)] == TWO_EACH_WAY


async def test_an_entry_of_no_object_is_set_aside_not_a_wedge(
    ctx: Context, pool: asyncpg.Pool
) -> None:
    recorder = Recorder(ctx, pool)
    await recorder.start()
    await ctx.broker.commit(Commit(adds=[(ctx.keys.updates, "u8", b"[1, 2]", "")]))
    await _publish(ctx, 1)
    while await recorder.step():
        pass
    assert [r[:2] for r in await _rows(pool)] == [("in", 101), ("out", 501)]


async def test_an_entry_floodgate_did_not_write_is_set_aside_not_a_wedge(
    redis_url: str, namespace: str, redis_client, pool: asyncpg.Pool
) -> None:
    """Something else appended to the updates stream (an entry with no payload field): every
    step failed on it, and nothing more was recorded until it was trimmed a day later."""
    context = build_context(
        CommonSettings(REDIS_URL=redis_url, FLOODGATE_NAMESPACE=namespace), allow_memory=False
    )
    try:
        recorder = Recorder(context, pool)
        await recorder.start()
        await redis_client.xadd(context.keys.updates, {"note": "x", "s": "not a number"})
        await _publish(context, 1)
        while await recorder.step():
            pass
        assert [r[:2] for r in await _rows(pool)] == [("in", 101), ("out", 501)]
    finally:
        await context.close()


async def test_a_failed_migration_leaves_no_connection_open(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that takes connections but not the migration (a read-only standby, a role
    without CREATE), retried every few seconds, held one more pool's connections each time."""

    async def refused(conn: asyncpg.Connection) -> list[int]:
        raise asyncpg.InsufficientPrivilegeError("permission denied for schema public")

    monkeypatch.setattr(migrations, "migrate", refused)
    watcher = await asyncpg.connect(database_url)
    try:
        count = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        before = await watcher.fetchval(count)
        for _ in range(3):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await migrations.migrated_pool(database_url)
        assert await watcher.fetchval(count) == before
    finally:
        await watcher.close()


async def test_an_incoming_message_is_one_row_however_often_it_comes(
    ctx: Context, pool: asyncpg.Pool
) -> None:
    """The same update recorded twice (its row committed, the acknowledgement lost) and an
    edit of the message: one row, with the edit's text and the first's mention."""
    recorder = Recorder(ctx, pool)
    await recorder.start()
    edit = orjson.loads(_update(2, text="edited")) | {"kind": "edited_message", "update_id": 9}
    await ctx.broker.commit(
        Commit(
            adds=[
                (ctx.keys.updates, "u1", _update(1), ""),
                (ctx.keys.updates, "u1-again", _update(1), ""),
                (ctx.keys.updates, "u2", _update(2, mentions_bot=True), ""),
                (ctx.keys.updates, "u9", orjson.dumps(edit), ""),
            ]
        )
    )
    while await recorder.step():
        pass
    assert [r[:4] for r in await _rows(pool)] == [
        ("in", 101, "in 1", True),
        ("in", 102, "edited", True),
    ]
