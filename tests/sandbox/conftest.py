"""Fixtures: real sandboxes on free ports and a real HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from sandbox.config import SandboxConfig
from sandbox.server import Sandbox, start_sandbox

BOT_ID = 123456
TOKEN = f"{BOT_ID}:AAE-sandbox_test_token_0123456789"
OTHER_BOT_ID = 777
OTHER_TOKEN = f"{OTHER_BOT_ID}:BBB-another_test_token_987654321"

StartSandbox = Callable[..., Awaitable[Sandbox]]


@dataclass
class Answer:
    """One HTTP answer of the sandbox."""

    status: int
    content_type: str
    raw: bytes

    @property
    def body(self) -> Any:
        return orjson.loads(self.raw)

    @property
    def result(self) -> Any:
        body = self.body
        assert body["ok"] is True, body
        return body["result"]


class BotClient:
    """Calls Bot API methods of one sandbox with one token."""

    def __init__(self, http: aiohttp.ClientSession, sandbox: Sandbox, token: str = TOKEN):
        self.http = http
        self.sandbox = sandbox
        self.token = token

    def url(self, method: str) -> str:
        return f"{self.sandbox.url}/bot{self.token}/{method}"

    async def call(self, method: str, **params: Any) -> Answer:
        """POST the params as JSON."""
        async with self.http.post(self.url(method), json=params) as response:
            return Answer(response.status, response.content_type, await response.read())

    async def send(self, chat_id: int, text: str = "hello", **params: Any) -> Answer:
        return await self.call("sendMessage", chat_id=chat_id, text=text, **params)

    async def control(self, path: str, body: Any = None) -> Any:
        """GET (no body) or POST (JSON body) a control endpoint; return its JSON."""
        url = f"{self.sandbox.url}/_sandbox/{path}"
        if body is None:
            async with self.http.get(url) as response:
                return await response.json()
        async with self.http.post(url, json=body) as response:
            return await response.json()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start() -> AsyncIterator[StartSandbox]:
    """Start sandboxes with config overrides; all are closed after the test."""
    started: list[Sandbox] = []

    async def _start(**changes: Any) -> Sandbox:
        sandbox = await start_sandbox(SandboxConfig(**changes))
        started.append(sandbox)
        return sandbox

    yield _start
    for sandbox in started:
        await sandbox.close()


@pytest.fixture
async def sandbox(start: StartSandbox) -> Sandbox:
    return await start()


@pytest.fixture
def bot(http: aiohttp.ClientSession, sandbox: Sandbox) -> BotClient:
    return BotClient(http, sandbox)
