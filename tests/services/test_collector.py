"""A service process sets Python's cycle collector for a long-lived service
(``floodgate.launch.tune_collector``) and shows it in its own series: a real ingest process
accepts 4,000 messages with at most a few young collections and no full one. With Python's
defaults the same work made 74 young collections and a full one over the whole heap; such
passes cost the sender 18% of its CPU in bench/pipeline_throughput.py.
"""

from __future__ import annotations

import aiohttp

from tests.e2e.scenario import submit_bodies
from tests.helpers import AUTH, TOKENS, eventually
from tests.procs import floodgate
from tests.services.test_metrics_start import samples

BOT = 111
MESSAGES = 4000
BATCH = 500


async def test_ingest_accepts_thousands_with_few_collections(
    redis_url: str, namespace: str
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "FLOODGATE_NAMESPACE": namespace,
        "FLOODGATE_BOTS": TOKENS[BOT],
    }
    ingest = floodgate("ingest", ["run", "ingest"], env)
    try:
        await ingest.wait_healthy()
        async with aiohttp.ClientSession(headers=AUTH) as session:
            before = await _collections(session, ingest.url)
            for start in range(0, MESSAGES, BATCH):
                bodies = [
                    {"bot_id": BOT, "chat_id": 10_000 + i, "text": f"m{i} " + "x" * 60}
                    for i in range(start, start + BATCH)
                ]
                await submit_bodies(session, ingest.url, bodies)
            after = await _collections(session, ingest.url)
            async with session.get(f"{ingest.url}/metrics") as resp:
                text = await resp.text()
    finally:
        ingest.terminate()
    # the process's own series are there for a dashboard's CPU and memory by process
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
        assert [v for _, v in samples(text, name)], f"no {name}"
    young = after["0"] - before["0"]
    assert young <= 10, f"{young} young collections for {MESSAGES} messages: {before} -> {after}"
    assert after["2"] == before["2"], f"a full collection during the work: {before} -> {after}"


async def _collections(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The collector's passes so far, by generation, from the process's /metrics."""
    found: dict[str, float] = {}

    async def scraped() -> bool:
        async with session.get(f"{url}/metrics") as resp:
            text = await resp.text()
        for labels, value in samples(text, "python_gc_collections_total"):
            found[labels["generation"]] = value
        return set(found) == {"0", "1", "2"}

    await eventually(scraped, 10)
    return found
