"""Exact even when degraded, against the sandbox at Telegram's real limits: a sender that
claims hundreds of entries at once, and a Redis killed and restarted from its AOF mid-broadcast,
earn no 429 and send nothing into a hold; nothing is lost and every chat keeps its order."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter

import aiohttp
import pytest

from floodgate.demo import demo_token
from floodgate.observe import Received, out_of_order, sandbox_stats
from floodgate.workload import Planned, Workload
from tests.e2e.scenario import metric_sum, scrape, submit, wait_drained
from tests.helpers import AUTH, eventually
from tests.procs import Proc, RedisServer, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _env(sandbox: Proc, redis_url: str, bots: list[int], **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in bots),
        "FLOODGATE_NAMESPACE": f"deg{secrets.token_hex(4)}",
        "TELEGRAM_TIMEOUT": "3",
        "FLOODGATE_SENDER_CLAIM_IDLE_MS": "3000",
        **extra,
    }


def _broadcast(bots: list[int], chats: int, per_chat: int) -> Workload:
    """Every bot writes ``per_chat`` messages to each of its ``chats`` private chats, round by
    round, at normal priority."""
    work = Workload()
    for round_ in range(per_chat):
        for chat in range(chats):
            for bot in bots:
                tag = f"#b{round_}-{bot}-{chat}"
                work.messages.append(Planned(tag, bot, 50_000 + chat, "normal"))
    return work


async def _check(
    session: aiohttp.ClientSession, sandbox: Proc, work: Workload, received: Received
) -> tuple[dict, int]:
    """Nothing lost, order kept per chat; the sandbox's counters and the duplicates."""
    by_tag = received.by_tag()
    missing = [m.tag for m in work.messages if m.tag not in by_tag]
    assert not missing, f"{len(missing)} not delivered, e.g. {missing[:5]}"
    order = {m.tag: i for i, m in enumerate(work.messages)}
    bad = out_of_order(received.messages, order, lambda tag, d: (d.bot_id, d.chat_id))
    assert bad == 0, f"{bad} deliveries out of order"
    duplicates = sum(len(v) - 1 for v in by_tag.values())
    return await sandbox_stats(session, sandbox.url), duplicates


async def _switches(session: aiohttp.ClientSession, procs: list[Proc]) -> float:
    texts = [await scrape(session, p.url) for p in procs]
    return sum(metric_sum(text, "floodgate_limiter_fallback_total") for text in texts)


async def test_mass_claim_through_a_small_pool_is_no_outage(redis_url: str) -> None:
    """A sender holding 500 entries dies; another, with 16 Redis connections, claims them all
    at once and checks each one's record: the burst waits for connections, it does not look
    like an outage, and the windows hold at Telegram's limits."""
    bots = [701, 702, 703, 704, 705]
    sandbox = floodgate("sandbox", ["sandbox"], {})
    stuck = floodgate("stuck-api", ["sandbox", "--no-limits", "--latency-ms", "60000"], {})
    env = _env(sandbox, redis_url, bots)
    procs = [floodgate(n, ["run", n], env) for n in ("ingest", "scheduler", "stats")]
    ingest, _, stats = procs
    # The victim's calls hang at a Bot API that never answers, one at a time: it takes tokens
    # and holds every entry it read, unsettled, until it is killed.
    victim = floodgate(
        "victim",
        ["run", "sender"],
        {
            **env,
            "TELEGRAM_API_BASE": stuck.url,
            "TELEGRAM_TIMEOUT": "60",
            "TELEGRAM_RATE_LIMIT_WAIT": "60",
            "FLOODGATE_SENDER_CONCURRENCY": "1",
            "FLOODGATE_SENDER_PREFETCH": "1000",
            "FLOODGATE_CONSUMER": "victim",
        },
    )
    procs.append(victim)
    work = _broadcast(bots, 100, 1)
    try:
        for proc in [sandbox, stuck, *procs]:
            await proc.wait_healthy()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            await submit(session, ingest.url, work)

            async def victim_holds_all() -> bool:
                text = await scrape(session, victim.url)
                return metric_sum(text, "floodgate_sender_inflight") >= len(work.messages)

            await eventually(victim_holds_all, 30)
            victim.kill()
            heir = floodgate(
                "heir",
                ["run", "sender"],
                {**env, "FLOODGATE_CONSUMER": "heir", "FLOODGATE_REDIS_POOL_SIZE": "16"},
            )
            procs.append(heir)
            await heir.wait_healthy()
            received, _ = await wait_drained(
                session, stats.url, sandbox.url, len(work.messages), 60
            )
            claimed = metric_sum(await scrape(session, heir.url), "floodgate_sender_claimed_total")
            switches = await _switches(session, [heir])
            sb, duplicates = await _check(session, sandbox, work, received)
        print(
            f"\nmass claim: {claimed:.0f} claimed through 16 connections; fallback switches "
            f"{switches:.0f}, 429 {sb['429']}, sent into a hold {sb['sent_during_hold']}, "
            f"duplicates {duplicates}"
        )
        assert claimed >= len(work.messages)
        assert switches == 0, f"{switches} switches to the local limiter without an outage"
        assert sb["429"] == 0, sb
        assert sb["sent_during_hold"] == 0, sb
        assert "Too many connections" not in heir.log_path.read_text()
    finally:
        for proc in [*procs, sandbox, stuck]:
            proc.terminate()


async def test_redis_killed_mid_broadcast_and_restarted_from_its_aof() -> None:
    """Three senders broadcast 1,200 messages of three bots; Redis is killed (SIGKILL) and
    started again from its AOF 8 s later. The senders go on with what they hold, on their
    own, and come back: no 429, nothing into a hold, nothing lost, every chat in order."""
    redis_server = RedisServer(appendonly=True)
    redis_server.start()
    bots = [711, 712, 713]
    sandbox = floodgate("sandbox", ["sandbox"], {})
    env = _env(sandbox, redis_server.url, bots)
    procs = [floodgate(n, ["run", n], env) for n in ("ingest", "scheduler", "stats")]
    senders = [
        floodgate(f"sender-{i}", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": f"sender-{i}"})
        for i in range(3)
    ]
    ingest, _, stats = procs
    work = _broadcast(bots, 100, 4)
    try:
        for proc in [sandbox, *procs, *senders]:
            await proc.wait_healthy()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            began = time.monotonic()
            await submit(session, ingest.url, work)
            received = Received()

            async def under_way() -> bool:
                await received.refresh(session, sandbox.url)
                return len(received.messages) >= 300

            await eventually(under_way, 30)
            redis_server.stop(hard=True)
            await asyncio.sleep(8)
            redis_server.start()
            received, _ = await wait_drained(
                session, stats.url, sandbox.url, len(work.messages), 90
            )
            took = time.monotonic() - began
            switches = await _switches(session, senders)
            sb, duplicates = await _check(session, sandbox, work, received)
        per_bot = Counter(d.bot_id for d in received.messages)
        print(
            f"\nredis killed for 8 s mid-broadcast: {len(work.messages)} messages in {took:.1f} s "
            f"({dict(per_bot)}); fallback switches {switches:.0f}, 429 {sb['429']}, sent into a "
            f"hold {sb['sent_during_hold']}, duplicates {duplicates}"
        )
        assert switches > 0, "the senders limited on their own meanwhile"
        assert sb["429"] == 0, sb
        assert sb["sent_during_hold"] == 0, sb
    finally:
        for proc in [*procs, *senders, sandbox]:
            proc.terminate()
        redis_server.cleanup()
