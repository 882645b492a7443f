"""Starting and stopping a sandbox, in-process or from the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.api import add_api_routes
from sandbox.config import SandboxConfig
from sandbox.control import add_control_routes
from sandbox.state import STATE_KEY, SandboxState

# Uploads (sendPhoto with a file) may be large; Telegram takes up to 50 MB.
MAX_BODY_BYTES = 50 * 1024 * 1024
# Requests still running at shutdown (long polls, injected timeouts) are woken first;
# this only bounds a stuck one.
SHUTDOWN_TIMEOUT = 5.0
LISTEN_BACKLOG = 1024


async def _background(app: web.Application) -> AsyncIterator[None]:
    # One client session for every webhook push; the workers die with the app.
    state = app[STATE_KEY]
    async with aiohttp.ClientSession() as session:
        state.session = session
        try:
            yield
        finally:
            state.begin_close()
            await state.stop_workers()
            state.session = None


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].begin_close()


def create_app(state: SandboxState) -> web.Application:
    """The aiohttp application serving the Bot API and the control API over ``state``."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    add_api_routes(app)
    add_control_routes(app)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_on_shutdown)
    return app


class Sandbox:
    """A running sandbox: ``url`` is the TELEGRAM_API_BASE to use, ``state`` its insides."""

    def __init__(self, runner: web.AppRunner, state: SandboxState, url: str) -> None:
        self.url = url
        self.state = state
        self._runner = runner
        self._closed = False

    @property
    def config(self) -> SandboxConfig:
        """The active configuration."""
        return self.state.config

    def configure(self, **changes: Any) -> SandboxConfig:
        """Change config fields at runtime (validated); return the new config."""
        config = self.state.config.updated(changes)
        self.state.set_config(config)
        return config

    async def close(self) -> None:
        """Stop serving: wake waiting requests, close connections, stop webhook workers."""
        if self._closed:
            return
        self._closed = True
        self.state.begin_close()
        await self._runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def start_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Sandbox:
    """Serve a sandbox on ``host:port`` (port 0 picks a free one) and return it."""
    state = SandboxState(config or SandboxConfig())
    runner = web.AppRunner(create_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return Sandbox(runner, state, _url(host, bound_port))
