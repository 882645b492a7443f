"""getUpdates answers that Telegram should never give, but a proxy, a bug or a new field may:
the bot's polling backs off and goes on, the process never stops, and no update whose id could
be read is confirmed to Telegram without being stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.ingest.poller import Poller
from services.ingest.settings import IngestSettings
from services.ingest.webhook import WebhookMetrics
from shared.context import Context, build_context
from shared.settings import CommonSettings
from shared.telegram import TelegramClient, new_session
from tests.helpers import TOKENS, free_port

pytestmark = pytest.mark.timeout(60)

BOT = 111
MESSAGE = {"message_id": 1, "date": 1, "chat": {"id": 42, "type": "private"}, "text": "hi"}
Answer = Callable[[int], tuple[int, dict[str, Any]]]


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[str, list[int], list[Answer]]]:
    """A Bot API answering getUpdates with whatever the test puts in ``answer[0]`` (given the
    offset asked for); every offset asked for is noted."""
    offsets: list[int] = []
    answer: list[Answer] = []

    async def get_updates(request: web.Request) -> web.Response:
        offset = int((await request.json()).get("offset", 0))
        offsets.append(offset)
        await asyncio.sleep(0.02)
        status, doc = answer[0](offset)
        return web.json_response(doc, status=status)

    app = web.Application()
    app.router.add_post("/bot{token}/getUpdates", get_updates)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", offsets, answer
    finally:
        await runner.cleanup()


async def _poll(url: str, seconds: float = 0.8, **env: Any) -> Context:
    """Poll BOT for ``seconds`` (on the embedded backend unless ``env`` names a Redis); the
    poller must end only when told."""
    settings = CommonSettings(
        **{"REDIS_URL": None, "FLOODGATE_BOTS": ",".join(TOKENS.values()), **env}
    )
    ctx = build_context(settings, allow_memory=True)
    stop = asyncio.Event()
    async with new_session(4) as session:
        client = TelegramClient(session, url, 5)
        poller = Poller(
            ctx, BOT, client, "floodbot", 1, 30_000, WebhookMetrics(CollectorRegistry())
        )
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(seconds)
        assert not task.done(), "the poller stopped on its own"
        stop.set()
        await asyncio.wait_for(task, 5)
    return ctx


async def _stored(ctx: Context) -> list[dict[str, Any]]:
    await ctx.broker.ensure_group(ctx.keys.updates, "probe")
    entries = await ctx.broker.read([ctx.keys.updates], "probe", "c", 100, None)
    return [orjson.loads(e.payload) for e in entries]


async def _offset(ctx: Context) -> int | None:
    record = await ctx.broker.get_record(ctx.keys.poll_offset(BOT))
    return int(record["next"]) if record else None


def _updates(*updates: Any) -> Answer:
    def answer(offset: int) -> tuple[int, dict[str, Any]]:
        ids = [u.get("update_id") if isinstance(u, dict) else None for u in updates]
        pending = [
            u for u, i in zip(updates, ids, strict=True) if not isinstance(i, int) or i >= offset
        ]
        return 200, {"ok": True, "result": pending}

    return answer


@pytest.mark.parametrize(
    "result",
    [
        [{"update_id": "abc", "message": MESSAGE}],
        [{"update_id": None}],
        ["x"],
        [{"update_id": 2**64 - 1, "message": MESSAGE}],
        [{"update_id": True, "message": MESSAGE}],
    ],
    ids=["text id", "null id", "no object", "id past 64 bits", "boolean id"],
)
async def test_updates_without_a_usable_id_stop_nothing(telegram, result) -> None:
    url, offsets, answer = telegram
    answer.append(_updates(*result, {"update_id": 7, "message": MESSAGE}))
    ctx = await _poll(url)
    assert [u["update_id"] for u in await _stored(ctx)] == [7]
    assert await _offset(ctx) == 8
    assert offsets[-1] == 8


@pytest.mark.parametrize(
    "doc",
    [
        {"ok": False, "error_code": 400, "description": "x", "parameters": [1]},
        {"ok": False, "error_code": 429, "description": "x", "parameters": {"retry_after": "z"}},
        {"ok": False, "error_code": 429, "description": "x", "parameters": {"retry_after": 1e400}},
        {"ok": True, "result": "not a list"},
    ],
    ids=["list parameters", "text retry_after", "infinite retry_after", "no list"],
)
async def test_an_odd_failure_is_backed_off_from(telegram, doc) -> None:
    url, offsets, answer = telegram
    status = int(doc.get("error_code", 200))
    answer.append(lambda _: (status, doc))
    ctx = await _poll(url)
    assert await _stored(ctx) == []
    assert offsets, "getUpdates was asked"
    assert await _offset(ctx) is None


async def test_an_update_the_models_cannot_read_is_kept_not_confirmed_and_lost(telegram) -> None:
    """A message without its chat: confirmed to Telegram with the next ones, so it must be kept
    (as an unreadable update), not skipped."""
    url, _, answer = telegram
    no_chat = {"message_id": 1, "date": 1, "text": "hi"}
    answer.append(
        _updates({"update_id": 10, "message": no_chat}, {"update_id": 11, "message": MESSAGE})
    )
    ctx = await _poll(url)
    stored = await _stored(ctx)
    assert [(u["update_id"], u["kind"]) for u in stored] == [(10, "other"), (11, "message")]
    assert stored[0]["raw_kind"] == "unreadable"
    assert await _offset(ctx) == 12


async def test_an_update_listed_twice_in_one_answer_is_stored_once(telegram) -> None:
    url, _, answer = telegram
    first = {"update_id": 5, "message": MESSAGE}
    answer.append(_updates(first, first, {"update_id": 6, "message": MESSAGE}))
    ctx = await _poll(url)
    assert [u["update_id"] for u in await _stored(ctx)] == [5, 6]
    assert await _offset(ctx) == 7


async def test_updates_no_replica_has_are_not_confirmed_to_telegram(
    telegram, redis_url: str, namespace: str, redis_client
) -> None:
    """Replicated durability, and no replica confirms (there is none here): the round is on the
    primary, but its offset must not reach Telegram, which would forget those updates; polling
    asks again from the same offset until a replica has them."""
    url, offsets, answer = telegram
    answer.append(_updates(*({"update_id": i, "message": MESSAGE} for i in (10, 11, 12))))
    ctx = await _poll(
        url,
        1.5,
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_DURABILITY="replicated",
        FLOODGATE_REPLICATION_TIMEOUT_MS=50,
    )
    try:
        assert offsets == [0], "asked once; never again with 13 while no replica has 10-12"
        assert [u["update_id"] for u in await _stored(ctx)] == [10, 11, 12], "on the primary"
    finally:
        await ctx.close()


def test_a_lease_no_longer_than_a_long_poll_is_refused() -> None:
    """Renewed once a round, a lease shorter than the long poll passes to another replica
    mid-call, and the two cut each other off with 409s."""
    with pytest.raises(ValidationError, match="FLOODGATE_POLL_LEASE_MS"):
        IngestSettings(FLOODGATE_POLL_TIMEOUT=50)
    assert IngestSettings(FLOODGATE_POLL_TIMEOUT=50, FLOODGATE_POLL_LEASE_MS=61_000)
