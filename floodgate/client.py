"""A small async client for floodgate's ``/v1`` API, for applications written in Python.

    async with Floodgate("http://127.0.0.1:8080", api_key="...") as fg:
        accepted = await fg.send(123, chat_id=42, text="hello")
        status = await fg.wait(accepted.id)          # sent or dead
        results = await fg.send_batch([{"bot_id": 123, "chat_id": 43, "text": "hi"}])

Every message gets an idempotency key unless the caller gives one, and a request that fails on
the way (no connection, a timeout, a 503) is sent again with the same keys: floodgate answers a
repeated key with the first message's id, so retrying never sends a message twice.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

RETRIES = 3
FIRST_BACKOFF_S = 0.2
SETTLED = frozenset({"sent", "dead"})


class FloodgateError(Exception):
    """An error answer: its HTTP status, floodgate's sentence and the fields at fault."""

    def __init__(self, status: int, error: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(f"{status}: {error}")
        self.status = status
        self.error = error
        self.errors = errors or []


@dataclass(frozen=True, slots=True)
class Accepted:
    """A queued message: from here floodgate does not lose it."""

    id: str
    priority: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class MessageStatus:
    """Where a message is (``GET /v1/messages/{id}``)."""

    id: str
    status: str
    priority: str | None
    attempts: int
    telegram_message_id: int | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def settled(self) -> bool:
        """Sent or dead: nothing more will happen to it."""
        return self.status in SETTLED


class Floodgate:
    """Client of one floodgate ingest; one pooled session, closed with the client."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = RETRIES,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._own_session = session is None
        self._session = session

    async def __aenter__(self) -> Floodgate:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if the client made it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        bot_id: int,
        chat_id: int | str | None = None,
        text: str | None = None,
        *,
        method: str | None = None,
        params: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Accepted:
        """Queue a text for a chat, or any Bot API ``method`` with its ``params``; ``options``
        are the request's other fields (priority, kind, idempotency_key, send_at, ...)."""
        body = _message(bot_id, chat_id, text, method, params, options)
        doc = await self._request("POST", "/v1/messages", body)
        return _accepted(doc)

    async def send_batch(
        self, messages: Sequence[Mapping[str, Any]]
    ) -> list[Accepted | FloodgateError]:
        """Queue up to 1000 messages (request bodies); one result per message, in order: the
        message accepted, or the error that refused it alone. Messages refused alone with a
        503 (their part of the queue was away while the rest went in) are sent again, with
        the same keys, like a whole request that failed."""
        bodies = [{"idempotency_key": _new_key(), **m} for m in messages]
        results: dict[int, Accepted | FloodgateError] = {}
        pending, backoff = list(range(len(bodies))), FIRST_BACKOFF_S
        for attempt in range(self._retries + 1):
            batch = {"messages": [bodies[i] for i in pending]}
            doc = await self._request("POST", "/v1/messages/batch", batch)
            again = []
            for index, item in zip(pending, doc["results"], strict=True):
                if item.get("status") != "rejected":
                    results[index] = _accepted(item)
                elif item["code"] == 503 and attempt < self._retries:
                    again.append(index)
                else:
                    results[index] = FloodgateError(item["code"], item["error"], item.get("errors"))
            if not again:
                break
            pending = again
            await asyncio.sleep(backoff)
            backoff *= 2
        return [results[i] for i in range(len(bodies))]

    async def status(self, message_id: str) -> MessageStatus:
        """Where the message is now."""
        doc = await self._request("GET", f"/v1/messages/{_path_segment(message_id)}")
        return MessageStatus(
            id=doc["id"],
            status=doc["status"],
            priority=doc.get("priority"),
            attempts=doc.get("attempts", 0),
            telegram_message_id=doc.get("telegram_message_id"),
            error=doc.get("error"),
            raw=doc,
        )

    async def wait(self, message_id: str, within: float = 60.0, poll: float = 0.2) -> MessageStatus:
        """The message's status once it is sent or dead; ``TimeoutError`` after ``within`` s."""
        async with asyncio.timeout(within):
            while True:
                status = await self.status(message_id)
                if status.settled:
                    return status
                await asyncio.sleep(poll)

    wait_delivered = wait

    async def _request(self, verb: str, path: str, body: Any = None) -> dict[str, Any]:
        """The answer's JSON; retried with the same body while it fails on the way."""
        backoff = FIRST_BACKOFF_S
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                async with self._client().request(
                    verb, f"{self._base}{path}", json=body, headers=self._headers
                ) as resp:
                    doc = _json_object(resp.status, await resp.read())
                    if resp.status == 503 and not last:
                        raise _Retry
                    if resp.status >= 400:
                        raise FloodgateError(
                            resp.status, str(doc.get("error")), doc.get("errors") or []
                        )
                    result: dict[str, Any] = doc
                    return result
            except (_Retry, aiohttp.ClientConnectionError, TimeoutError):
                if last:
                    raise
            await asyncio.sleep(backoff)
            backoff *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session


class _Retry(Exception):
    """A 503: nothing was accepted, the same request may be sent again."""


def _json_object(status: int, body: bytes) -> dict[str, Any]:
    """The answer as a JSON object; a ``FloodgateError`` for anything else (an HTML page of a
    proxy in between, a truncated body)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        return doc
    text = " ".join(body.decode("utf-8", "replace").split())[:200]
    if status >= 400:
        return {"error": f"HTTP {status}, not JSON: {text}"}
    raise FloodgateError(status, f"the answer is not a JSON object: {text}")


def _path_segment(message_id: str) -> str:
    """The id as one path segment, so that no id reaches another route."""
    if message_id in {"", ".", ".."}:
        raise ValueError(f"not a message id: {message_id!r}")
    return quote(message_id, safe="")


def _new_key() -> str:
    return f"fgc-{secrets.token_hex(16)}"


def _message(
    bot_id: int,
    chat_id: int | str | None,
    text: str | None,
    method: str | None,
    params: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"bot_id": bot_id, "idempotency_key": _new_key(), **options}
    if method is not None:
        body |= {"method": method, "params": dict(params or {})}
    else:
        body |= {"chat_id": chat_id, "text": text}
    return body


def _accepted(doc: Mapping[str, Any]) -> Accepted:
    return Accepted(doc["id"], doc["priority"], bool(doc.get("duplicate", False)))
