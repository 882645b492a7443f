"""floodgate.client against a real running pipeline (``floodgate run all`` over Redis) and the
sandbox, both as processes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from floodgate.client import Accepted, Floodgate, FloodgateError
from floodgate.client_updates import Updates
from floodgate.observe import Received
from tests.conftest import REDIS_URL
from tests.helpers import ADMIN_KEY, TOKENS
from tests.procs import Proc, floodgate

pytestmark = pytest.mark.timeout(120)

BOT = 111
MISSING_CHAT = 999_002


@pytest.fixture(scope="module")
def pipeline() -> Iterator[tuple[Proc, Proc]]:
    sandbox = floodgate("sandbox", ["sandbox", "--missing-chats", str(MISSING_CHAT)], {})
    env = {
        "REDIS_URL": REDIS_URL,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(TOKENS.values()),
        "FLOODGATE_NAMESPACE": f"client{secrets.token_hex(4)}",
    }
    proc = floodgate("all", ["run", "all"], env)
    try:
        asyncio.run(sandbox.wait_healthy())
        asyncio.run(proc.wait_healthy())
        yield sandbox, proc
    finally:
        proc.terminate()
        sandbox.terminate()


@pytest.fixture
async def client(pipeline: tuple[Proc, Proc]) -> AsyncIterator[Floodgate]:
    async with Floodgate(pipeline[1].url, ADMIN_KEY) as fg:
        yield fg


async def _copies(sandbox: Proc, text: str) -> int:
    received = Received()
    async with aiohttp.ClientSession() as session:
        await received.refresh(session, sandbox.url)
    return sum(1 for m in received.messages if m.text == text)


async def test_send_and_wait_until_sent(client: Floodgate, pipeline: tuple[Proc, Proc]) -> None:
    text = f"sdk {secrets.token_hex(4)}"
    accepted = await client.send(BOT, chat_id=71_001, text=text, priority="high")
    assert accepted.priority == "high"
    status = await client.wait_delivered(accepted.id, within=30)
    assert status.status == "sent"
    assert isinstance(status.telegram_message_id, int)
    assert await _copies(pipeline[0], text) == 1


async def test_a_method_with_params_and_a_dead_message(client: Floodgate) -> None:
    accepted = await client.send(
        BOT, method="sendMessage", params={"chat_id": MISSING_CHAT, "text": "nobody"}
    )
    status = await client.wait(accepted.id, within=30)
    assert status.status == "dead"
    assert status.error is not None
    assert "chat not found" in status.error


async def test_batch_refuses_one_and_accepts_the_rest(client: Floodgate) -> None:
    results = await client.send_batch(
        [
            {"bot_id": BOT, "chat_id": 71_002, "text": "a"},
            {"bot_id": BOT, "chat_id": 71_003},
            {"bot_id": BOT, "chat_id": 71_004, "text": "c"},
        ]
    )
    assert isinstance(results[0], Accepted)
    assert isinstance(results[2], Accepted)
    refused = results[1]
    assert isinstance(refused, FloodgateError)
    assert refused.status == 422
    assert "text" in refused.error


async def test_an_idempotency_key_given_twice_is_one_message(client: Floodgate) -> None:
    key = secrets.token_hex(8)
    first = await client.send(BOT, chat_id=71_005, text="once", idempotency_key=key)
    second = await client.send(BOT, chat_id=71_005, text="once", idempotency_key=key)
    assert second.id == first.id
    assert second.duplicate


async def test_errors_carry_status_and_reason(pipeline: tuple[Proc, Proc]) -> None:
    async with Floodgate(pipeline[1].url, ADMIN_KEY) as fg:
        with pytest.raises(FloodgateError) as unknown:
            await fg.status("no-such-message")
        assert unknown.value.status == 404
        with pytest.raises(FloodgateError) as invalid:
            await fg.send(BOT, chat_id=71_006, text="")
        assert invalid.value.status == 422
    async with Floodgate(pipeline[1].url, "not-a-key-" + "x" * 32) as fg:
        with pytest.raises(FloodgateError) as refused:
            await fg.send(BOT, chat_id=71_006, text="hi")
        assert refused.value.status == 401


async def test_a_lost_answer_is_retried_without_sending_twice(
    pipeline: tuple[Proc, Proc],
) -> None:
    """A proxy between client and ingest forwards the first request but answers it 503, as if
    the answer had been lost: the client sends it again, and the message goes out once."""
    sandbox, ingest = pipeline
    forwarded: list[bytes] = []

    async def proxy(request: web.Request) -> web.Response:
        body = await request.read()
        forwarded.append(body)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{ingest.url}{request.path}", data=body, headers=dict(request.headers)
            ) as resp,
        ):
            answer = await resp.read()
        if len(forwarded) == 1:
            return web.json_response({"error": "lost on the way", "errors": []}, status=503)
        return web.Response(body=answer, status=resp.status, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/messages", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    text = f"retried {secrets.token_hex(4)}"
    try:
        async with Floodgate(f"http://127.0.0.1:{port}", ADMIN_KEY) as fg:
            accepted = await fg.send(BOT, chat_id=71_007, text=text)
        assert len(forwarded) == 2
        assert accepted.duplicate
        async with Floodgate(ingest.url, ADMIN_KEY) as fg:
            assert (await fg.wait(accepted.id, within=30)).status == "sent"
        assert await _copies(sandbox, text) == 1
    finally:
        await runner.cleanup()


async def test_updates_in_a_consumer_group_with_acknowledgement(redis_client, namespace) -> None:
    stream = f"{namespace}:updates"
    for n in range(5):
        await redis_client.xadd(stream, {"d": orjson.dumps({"update_id": n, "bot_id": BOT})})
    async with Updates(REDIS_URL, "app", namespace=namespace, consumer="c1", batch=3) as updates:
        first = await anext(aiter(updates))
        assert [i.update["update_id"] for i in first] == [0, 1, 2]
        await updates.ack(first[:2])  # update 2 is left unacknowledged: the consumer "crashes"
    async with Updates(REDIS_URL, "app", namespace=namespace, consumer="c1", batch=3) as updates:
        again = await updates.read()  # its own pending entry first
        assert [i.update["update_id"] for i in again] == [2]
        rest = await updates.read()
        assert [i.update["update_id"] for i in rest] == [3, 4]
        await updates.ack([*again, *rest])
        assert await updates.read() == []  # nothing new within block_ms
    async with Updates(REDIS_URL, "other", namespace=namespace, batch=10) as other:
        assert len(await other.read()) == 5  # another group reads every update itself


async def test_unreadable_updates_are_skipped_and_acknowledged(redis_client, namespace) -> None:
    stream = f"{namespace}:updates"
    await redis_client.xadd(stream, {"x": b"no d"})
    await redis_client.xadd(stream, {"d": b"not json"})
    await redis_client.xadd(stream, {"d": b"[1, 2]"})
    await redis_client.xadd(stream, {"d": orjson.dumps({"update_id": 7, "bot_id": BOT})})
    async with Updates(REDIS_URL, "app", namespace=namespace, consumer="c1") as updates:
        batch = await updates.read()
        assert [i.update["update_id"] for i in batch] == [7]
        await updates.ack(batch)
    pending = await redis_client.xpending(stream, "app")
    assert pending["pending"] == 0
    async with Updates(REDIS_URL, "app", namespace=namespace, consumer="c1") as updates:
        assert await updates.read() == []  # after a restart: nothing read again, no crash


async def test_a_long_pending_list_is_read_page_by_page(redis_client, namespace) -> None:
    stream = f"{namespace}:updates"
    for n in range(5):
        await redis_client.xadd(stream, {"d": orjson.dumps({"update_id": n, "bot_id": BOT})})
    async with Updates(REDIS_URL, "app", namespace=namespace, consumer="c1", batch=2) as updates:
        seen = [await updates.read() for _ in range(3)]  # read, never acknowledged: "crash"
        assert [[i.update["update_id"] for i in b] for b in seen] == [[0, 1], [2, 3], [4]]
    async with Updates(REDIS_URL, "app", namespace=namespace, consumer="c1", batch=2) as updates:
        pages = [[i.update["update_id"] for i in await updates.read()] for _ in range(4)]
    assert pages == [[0, 1], [2, 3], [4], []]


async def test_an_answer_that_is_not_json_is_a_floodgate_error() -> None:
    async def page(request: web.Request) -> web.Response:
        status = 200 if request.path.startswith("/v1/messages/ok") else 502
        return web.Response(text="<html>proxy says no</html>", status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with Floodgate(f"http://127.0.0.1:{port}", ADMIN_KEY) as fg:
            with pytest.raises(FloodgateError) as bad_gateway:
                await fg.status("abc")
            assert bad_gateway.value.status == 502
            assert "proxy says no" in str(bad_gateway.value)
            with pytest.raises(FloodgateError) as not_json:
                await fg.status("ok")
            assert not_json.value.status == 200
    finally:
        await runner.cleanup()


async def test_a_message_id_reaches_no_other_route(pipeline: tuple[Proc, Proc]) -> None:
    async with Floodgate(pipeline[1].url, ADMIN_KEY) as fg:
        for message_id in ("../../queue/stats", "a/../../../queue/stats", "x?y=1", "x#y"):
            with pytest.raises(FloodgateError) as unknown:
                await fg.status(message_id)
            assert unknown.value.status == 404, message_id
        for message_id in ("..", ".", ""):
            with pytest.raises(ValueError, match="not a message id"):
                await fg.status(message_id)
