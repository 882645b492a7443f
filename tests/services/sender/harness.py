"""The whole pipeline in this process against an in-process sandbox, driven over HTTP.

Shared by the sender, stats and ``floodgate dlq`` tests: every service runs on one port as
``floodgate run all`` does, on Redis or on the embedded backend.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import aiohttp
import pytest
import redis.asyncio as redis

from floodgate.launch import SERVICE_NAMES, build_services
from sandbox import SandboxConfig, start_sandbox
from sandbox.server import Sandbox
from shared.context import Context, build_context
from shared.keys import SENDER_GROUP
from shared.models import Envelope, Priority
from shared.runtime import serve
from shared.settings import CommonSettings
from tests.helpers import ADMIN_KEY, AUTH, TOKENS, eventually, free_port

BOT = 111
# Short blocking reads so that a test's pipeline stops in a fraction of a second.
SERVICE_ENV = {
    "FLOODGATE_SENDER_BLOCK_MS": "100",
    "FLOODGATE_SCHEDULER_BLOCK_MS": "100",
    "FLOODGATE_PROMOTE_INTERVAL": "0.02",
    "FLOODGATE_STATS_INTERVAL": "0.1",
}
FAST_TELEGRAM = {
    "TELEGRAM_BASE_DELAY": 0.01,
    "TELEGRAM_MAX_DELAY": 0.05,
    "TELEGRAM_MAX_RETRIES": 2,
    "TELEGRAM_TIMEOUT": 1,
}
ZERO_STATS = {
    "high": 0,
    "normal": 0,
    "low": 0,
    "ingest": 0,
    "scheduled": 0,
    "deferred": 0,
    "retry": 0,
    "dlq": 0,
}


@pytest.fixture(params=["redis", "memory"])
def backend(request: pytest.FixtureRequest, redis_url: str, redis_client: Any) -> str | None:
    """REDIS_URL for the pipeline: the test Redis, or None for the embedded backend.

    ``redis_client`` is requested for its teardown, which deletes the test's namespace.
    """
    return redis_url if request.param == "redis" else None


@dataclass
class Pipeline:
    """A running pipeline: its base URL, the sandbox it talks to and an HTTP session."""

    url: str
    sandbox: Sandbox
    ctx: Context
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """One request to the pipeline; the status and the JSON answer."""
        async with self.session.request(method, self.url + path, **kwargs) as resp:
            return resp.status, await resp.json()

    async def submit(self, body: dict[str, Any]) -> str:
        """POST /v1/messages, expecting 202; the message id."""
        status, doc = await self.call("POST", "/v1/messages", json=body)
        assert status == 202, doc
        assert doc["status"] == "queued"
        ident: str = doc["id"]
        return ident

    async def status(self, message_id: str) -> dict[str, Any]:
        """GET /v1/messages/{id}."""
        code, doc = await self.call("GET", f"/v1/messages/{message_id}")
        assert code == 200, doc
        result: dict[str, Any] = doc
        return result

    async def wait_status(
        self, message_id: str, wanted: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll the message's status until it is ``wanted``; its last status document."""
        last: dict[str, Any] = {}

        async def reached() -> bool:
            last.clear()
            last.update(await self.status(message_id))
            return last["status"] == wanted

        try:
            await eventually(reached, timeout, step=0.02)
        except AssertionError as exc:
            raise AssertionError(f"{message_id} not {wanted} in {timeout} s: {last}") from exc
        return last

    async def stats(self) -> dict[str, Any]:
        """GET /queue/stats."""
        code, doc = await self.call("GET", "/queue/stats")
        assert code == 200, doc
        result: dict[str, Any] = doc
        return result

    async def wait_idle(self, timeout: float = 5.0) -> dict[str, Any]:
        """Poll /queue/stats until nothing is queued; the last answer."""
        last: dict[str, Any] = {}

        async def idle() -> bool:
            last.update(await self.stats())
            return last["total_queued"] == 0

        await eventually(idle, timeout, step=0.02)
        return last

    async def metrics(self) -> str:
        """GET /metrics as text."""
        async with self.session.get(f"{self.url}/metrics") as resp:
            assert resp.status == 200
            return await resp.text()

    def delivered(self, chat_id: int) -> list[Any]:
        """What the sandbox delivered to one chat, in order."""
        return self.sandbox.state.messages.select(chat_id=chat_id)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` in Prometheus text whose labels include ``labels``. A
    metric with no sample at all fails the test: a renamed or unregistered metric must not
    read as 0."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:{{([^}}]*)}})? ([0-9.e+-]+)$", re.MULTILINE)
    samples = pattern.findall(text)
    assert samples, f"no metric {name} in the scrape"
    for label_text, value in samples:
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def pipeline_context(
    redis_url: str | None, namespace: str, telegram_url: str, **settings: Any
) -> Context:
    """The context of a pipeline process talking to ``telegram_url``, with fast retries."""
    common = CommonSettings(
        REDIS_URL=redis_url,
        FLOODGATE_NAMESPACE=namespace,
        FLOODGATE_BOTS=",".join(TOKENS.values()),
        TELEGRAM_API_BASE=telegram_url,
        FLOODGATE_ADMIN_KEY=ADMIN_KEY,
        **{**FAST_TELEGRAM, **settings},
    )
    return build_context(common, allow_memory=True)


@asynccontextmanager
async def serving_pipeline(
    ctx: Context, sb: Sandbox, names: Sequence[str] = SERVICE_NAMES
) -> AsyncIterator[Pipeline]:
    """Serve the named services over ``ctx`` on a free port; stop them in order on exit."""
    with mock.patch.dict(os.environ, SERVICE_ENV):
        services = build_services(ctx, names)
    stop, port = asyncio.Event(), free_port()
    server = asyncio.create_task(serve(ctx, services, "127.0.0.1", port, stop))
    try:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            pipeline = Pipeline(f"http://127.0.0.1:{port}", sb, ctx, session)
            await _wait_ready(pipeline, server)
            yield pipeline
    finally:
        stop.set()
        await server


@asynccontextmanager
async def running(
    redis_url: str | None,
    namespace: str,
    sandbox: SandboxConfig | None = None,
    names: Sequence[str] = SERVICE_NAMES,
    **settings: Any,
) -> AsyncIterator[Pipeline]:
    """A sandbox plus the named services (all four by default); stopped on exit."""
    sb = await start_sandbox(sandbox or SandboxConfig())
    try:
        ctx = pipeline_context(redis_url, namespace, sb.url, **settings)
        async with serving_pipeline(ctx, sb, names) as pipeline:
            yield pipeline
    finally:
        await sb.close()


async def _wait_ready(pipeline: Pipeline, server: asyncio.Task[int]) -> None:
    async def ready() -> bool:
        if server.done():
            server.result()
            raise AssertionError("the pipeline stopped before it was ready")
        try:
            code, _ = await pipeline.call("GET", "/readyz")
        except aiohttp.ClientError:
            return False
        return code == 200

    await eventually(ready, 5, step=0.02)


def text_envelope(ident: str, chat_id: int, text: str, bot: int = BOT) -> Envelope:
    """A sendMessage of normal priority, as the scheduler puts it in a send stream."""
    return Envelope(
        id=ident,
        bot_id=bot,
        method="sendMessage",
        params={"chat_id": chat_id, "text": text},
        accepted_at=time.time(),
        priority=Priority.NORMAL,
    )


async def reading(client: redis.Redis, stream: str) -> None:
    """Wait until the sender reads ``stream`` (its consumer group is made)."""

    async def made() -> bool:
        groups = await client.xinfo_groups(stream) if await client.exists(stream) else []
        return any(g["name"] == SENDER_GROUP.encode() for g in groups)

    await eventually(made, 10)
