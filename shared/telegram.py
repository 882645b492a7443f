"""Bot API client: one pooled aiohttp session, orjson bodies, answers sorted into outcomes.

Tokens appear only in the request URL; nothing this module raises or returns contains the URL,
and every description taken from an answer is redacted, since an upstream (a proxy's error page,
a stand-in) may echo the request path with the token in it.
"""

from __future__ import annotations

import asyncio
import enum
import math
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from shared.redact import redact

HTML_SNIPPET = 120
SCANNED_BYTES = 64 * 1024  # of a page, redacted before the snippet is cut, so no token is halved
DESCRIPTION_CHARS = 1000
# the longest wait a 429 is taken to ask for: a value past it (or not a number) is no reason
# to hold a bot for longer than a day
MAX_RETRY_AFTER_S = 86_400.0


class Outcome(enum.Enum):
    """What the sender does with an answer."""

    OK = "ok"
    RETRY_AFTER = "retry_after"
    RETRYABLE = "retryable"
    MIGRATE = "migrate"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class ApiResult:
    """One Bot API call's result, whatever happened on the way."""

    outcome: Outcome
    status: int
    description: str = ""
    result: Any = None
    retry_after: float = 0.0
    migrate_to: int | None = None

    @property
    def status_class(self) -> str:
        """Label for metrics: 2xx, 429, 4xx, 5xx, timeout or network."""
        if self.status == 0:
            return self.description.split(":", 1)[0]
        if self.status == 429:
            return "429"
        return f"{self.status // 100}xx"

    @property
    def message_id(self) -> int | None:
        """``message_id`` of a sent message, if the result carries one."""
        if isinstance(self.result, dict):
            ident = self.result.get("message_id")
            return ident if isinstance(ident, int) else None
        return None


def new_session(connections: int = 256) -> aiohttp.ClientSession:
    """The process's one session: a bounded connection pool, JSON via orjson."""
    connector = aiohttp.TCPConnector(
        limit=connections, limit_per_host=connections, ttl_dns_cache=300
    )
    return aiohttp.ClientSession(
        connector=connector, json_serialize=lambda obj: orjson.dumps(obj).decode()
    )


class TelegramClient:
    """Calls ``{base}/bot{token}/{method}`` and classifies the answer."""

    def __init__(self, session: aiohttp.ClientSession, base: str, timeout: float) -> None:
        self._session = session
        self._base = base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def call(self, token: str, method: str, params: dict[str, Any]) -> ApiResult:
        """POST ``params`` as JSON; never raises for network trouble, returns it as an outcome."""
        url = f"{self._base}/bot{token}/{method}"
        try:
            async with self._session.post(
                url,
                data=orjson.dumps(params),
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
            ) as resp:
                body = await resp.read()
                return classify(resp.status, body)
        except TimeoutError:
            return ApiResult(Outcome.RETRYABLE, 0, "timeout: no answer in time")
        except aiohttp.ClientError as exc:
            return ApiResult(Outcome.RETRYABLE, 0, f"network: {type(exc).__name__}")
        except asyncio.CancelledError:
            raise


def classify(status: int, body: bytes) -> ApiResult:
    """Sort an HTTP answer into an outcome, parsing JSON where there is JSON."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        page = body[:SCANNED_BYTES].decode("utf-8", "replace")
        text = redact(page)[:HTML_SNIPPET].replace("\n", " ")
        outcome = Outcome.RETRYABLE if status >= 500 or status == 429 else Outcome.PERMANENT
        return ApiResult(outcome, status, f"HTTP {status}: {text}")
    if 200 <= status < 300 and doc.get("ok"):
        return ApiResult(Outcome.OK, status, result=doc.get("result"))
    description = redact(str(doc.get("description") or f"HTTP {status}"))[:DESCRIPTION_CHARS]
    params = doc.get("parameters")
    params = params if isinstance(params, dict) else {}
    if status == 429:
        return ApiResult(
            Outcome.RETRY_AFTER, status, description, retry_after=_retry_after(params, description)
        )
    if isinstance(params.get("migrate_to_chat_id"), int):
        return ApiResult(
            Outcome.MIGRATE, status, description, migrate_to=params["migrate_to_chat_id"]
        )
    if status >= 500:
        return ApiResult(Outcome.RETRYABLE, status, description)
    return ApiResult(Outcome.PERMANENT, status, description)


def _retry_after(params: dict[str, Any], description: str) -> float:
    """Seconds to wait, from ``parameters`` or else the description; rounded up."""
    value = params.get("retry_after")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        tail = description.rsplit(" ", 1)[-1]
        value = tail if tail.replace(".", "", 1).isdigit() else 1
    try:
        seconds = float(value)
    except ValueError:
        seconds = 1.0
    if not math.isfinite(seconds):  # inf or nan: wait as long as any hold may last
        seconds = MAX_RETRY_AFTER_S
    return float(min(MAX_RETRY_AFTER_S, max(1, math.ceil(seconds))))
