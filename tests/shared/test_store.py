"""The PostgreSQL store: migrations, and every hot-path query served by its index."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from shared import store
from shared.migrations import available, migrate

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection working in a schema of this test's own, dropped afterwards."""
    schema = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    connection = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    yield connection
    await connection.close()
    await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    await admin.close()


async def test_migrations_apply_once(conn) -> None:
    versions = [m.version for m in available()]
    assert await migrate(conn) == versions
    assert await migrate(conn) == []
    names = {
        r["indexname"]
        for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
    }
    assert {
        "ix_messages_chat_telegram_msg",
        "ix_messages_reply_lookup",
        "ix_messages_incoming",
        "ix_sessions_token_active_expires",
        "ix_sessions_expires_active",
    } <= names


async def _fill(conn: asyncpg.Connection) -> None:
    """Enough rows that the planner would scan without the indexes."""
    await conn.execute(
        "INSERT INTO bots (id, username) SELECT g, 'bot' || g FROM generate_series(1, 20) g"
    )
    await conn.execute(
        "INSERT INTO chats (bot_id, telegram_chat_id, type)"
        " SELECT 1 + g % 20, -1000 - g, 'group' FROM generate_series(1, 2000) g"
    )
    await conn.execute(
        "INSERT INTO messages (direction, bot_id, chat_db_id, telegram_message_id, text,"
        " mentions_bot, replies_to_bot, created_at)"
        " SELECT CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END, 1 + (g % 2000) % 20, 1 + g % 2000,"
        " g, 'text ' || g, g % 7 = 0, g % 11 = 0, now() - (g || ' seconds')::interval"
        " FROM generate_series(1, 120000) g"
    )
    # as a store with an expiry sweep looks: few active sessions past their expiry
    await conn.execute(
        "INSERT INTO api_sessions (token_id, is_active, expires_at)"
        " SELECT 'tok' || g, g % 3 <> 0, now() + ((g % 1000) - 5 || ' minutes')::interval"
        " FROM generate_series(1, 50000) g"
    )
    await conn.execute("ANALYZE")


async def _plan(conn: asyncpg.Connection, query: str, *args: object) -> str:
    rows = await conn.fetch(f"EXPLAIN {query}", *args)
    return "\n".join(r[0] for r in rows)


async def test_hot_path_queries_use_their_indexes(conn) -> None:
    await migrate(conn)
    await _fill(conn)
    cases = [
        # an incoming message's own unique index (003) serves the lookup as well
        (
            store.REPLY_LOOKUP,
            (2, -1001, 1001),
            ("ix_messages_reply_lookup", "ux_messages_incoming_once"),
        ),
        (store.BY_TELEGRAM_ID, (5, 4005), ("ix_messages_chat_telegram_msg",)),
        (
            store.INCOMING_SINCE,
            (3, datetime.now(UTC) - timedelta(seconds=30), 50),
            ("ix_messages_incoming",),
        ),
        (store.SESSION_LOOKUP, ("tok42",), ("ix_sessions_token_active_expires",)),
        (store.SESSIONS_EXPIRED, (100,), ("ix_sessions_expires_active",)),
    ]
    for query, args, indexes in cases:
        plan = await _plan(conn, query, *args)
        assert any(index in plan for index in indexes), f"none of {indexes} used:\n{plan}"


async def test_reply_target_reads_the_flags(conn) -> None:
    await migrate(conn)
    await conn.execute("INSERT INTO bots (id) VALUES (7)")
    chat = await conn.fetchval(
        "INSERT INTO chats (bot_id, telegram_chat_id, type) VALUES (7, -55, 'group') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO messages (direction, bot_id, chat_db_id, telegram_message_id, mentions_bot)"
        " VALUES ('in', 7, $1, 900, true), ('in', 7, $1, 901, false)",
        chat,
    )
    hit = await store.reply_target(conn, 7, -55, 900)
    assert hit is not None
    assert hit.urgent
    quiet = await store.reply_target(conn, 7, -55, 901)
    assert quiet is not None
    assert not quiet.urgent
    assert await store.reply_target(conn, 7, -55, 999) is None


async def test_incoming_messages_stored_twice_before_003_are_merged(conn) -> None:
    """A store written before 003 may hold an incoming message twice (a redelivered update, an
    edit): the migration keeps one row, with the latest text and any mention either saw."""
    for migration in available():
        if migration.version < 3:
            await conn.execute(migration.sql)
    await conn.execute("INSERT INTO bots (id) VALUES (1)")
    chat = await conn.fetchval(
        "INSERT INTO chats (bot_id, telegram_chat_id) VALUES (1, -5) RETURNING id"
    )
    insert = (
        "INSERT INTO messages (direction, bot_id, chat_db_id, telegram_message_id, text,"
        " mentions_bot, replies_to_bot) VALUES ($1, 1, $2, $3, $4, $5, $6)"
    )
    for row in [
        ("in", 10, "first", True, False),
        ("in", 10, "replied", False, True),
        ("in", 10, "edited", False, False),
        ("in", 11, "once", False, False),
        ("out", 10, "an answer", False, False),
    ]:
        await conn.execute(insert, row[0], chat, *row[1:])
    await conn.execute(
        "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'a'), (2, 'b')")
    assert 3 in await migrate(conn)
    rows = await conn.fetch(
        "SELECT direction, telegram_message_id, text, mentions_bot, replies_to_bot"
        " FROM messages ORDER BY direction, telegram_message_id"
    )
    assert [tuple(r) for r in rows] == [
        ("in", 10, "edited", True, True),  # three rows: the latest text, every flag any saw
        ("in", 11, "once", False, False),
        ("out", 10, "an answer", False, False),
    ]
