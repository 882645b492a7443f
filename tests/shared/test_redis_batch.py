"""ScriptBatcher: calls coalesced into pipelines, against the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as redis

from shared import redis_batch
from shared.redis_batch import ScriptBatcher

ECHO = "return ARGV[1]"


async def test_calls_made_together_share_a_pipeline(redis_client: redis.Redis) -> None:
    batcher = ScriptBatcher(redis_client, ECHO)
    answers = await asyncio.gather(*(batcher.call([], [str(i)]) for i in range(50)))
    assert [int(a) for a in answers] == list(range(50))


async def test_a_failed_pipeline_fails_its_calls_and_the_next_still_go(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One round trip breaks (not an outage: say, a closed transport): its callers get the
    error, and calls queued behind it are sent without waiting for a new caller."""
    real = redis_batch._pipeline
    rounds = 0

    async def breaks_once(client: redis.Redis, sha: str, calls: Sequence[Any]) -> list[Any]:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("the transport is closed")
        return await real(client, sha, calls)

    monkeypatch.setattr(redis_batch, "_pipeline", breaks_once)
    monkeypatch.setattr(redis_batch, "MAX_BATCH", 1)
    monkeypatch.setattr(redis_batch, "MAX_IN_FLIGHT", 1)
    batcher = ScriptBatcher(redis_client, ECHO)
    first = asyncio.ensure_future(batcher.call([], ["a"]))
    second = asyncio.ensure_future(batcher.call([], ["b"]))
    with pytest.raises(RuntimeError, match="transport"):
        await first
    assert await asyncio.wait_for(second, 2) in (b"b", "b")
