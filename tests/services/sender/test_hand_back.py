"""Hand-back at shutdown: an entry still this sender's goes back to its queue; one another sender
claimed while this one was frozen stays theirs and is not queued a second time."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from prometheus_client import CollectorRegistry

from services.sender.app import SenderService
from services.sender.committer import Committer
from services.sender.decision import Decision, Verdict
from services.sender.metrics import SenderMetrics
from services.sender.settings import SenderSettings
from shared.broker import Commit
from shared.context import build_context
from shared.keys import SENDER_GROUP
from shared.models import Envelope, Priority
from shared.settings import CommonSettings
from tests.helpers import eventually
from tests.services.sender.harness import backend  # noqa: F401 - the fixture

ME, OTHER = "sender-frozen", "sender-other"


def _envelope(n: int) -> Envelope:
    return Envelope(
        id=f"m{n}",
        bot_id=1,
        method="sendMessage",
        params={"chat_id": 100 + n, "text": f"t{n}"},
        accepted_at=0,
        priority=Priority.NORMAL,
    )


async def test_a_claimed_entry_is_not_handed_back(backend, namespace) -> None:  # noqa: F811
    settings = CommonSettings(REDIS_URL=backend, FLOODGATE_NAMESPACE=namespace)
    ctx = replace(build_context(settings, allow_memory=True), consumer=ME)
    stream, broker = ctx.keys.send(Priority.NORMAL), ctx.broker
    try:
        await broker.ensure_group(stream, SENDER_GROUP)
        envs = [_envelope(0), _envelope(1)]
        await broker.commit(Commit(adds=[(stream, e.id, e.dumps(), "") for e in envs]))
        mine, claimed = await broker.read([stream], SENDER_GROUP, ME, 2, None)

        async def taken() -> bool:
            got = await broker.claim_stale(stream, SENDER_GROUP, OTHER, 50, 1)
            return [e.entry_id for e in got] == [mine.entry_id]

        await eventually(taken, timeout=5)
        mine, claimed = claimed, mine
        settled: list[Decision] = []
        metrics = SenderMetrics(CollectorRegistry())
        committer = Committer(ctx, metrics, settled.extend)
        for entry, env in ((mine, envs[1]), (claimed, envs[0])):
            committer.put(Decision(entry, env, Verdict.HAND_BACK))
        committer.finish()
        await committer.run()

        assert len(settled) == 2  # both leave this sender's hands
        assert metrics.lost._value.get() == 1
        # the claimed one is still the other sender's, and not queued again
        theirs = await broker.read_own_pending(stream, SENDER_GROUP, OTHER, 10)
        assert [e.entry_id for e in theirs] == [claimed.entry_id]
        assert await broker.read_own_pending(stream, SENDER_GROUP, ME, 10) == []
        fresh = await broker.read([stream], SENDER_GROUP, "sender-next", 10, None)
        assert [e.payload for e in fresh] == [envs[1].dumps()]
    finally:
        await ctx.close()


async def test_a_frozen_sender_does_not_queue_again_what_another_claimed(
    backend,  # noqa: F811
    namespace,
) -> None:
    """A retry decided before a freeze and committed after it, when another sender has claimed
    the entry meanwhile, must not put a copy in the retry set."""
    settings = CommonSettings(REDIS_URL=backend, FLOODGATE_NAMESPACE=namespace)
    ctx = replace(build_context(settings, allow_memory=True), consumer=ME)
    stream, broker = ctx.keys.send(Priority.NORMAL), ctx.broker
    sender = SenderService(ctx, SenderSettings())
    try:
        await broker.ensure_group(stream, SENDER_GROUP)
        envs = [_envelope(0), _envelope(1)]
        await broker.commit(Commit(adds=[(stream, e.id, e.dumps(), "") for e in envs]))
        first, second = await broker.read([stream], SENDER_GROUP, ME, 2, None)

        async def taken() -> bool:
            got = await broker.claim_stale(stream, SENDER_GROUP, OTHER, 50, 1)
            return [e.entry_id for e in got] == [first.entry_id]

        await eventually(taken, timeout=5)
        sender._touched_at -= 3600  # the heartbeat has not run for an hour: frozen
        committer = sender._committer
        for entry, env in ((first, envs[0]), (second, envs[1])):
            committer.put(Decision(entry, env, Verdict.RETRY, delay_ms=60_000, error="5xx"))
        committer.finish()
        await committer.run()

        assert sender._metrics.lost._value.get() == 1
        retry = ctx.keys.delayed("retry")
        assert (await broker.depths([], [retry]))[retry] == 1  # the second only, not a copy
        theirs = await broker.read_own_pending(stream, SENDER_GROUP, OTHER, 10)
        assert [e.entry_id for e in theirs] == [first.entry_id]  # still the other sender's
        record = await broker.get_record(ctx.keys.record(envs[1].id))
        assert record is not None
        assert record["status"] == "retrying"
        assert await broker.get_record(ctx.keys.record(envs[0].id)) is None
    finally:
        await ctx.close()


async def test_a_restarted_sender_claims_nothing_before_reading_its_own(
    backend,  # noqa: F811
    namespace,
) -> None:
    """A sender restarted under its old name finds its predecessor's entries pending to that
    name, idle past the claim time: it re-reads them first and claims only afterwards, so no
    entry is both claimed and re-read (dispatched twice, it was sent twice in the chaos test)."""
    settings = CommonSettings(REDIS_URL=backend, FLOODGATE_NAMESPACE=namespace)
    ctx = replace(build_context(settings, allow_memory=True), consumer=ME)
    stream, broker = ctx.keys.send(Priority.NORMAL), ctx.broker
    sender = SenderService(ctx, SenderSettings(FLOODGATE_SENDER_CLAIM_IDLE_MS=50))
    try:
        await broker.ensure_group(stream, SENDER_GROUP)
        envs = [_envelope(0), _envelope(1)]
        await broker.commit(Commit(adds=[(stream, e.id, e.dumps(), "") for e in envs]))
        assert len(await broker.read([stream], SENDER_GROUP, ME, 2, None)) == 2  # the old one
        await asyncio.sleep(0.1)  # past the claim idle time
        assert await sender._claim() is False
        pending = await broker.read_own_pending(stream, SENDER_GROUP, ME, 10)
        assert [e.deliveries for e in pending] == [2, 2], "claimed before they were re-read"
    finally:
        await ctx.close()
