"""The whole pipeline as real processes against the sandbox: 600 messages for 3 bots."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import aiohttp
import pytest

from floodgate.demo import demo_token
from floodgate.workload import build_workload
from tests.e2e.scenario import check_exactly_once, metric_sum, scrape, submit, wait_drained
from tests.helpers import AUTH, eventually
from tests.procs import Proc, floodgate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

BOTS = [501, 502, 503]


def _env(sandbox: Proc, redis_url: str | None) -> dict[str, str]:
    env = {
        "TELEGRAM_API_BASE": sandbox.url,
        "FLOODGATE_BOTS": ",".join(demo_token(b) for b in BOTS),
        "FLOODGATE_NAMESPACE": f"e2e{secrets.token_hex(4)}",
        "FLOODGATE_SENDER_CLAIM_IDLE_MS": "30000",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@pytest.fixture
def sandbox() -> Iterator[Proc]:
    proc = floodgate("sandbox", ["sandbox", "--seed", "3"], {})
    yield proc
    proc.terminate()


def _workload():
    # 3 bots x 100 private chats x 2 messages: each bot sends 200, ~7 s at 30/s
    return build_workload(seed=11, bots=BOTS, private_chats=100, per_chat=2, groups=0, per_group=0)


@pytest.mark.parametrize("partitions", ["1", "4"])
async def test_separate_processes_over_one_redis(
    sandbox: Proc, redis_url: str, partitions: str
) -> None:
    """With 4 partitions the 3 bots' messages lie in partitions 1, 2 and 3, which the two
    senders share out (s1 reads 0 and 2, s2 reads 1 and 3)."""
    env = {**_env(sandbox, redis_url), "FLOODGATE_PARTITIONS": partitions}
    procs = {
        "ingest": floodgate("ingest", ["run", "ingest"], env),
        "scheduler": floodgate("scheduler", ["run", "scheduler"], env),
        "sender-1": floodgate("sender-1", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": "s1"}),
        "sender-2": floodgate("sender-2", ["run", "sender"], {**env, "FLOODGATE_CONSUMER": "s2"}),
        "stats": floodgate("stats", ["run", "stats"], env),
    }
    try:
        await sandbox.wait_healthy()
        for proc in procs.values():
            await proc.wait_healthy()
        workload = _workload()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            ids = await submit(session, procs["ingest"].url, workload)
            received, stats = await wait_drained(
                session, procs["stats"].url, sandbox.url, len(ids), 90
            )
            await check_exactly_once(session, sandbox.url, received, ids)
            assert stats["stats"]["dlq"] == 0
            accepted = metric_sum(
                await scrape(session, procs["ingest"].url), "floodgate_messages_accepted_total"
            )
            sent = [
                metric_sum(await scrape(session, procs[n].url), "floodgate_messages_sent_total")
                for n in ("sender-1", "sender-2")
            ]
            assert accepted == 600
            assert sum(sent) == 600
            assert all(s > 0 for s in sent), f"both senders should share the work: {sent}"
            responses = metric_sum(
                await scrape(session, procs["sender-1"].url), "floodgate_telegram_responses_total"
            )
            assert responses >= sent[0]
            stats_metrics = await scrape(session, procs["stats"].url)
            assert 'floodgate_queue_depth{queue="normal"}' in stats_metrics

            async def gauges_zero() -> bool:
                text = await scrape(session, procs["stats"].url)
                return metric_sum(text, "floodgate_queued_messages") == 0

            await eventually(gauges_zero, 5)
            async with session.get(
                f"{procs['ingest'].url}/v1/messages/{next(iter(ids.values()))}"
            ) as resp:
                doc = await resp.json()
            assert doc["status"] == "sent"
            assert isinstance(doc["telegram_message_id"], int)
    finally:
        codes = {name: proc.terminate() for name, proc in procs.items()}
    assert codes == dict.fromkeys(procs, 0), "every service exits 0 on SIGTERM"
    for proc in procs.values():
        log = proc.log_path.read_text()
        assert '"msg": "stopped"' in log or '"msg":"stopped"' in log, proc.name
        for bot in BOTS:
            assert demo_token(bot).split(":")[1] not in log, f"{proc.name} logged a token"


async def test_run_all_on_embedded_backend(sandbox: Proc) -> None:
    env = _env(sandbox, None)
    proc = floodgate("all", ["run", "all"], dict(env.items()))
    try:
        await sandbox.wait_healthy()
        await proc.wait_healthy()
        workload = _workload()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            async with session.get(f"{proc.url}/readyz") as resp:
                assert (await resp.json())["backend"] == "memory"
            ids = await submit(session, proc.url, workload)
            received, _stats = await wait_drained(session, proc.url, sandbox.url, len(ids), 90)
            await check_exactly_once(session, sandbox.url, received, ids)
            text = await scrape(session, proc.url)
            assert metric_sum(text, "floodgate_messages_accepted_total") == 600
            assert metric_sum(text, "floodgate_messages_sent_total") == 600
    finally:
        code = proc.terminate()
    assert code == 0
