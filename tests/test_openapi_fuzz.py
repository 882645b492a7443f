"""The OpenAPI description, and a property-based fuzz run against live ingest and stats on Redis.

Schemathesis sends what the description allows (and what it does not) to every operation: no
answer may be a 5xx, every answer must match the description, and afterwards the pipeline must
still deliver a normal message.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from shared.openapi import document
from tests.conftest import REDIS_URL
from tests.helpers import TOKENS, eventually
from tests.procs import Proc, floodgate

pytestmark = pytest.mark.timeout(180)

EXAMPLES = 25  # per operation: the whole run stays well under a minute
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    negative_data_rejection,
]

schema = schemathesis.openapi.from_dict(document(["ingest", "stats"]))
# The pipeline's admin key and the header that carries it: the one place credentials are set.
ADMIN_KEY = f"fuzz-{secrets.token_hex(24)}"


@pytest.fixture(scope="module")
def api_headers() -> dict[str, str]:
    """Headers every fuzzed request carries."""
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def pipeline() -> Iterator[tuple[Proc, Proc]]:
    """The sandbox and ``floodgate run all`` over the test Redis, for the whole module."""
    sandbox = floodgate("sandbox", ["sandbox", "--seed", "5"], {})
    env = {
        "REDIS_URL": REDIS_URL,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(TOKENS.values()),
        "FLOODGATE_NAMESPACE": f"fuzz{secrets.token_hex(4)}",
        "FLOODGATE_ADMIN_KEY": ADMIN_KEY,
    }
    proc = floodgate("all", ["run", "all"], env)
    try:
        asyncio.run(sandbox.wait_healthy())
        asyncio.run(proc.wait_healthy())
        yield sandbox, proc
    finally:
        proc.terminate()
        sandbox.terminate()


def test_description_is_served_and_names_every_route(pipeline) -> None:
    _, proc = pipeline
    assert requests.get(f"{proc.url}/openapi.json", timeout=10).status_code == 401
    key = {"Authorization": f"Bearer {ADMIN_KEY}"}
    served = requests.get(f"{proc.url}/openapi.json", headers=key, timeout=10).json()
    assert served["openapi"].startswith("3.1")
    assert served == document(["ingest", "scheduler", "sender", "stats"])
    ops = {(m, p) for p, item in served["paths"].items() for m in item}
    for expected in [
        ("post", "/v1/messages"),
        ("post", "/v1/messages/batch"),
        ("get", "/v1/messages/{id}"),
        ("post", "/webhook/telegram/{bot_id}"),
        ("get", "/queue/stats"),
        ("get", "/v1/dlq"),
        ("post", "/v1/dlq/replay"),
        ("delete", "/v1/dlq/{id}"),
    ]:
        assert expected in ops


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_fuzz(case: Any, pipeline, api_headers) -> None:
    _, proc = pipeline
    case.call_and_validate(base_url=proc.url, headers=api_headers, checks=CHECKS, timeout=30)


def test_a_normal_message_is_delivered_after_the_fuzz(pipeline, api_headers) -> None:
    sandbox, proc = pipeline
    chat = 770_001
    answer = requests.post(
        f"{proc.url}/v1/messages",
        json={"bot_id": 111, "chat_id": chat, "text": "still alive"},
        headers=api_headers,
        timeout=10,
    )
    assert answer.status_code == 202, answer.text

    async def delivered() -> bool:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{sandbox.url}/_sandbox/messages", params={"chat_id": str(chat)}) as resp,
        ):
            doc = await resp.json()
        return any(m.get("text") == "still alive" for m in doc["messages"])

    asyncio.run(eventually(delivered, 30, step=0.2))
