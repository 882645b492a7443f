"""Sending at the limit with three sender replicas: no 429, order kept, nothing lost; on one
Redis, and on a Redis Cluster (the limiter's keys of each bot in their own slot, spread over the
primaries, the pipeline's in the `{pipeline}` slot)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import aiohttp
import pytest

from floodgate.demo import demo_token
from floodgate.observe import out_of_order
from floodgate.workload import build_workload
from tests.e2e.scenario import check_exactly_once, submit, wait_drained
from tests.helpers import AUTH
from tests.procs import Proc, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BOTS = [601, 602, 603]
SCALE = (
    "0.1"  # every window a tenth: 30 per 0.1 s per bot, 1 per 0.1 s per chat, 20 per 6 s per group
)


@pytest.fixture
def scaled_sandbox() -> Iterator[Proc]:
    proc = floodgate("sandbox", ["sandbox", "--seed", "5", "--window-scale", SCALE], {})
    yield proc
    proc.terminate()


def _env(sandbox: Proc, redis_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_NAMESPACE": f"lim{secrets.token_hex(4)}",
        "FLOODGATE_WINDOW_SCALE": SCALE,
        # no margin: tokens count from the end of their calls, whatever the jitter on 2 cores
        "FLOODGATE_LIMIT_MARGIN": "0",
    }


@pytest.mark.parametrize("topology", ["one", "cluster"])
async def test_three_replicas_mixed_workload_at_the_limit(
    scaled_sandbox: Proc, redis_url: str, topology: str, request: pytest.FixtureRequest
) -> None:
    if topology == "cluster":
        redis_url = request.getfixturevalue("redis_cluster").url
    env = _env(scaled_sandbox, redis_url)
    procs = [
        floodgate("ingest", ["run", "ingest"], env),
        floodgate("scheduler", ["run", "scheduler"], env),
        floodgate("stats", ["run", "stats"], env),
        *(
            floodgate(f"sender-{i}", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": f"s{i}"})
            for i in range(3)
        ),
    ]
    # per bot: 40 private chats x 4 messages and bursts of 45 to each of 2 groups; all priorities
    workload = build_workload(
        seed=21, bots=BOTS, private_chats=40, per_chat=4, groups=2, per_group=45
    )
    try:
        await scaled_sandbox.wait_healthy()
        for proc in procs:
            await proc.wait_healthy()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            ids = await submit(session, procs[0].url, workload)
            received, _ = await wait_drained(
                session, procs[2].url, scaled_sandbox.url, len(ids), 150
            )
            await check_exactly_once(session, scaled_sandbox.url, received, ids)
            async with session.get(f"{scaled_sandbox.url}/_sandbox/stats") as resp:
                stats = await resp.json()
        assert stats["limit_violations"] == 0
        order = {m.tag: i for i, m in enumerate(workload.messages)}
        prio = {m.tag: m.priority for m in workload.messages}
        bad = out_of_order(
            received.messages, order, lambda tag, d: (d.bot_id, d.chat_id, prio[tag])
        )
        assert bad == 0, f"{bad} deliveries out of order within (bot, chat, priority)"
    finally:
        codes = [p.terminate() for p in procs]
    assert codes == [0] * len(procs)
