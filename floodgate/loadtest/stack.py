"""The sandbox at Telegram's limits and the whole pipeline: embedded in this process, or one
process per service on the Redis given."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import redis.asyncio as redis

from floodgate.demo import demo_token
from floodgate.launch import SERVICE_NAMES, build_services
from floodgate.loadtest.plan import Plan
from floodgate.loadtest.procs import Child, free_port
from shared import redis_broker
from shared.broker import Broker
from shared.context import build_context, dlq_keys
from shared.keys import Keys
from shared.runtime import serve
from shared.settings import CommonSettings
from shared.webhooks import secrets_for

ADMIN_KEY_BYTES = 32  # 43 characters once encoded
READY_WITHIN_S = 30


@dataclass(frozen=True, slots=True)
class Options:
    """How to run: the flags of ``floodgate loadtest`` that shape the stack."""

    redis_url: str | None
    senders: int
    seed: int
    log_dir: Path


@dataclass
class Stack:
    """What is running: URLs, the children, and the updates stream for the application."""

    sandbox: Child
    ingest_url: str
    stats_url: str
    keys: Keys
    broker: Broker
    admin_key: str
    backend: str
    children: list[Child] = field(default_factory=list)
    redis: redis.Redis | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Sent on every API and stats call."""
        return {"Authorization": f"Bearer {self.admin_key}"}


def pipeline_env(plan: Plan, sandbox_url: str, opts: Options, admin_key: str) -> dict[str, str]:
    """Environment of every pipeline process."""
    env = {
        "TELEGRAM_API_BASE": sandbox_url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in plan.bots),
        "FLOODGATE_BOT_USERNAMES": ",".join(f"{b}=bot{b}" for b in plan.bots),
        "FLOODGATE_POLLING_BOTS": ",".join(map(str, plan.polling_bots)),
        "FLOODGATE_POLL_TIMEOUT": "5",
        "FLOODGATE_NAMESPACE": f"lt{secrets.token_hex(4)}",
        "FLOODGATE_ADMIN_KEY": admin_key,
        "FLOODGATE_SENDER_REPLICAS": str(opts.senders),
        "FLOODGATE_LOG_LEVEL": "WARNING",
        "FLOODGATE_LOG_FORMAT": "json",
    }
    if opts.redis_url:
        env["REDIS_URL"] = opts.redis_url
    return env


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """The embedded services read their settings from this process's environment."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def register_webhooks(
    session: aiohttp.ClientSession, plan: Plan, sandbox_url: str, ingest_url: str
) -> None:
    """setWebhook for every bot that does not poll, with the secret ingest expects."""
    tokens = {b: demo_token(b) for b in plan.bots}
    secret = secrets_for(tokens, {})
    for bot in set(plan.bots) - set(plan.polling_bots):
        body = {"url": f"{ingest_url}/webhook/telegram/{bot}", "secret_token": secret[bot]}
        async with session.post(f"{sandbox_url}/bot{tokens[bot]}/setWebhook", json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"setWebhook for bot {bot}: {resp.status} {await resp.text()}")


@contextlib.asynccontextmanager
async def _embedded(env: dict[str, str], sandbox: Child, key: str) -> AsyncIterator[Stack]:
    with _environ(env):
        settings = CommonSettings(**cast(Any, env))
        ctx = build_context(settings, allow_memory=True)
        stop, port = asyncio.Event(), free_port()
        server = asyncio.create_task(
            serve(ctx, build_services(ctx, SERVICE_NAMES), "127.0.0.1", port, stop)
        )
        url = f"http://127.0.0.1:{port}"
        try:
            yield Stack(sandbox, url, url, ctx.keys, ctx.broker, key, "embedded (run all)")
        finally:
            stop.set()
            await server


def _service_children(env: dict[str, str], opts: Options) -> list[Child]:
    names = ["ingest", "scheduler", *[f"sender-{i + 1}" for i in range(opts.senders)], "stats"]
    return [
        Child(name, ["run", name.split("-")[0]], {**env, "FLOODGATE_CONSUMER": name}, opts.log_dir)
        for name in names
    ]


@contextlib.asynccontextmanager
async def _on_redis(
    env: dict[str, str], sandbox: Child, key: str, opts: Options
) -> AsyncIterator[Stack]:
    assert opts.redis_url
    children = _service_children(env, opts)
    client = redis_broker.connect(opts.redis_url)
    keys = Keys(env["FLOODGATE_NAMESPACE"])
    broker = redis_broker.RedisBroker(client, dlq_keys(keys))
    stack = Stack(
        sandbox, children[0].url, children[-1].url, keys, broker, key, "redis", children, client
    )
    try:
        yield stack
    finally:
        for child in children:
            child.stop()
        await _forget_namespace(client, keys.namespace)
        await client.aclose()


async def _forget_namespace(client: redis.Redis, namespace: str) -> None:
    """Delete every key the run left in Redis."""
    batch: list[bytes] = []
    async for name in client.scan_iter(match=f"{namespace}:*", count=1000):
        batch.append(name)
        if len(batch) >= 1000:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


def admin_key() -> str:
    """``FLOODGATE_ADMIN_KEY`` if the operator set one, else a fresh key for this run."""
    given = CommonSettings().admin_key
    return given.get_secret_value() if given else secrets.token_urlsafe(ADMIN_KEY_BYTES)


@contextlib.asynccontextmanager
async def running(plan: Plan, opts: Options) -> AsyncIterator[Stack]:
    """Start the sandbox and the pipeline, wait until they answer, register the webhooks."""
    key = admin_key()
    sandbox = Child("sandbox", ["sandbox", "--seed", str(opts.seed)], {}, opts.log_dir)
    env = pipeline_env(plan, sandbox.url, opts, key)
    make = _on_redis(env, sandbox, key, opts) if opts.redis_url else _embedded(env, sandbox, key)
    try:
        async with make as stack, aiohttp.ClientSession() as session:
            for child in [sandbox, *stack.children]:
                await child.wait_healthy(session)
            await _wait_ready(session, stack)
            await register_webhooks(session, plan, sandbox.url, stack.ingest_url)
            yield stack
    finally:
        sandbox.stop()


async def _wait_ready(session: aiohttp.ClientSession, stack: Stack) -> None:
    for url in {stack.ingest_url, stack.stats_url}:
        for _ in range(int(READY_WITHIN_S * 10)):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"{url} did not become ready in {READY_WITHIN_S} s")
