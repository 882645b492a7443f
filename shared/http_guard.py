"""HTTP server limits that no client can outlast: headers in bounded time, a connection cap.

aiohttp waits for a request's headers as long as its keep-alive timeout, counted from the
moment the connection opens, so that timeout bounds a client that connects and sends nothing
(or half a header line): every runner is built with ``keepalive_timeout`` set to
``FLOODGATE_HTTP_HEADER_TIMEOUT``. Bodies are read under their own deadline where they are read
(``services.ingest.body``). The cap answers one connection too many with a 503 and closes it,
before any of its bytes are parsed.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

BUSY_BODY = b'{"error": "too many connections, retry later"}'
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(BUSY_BODY)).encode() + b"\r\n\r\n" + BUSY_BODY
)


class _Busy(asyncio.Protocol):
    """Answers 503 and hangs up: the connection over the cap."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(BUSY_ANSWER)
        transport.close()


class GuardedSite(web.TCPSite):
    """A TCP site that serves at most ``max_connections`` connections at once."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, max_connections: int) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self._max_connections = max_connections

    async def start(self) -> None:
        """Listen, handing every connection over the cap to ``_Busy``."""
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        cap = self._max_connections

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= cap:
                return _Busy()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
