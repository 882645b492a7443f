"""Helpers for tests: serving an app on a free port, free ports, polling."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import socket
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from shared.context import Context
from shared.http_guard import GuardedSite
from shared.runtime import Service, build_app

# The admin key every test process and in-process app accepts (FLOODGATE_ADMIN_KEY), and the
# header a test client sends with it.
ADMIN_KEY = "test-admin-key-0123456789abcdefghijklmnopqrstuv"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}

TOKENS = {
    111: "111:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    222: "222:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
    333: "333:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
}


def _port_range(text: str) -> tuple[int, int]:
    """``low-high`` from FLOODGATE_TEST_PORTS."""
    low, _, high = text.partition("-")
    return int(low), int(high)


# Below Linux's ephemeral range (32768-60999 by default): a port the kernel picks for bind(0)
# can be taken by an outgoing connection before the server process binds it. Two test runs
# on one machine at once each take a range of their own (FLOODGATE_TEST_PORTS=12000-19999):
# a port one run has chosen and not yet bound looks free to the other.
PORTS = _port_range(os.environ.get("FLOODGATE_TEST_PORTS", "20000-32000"))
_handed: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never handed out before in this session."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randint(*PORTS)
        if port in _handed:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port
    raise RuntimeError(f"no free port in {PORTS}")


@asynccontextmanager
async def serving(ctx: Context, services: list[Service]) -> AsyncIterator[str]:
    """Serve the services' routes on a free port; yields the base URL."""
    s = ctx.settings
    runner = web.AppRunner(
        build_app(ctx, services, asyncio.Event()),
        access_log=None,
        keepalive_timeout=s.http_header_timeout,  # also bounds the wait for headers
    )
    await runner.setup()
    port = free_port()
    await GuardedSite(runner, "127.0.0.1", port, s.http_max_connections).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.1
) -> None:
    """Wait until ``check`` is true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


RAW_GIVE_UP_S = 20.0  # far longer than the tests' short HTTP limits, far shorter than aiohttp's


async def raw_http(url: str, parts: list[bytes], pause: float = 0.3) -> bytes:
    """Send ``parts`` as separate TCP writes ``pause`` apart; return the whole answer (what
    comes until the server closes)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause)  # a slow client, not a synchronisation
            writer.write(part)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), RAW_GIVE_UP_S)
    finally:
        writer.close()


def collect_dead_sockets() -> None:
    """Collect, quietly, the connections a cluster client keeps to a primary the test killed:
    redis-py drops a node replaced in a failover without closing a connection that was in use
    when it failed (the socket is dead already), and the ResourceWarning of its collection
    would otherwise fail whichever later test the garbage collector happens to run in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
