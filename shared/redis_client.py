"""The Redis client for a ``REDIS_URL``: one server, a Redis Cluster, or a Sentinel-managed
primary, each with bounded timeouts and a bounded pool.

``redis://`` and ``rediss://`` (and ``unix://``) name one server; ``redis+cluster://h:p,h:p``
any nodes of a Redis Cluster, whose client routes each command by its keys' slot and follows
the cluster through failovers; ``redis+sentinel://h:p,h:p/service`` the Sentinels that know the
primary of ``service``, whose client asks them for the primary again after a failover. User and
password come from the URL. The cluster client stands in for the one-server client type:
floodgate sends it only commands whose keys share a slot, which it routes alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import unquote

import hiredis
import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

from shared.redact import redact_url

CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 10.0
HEALTH_CHECK_INTERVAL = 15
DEFAULT_PORT = 6379
SENTINEL_PORT = 26379
SCHEMES = "redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://"


class RedisUrlError(ValueError):
    """A ``REDIS_URL`` that names no usable topology; the text never shows its password."""


@dataclass(frozen=True, slots=True)
class _Parts:
    username: str | None
    password: str | None
    hosts: list[tuple[str, int]]
    path: str


def connect(url: str, *, max_connections: int = 64, pool_wait: float = 5.0) -> redis.Redis:
    """A pooled client with bounded timeouts, so an outage fails fast instead of hanging.

    On one server the pool blocks: a burst of calls larger than the pool (a sender claiming
    hundreds of entries at once) waits up to ``pool_wait`` seconds for a connection to come free
    instead of failing with "Too many connections", which would look exactly like an outage.
    The cluster client lets ``max_connections`` calls run at once and the others wait as long.
    The Sentinel client's pool does not wait: a call past ``max_connections`` fails at once
    with ``MaxConnectionsError``, which callers count as busy, not down.
    """
    scheme = url.partition("://")[0].lower()
    if scheme in {"redis", "rediss", "unix"}:
        return _single(url, max_connections, pool_wait)
    if scheme == "redis+cluster":
        return _cluster(_split(url, DEFAULT_PORT), max_connections, pool_wait)
    if scheme == "redis+sentinel":
        return _sentinel(url, _split(url, SENTINEL_PORT), max_connections)
    raise RedisUrlError(f"REDIS_URL {redact_url(url)!r}: unknown scheme, use one of {SCHEMES}")


class _HiredisPacking(AbstractConnection):
    """A connection that writes its commands with hiredis's packer, in C.

    redis-py (8.1) packs a command of its asyncio client in Python, joining the growing buffer
    again for every argument; its synchronous client uses hiredis's packer when hiredis is
    installed. A commit of a batch of messages is one script call with hundreds of arguments:
    packing was 15% of the sender's CPU, and ingest and the scheduler spent a third of theirs
    on it (bench/pipeline_throughput.py). The bytes are the same: byte buffers are copied to
    bytes first, as redis-py's synchronous client does (hiredis would send a strided view's
    whole buffer), and a connection set to encode text other than as strict UTF-8 (an
    ``encoding`` in the URL) keeps redis-py's packer; anything else hiredis does not take (a
    value Redis cannot be sent) goes through redis-py's packer too, which raises its errors."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):  # "CONFIG GET" is two words, sent apart
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        encoder = self.encoder
        if encoder.encoding not in UTF8 or encoder.encoding_errors != "strict":
            return super().pack_command(*args)
        if any(isinstance(arg, BUFFERS) for arg in args):
            args = tuple(bytes(arg) if isinstance(arg, BUFFERS) else arg for arg in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


UTF8 = frozenset({"utf-8", "utf8", "UTF-8", "UTF8"})
BUFFERS = (bytearray, memoryview)
_C = TypeVar("_C", bound=AbstractConnection)
_PACKING: dict[type, type] = {}


def _packing(cls: type[_C]) -> type[_C]:
    """``cls`` (a plain, TLS, Unix socket or Sentinel-managed connection) packing with hiredis."""
    if issubclass(cls, _HiredisPacking):
        return cls
    if cls not in _PACKING:
        _PACKING[cls] = type(f"Hiredis{cls.__name__}", (_HiredisPacking, cls), {})
    return cast(type[_C], _PACKING[cls])


def _single(url: str, max_connections: int, pool_wait: float) -> redis.Redis:
    try:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_wait,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry_on_timeout=False,
        )
    except ValueError as exc:
        raise RedisUrlError(f"REDIS_URL {redact_url(url)!r}: {_reason(exc, url)}") from None
    pool.connection_class = _packing(pool.connection_class)
    return redis.Redis.from_pool(pool)


def _cluster(parts: _Parts, max_connections: int, pool_wait: float) -> redis.Redis:
    client = _Cluster(
        pool_wait,
        startup_nodes=[ClusterNode(host, port) for host, port in parts.hosts],
        username=parts.username,
        password=parts.password,
        max_connections=max_connections,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        # No call is sent again by the client after a connection error or a timeout (redis-py
        # would, up to ten times, with backoff): a reply lost on its way may be of a call
        # Redis ran, and only the caller knows whether running it twice is safe (a read
        # would leave entries pending unseen, an append would add the message twice). The
        # error reaches the caller at once, which re-reads, re-commits through its once-mark
        # or answers 503; the next call loads the slot map anew.
        retry=Retry(NoBackoff(), 0),
    )
    return cast(redis.Redis, client)


class _Cluster(RedisCluster):
    """The cluster client, which learns the slot map before it routes any command, and lets
    at most ``max_connections`` calls run at once, the others waiting up to ``pool_wait``.

    redis-py (8.1) picks a command's routing policy before it loads the slot map: commands
    sent at once by a fresh client went to a default node, and the reload that followed closed
    connections under the others ("handler is closed", seen with ten pollers starting). Its
    per-node pools do not wait: past their size a call fails at once, and a sender claiming
    hundreds of entries through a small pool saw connections used by two calls at a time.
    Waiting here, as the one-server pool does, keeps every node's pool within its size."""

    def __init__(self, pool_wait: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # the nodes made so far (the startup nodes), and those learnt from the slot map later
        for node in self.startup_nodes:
            node.connection_class = _packing(node.connection_class)
        self.connection_kwargs["connection_class"] = _packing(
            self.connection_kwargs["connection_class"]
        )
        self._pool_wait = pool_wait
        self._room = asyncio.Semaphore(kwargs["max_connections"])

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()  # a no-op once the slot map is known
        async with self.turn():
            with _closed_is_a_connection_error():
                return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # which refuses it
        return _Pipeline(self, transaction)  # type: ignore[abstract]  # as redis-py makes its own

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the client's places for a call (a call made while holding one, as a
        pipeline resending a moved command, takes no second place)."""
        if _HOLDING.get():
            yield
            return
        try:
            await asyncio.wait_for(self._room.acquire(), self._pool_wait)
        except TimeoutError:
            raise MaxConnectionsError(f"no connection free within {self._pool_wait} s") from None
        token = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(token)
            self._room.release()


class _Pipeline(ClusterPipeline):
    """A cluster pipeline that runs in one of its client's places."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = cast(_Cluster, self.cluster_client)
        await client.initialize()
        # On a connection error the slot map is loaded anew before the next call: redis-py
        # does so only when it sends a failed pipeline again, which this client never does,
        # and a pipeline to a slot whose primary was replaced would go to the dead one for good
        try:
            async with client.turn():
                with _closed_is_a_connection_error():
                    replies = await super().execute(raise_on_error, allow_redirections)
        except RedisCluster.ERRORS_ALLOW_RETRY:
            client._initialize = True
            raise
        if not raise_on_error and any(
            isinstance(r, RedisCluster.ERRORS_ALLOW_RETRY) for r in replies
        ):
            client._initialize = True
        return replies


@contextlib.contextmanager
def _closed_is_a_connection_error() -> Iterator[None]:
    """When a primary dies, the cluster client reloads its slot map and closes the connections
    of every node, also under calls being written on them: redis-py (8.1) then fails with
    ``AttributeError: 'NoneType' object has no attribute 'writelines'`` or ``RuntimeError:
    ... the handler is closed`` (seen with senders committing to every primary during a
    failover). Those say the connection went away: raised as such, so callers retry them as an
    outage instead of failing as a bug."""
    try:
        yield
    except AttributeError as exc:
        text = str(exc)
        if "'NoneType' object has no attribute" not in text or not any(
            name in text for name in ("write", "read", "drain")
        ):
            raise
        raise RedisConnectionError(f"connection closed under the call: {exc}") from exc
    except RuntimeError as exc:
        if "closed" not in str(exc):
            raise
        raise RedisConnectionError(f"connection closed under the call: {exc}") from exc


_HOLDING: ContextVar[bool] = ContextVar("floodgate_redis_place", default=False)


def _sentinel(url: str, parts: _Parts, max_connections: int) -> redis.Redis:
    service = parts.path.strip("/")
    if not service or "/" in service:
        raise RedisUrlError(
            f"REDIS_URL {redact_url(url)!r}: name the Sentinel service after the hosts"
            " (redis+sentinel://host:port[,host:port]/service_name)"
        )
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
    }
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        parts.hosts,
        sentinel_kwargs=timeouts,
        username=parts.username,
        password=parts.password,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        max_connections=max_connections,
        **timeouts,
    )
    primary = sentinel.master_for(service, redis_class=_SentinelPrimary)
    pool = primary.connection_pool
    pool.connection_class = _packing(pool.connection_class)
    return cast(redis.Redis, primary)


class _SentinelPrimary(redis.Redis):
    """The primary's client, which also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager: Any = getattr(self.connection_pool, "sentinel_manager", None)
        for client in getattr(manager, "sentinels", ()):
            await client.aclose()


def _split(url: str, default_port: int) -> _Parts:
    """User, password, hosts and path of a URL whose authority may list several hosts."""
    rest = url.partition("://")[2]
    authority, slash, path = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = [_host(url, item, n, default_port) for n, item in enumerate(hostlist.split(","), 1)]
    return _Parts(username, password, hosts, slash + path)


def _host(url: str, item: str, n: int, default_port: int) -> tuple[str, int]:
    where = f"REDIS_URL {redact_url(url)!r}: host {n}"
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise RedisUrlError(f"{where} is empty (expected host:port[,host:port...])")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"{where} has port {port!r}, not a number from 1 to 65535")
    return host, int(port)


def _reason(exc: ValueError, url: str) -> str:
    """The parser's complaint, without any part of the URL it may have quoted."""
    text = str(exc)
    rest = url.partition("://")[2]
    return text.replace(rest, "<url>") if rest and rest in text else redact_url(text)
