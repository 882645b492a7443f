"""A fresh service process exposes, at 0, every labelled counter series an alert reads.

prometheus-client creates a labelled series on its first use, at the value of that use: an
alert on increase() would then never see the first 429 or the first dead letter of a pod. The
services create the label values they know at start; this checks it against the selectors of
deploy/prometheus/alerts.yml, on real processes that have done no work yet.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.helpers import TOKENS, eventually, free_port
from tests.procs import Proc, floodgate

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
SERVICES = ("ingest", "scheduler", "sender", "stats")
SELECTOR = re.compile(r"(floodgate_\w+_total)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def alert_selectors() -> dict[str, list[dict[str, str]]]:
    """Counter name -> the label sets its alert selectors require (equality matchers and the
    alternatives of ``a|b`` regex matchers; negative matchers select no particular series)."""
    doc = yaml.safe_load(ALERTS.read_text())
    wanted: dict[str, list[dict[str, str]]] = {}
    for group in doc["groups"]:
        for rule in group["rules"]:
            for name, inside in SELECTOR.findall(rule["expr"]):
                sets: list[dict[str, str]] = [{}]
                for label, op, value in MATCHER.findall(inside or ""):
                    if op == "=":
                        sets = [{**s, label: value} for s in sets]
                    elif op == "=~":
                        sets = [{**s, label: alt} for s in sets for alt in value.split("|")]
                wanted.setdefault(name, []).extend(sets)
    return wanted


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Label sets and values of the samples of ``name`` in a Prometheus text scrape."""
    pattern = re.compile(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", re.MULTILINE)
    return [
        (dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value))
        for labels, value in pattern.findall(text)
    ]


@pytest.fixture
async def scrapes(redis_url: str) -> AsyncIterator[dict[str, str]]:
    """/metrics of each service, each a fresh process on the test Redis that has done no
    work (its Telegram base answers nothing: no message is queued, no call is made)."""
    env = {
        "REDIS_URL": redis_url,
        "FLOODGATE_NAMESPACE": f"metrics-{secrets.token_hex(4)}",
        "FLOODGATE_BOTS": ",".join(TOKENS.values()),
        "TELEGRAM_API_BASE": f"http://127.0.0.1:{free_port()}",
    }
    procs: dict[str, Proc] = {name: floodgate(name, ["run", name], env) for name in SERVICES}
    try:
        for proc in procs.values():
            await proc.wait_healthy()
        texts: dict[str, str] = {}
        async with aiohttp.ClientSession() as session:
            for name, proc in procs.items():

                async def loops_registered(name: str = name, proc: Proc = proc) -> bool:
                    async with session.get(f"{proc.url}/metrics") as resp:
                        texts[name] = await resp.text()
                    return "_loop_errors_total{" in texts[name] or name == "ingest"

                await eventually(loops_registered, 10)
        yield texts
    finally:
        for proc in procs.values():
            proc.terminate()


async def test_every_series_an_alert_reads_exists_at_zero(scrapes: dict[str, str]) -> None:
    wanted = alert_selectors()
    assert "floodgate_telegram_responses_total" in wanted  # the parse found the selectors
    missing: list[str] = []
    for name, label_sets in wanted.items():
        owners = [s for s, text in scrapes.items() if f"# TYPE {name} " in text]
        assert owners, f"no service registers {name}, which an alert reads"
        for owner in owners:
            found = samples(scrapes[owner], name)
            for labels in label_sets:
                match = [v for got, v in found if labels.items() <= got.items()]
                if not match:
                    missing.append(f"{owner}: {name}{labels}")
                else:
                    assert match == [0.0] * len(match), (owner, name, labels, match)
    assert missing == [], f"series an alert reads are not created at start: {missing}"


# The first event of each kind an alert is about, named explicitly (the test above would pass
# vacuously if an alert stopped selecting the series).
FIRST_EVENTS = [
    ("sender", "floodgate_telegram_responses_total", {"status_class": "429"}),
    ("sender", "floodgate_messages_dead_total", {"reason": "retries_exhausted"}),
    ("sender", "floodgate_limiter_holds_total", {"scope": "bot"}),
    ("sender", "floodgate_messages_sent_total", {"priority": "high"}),
    ("ingest", "floodgate_messages_rejected_total", {"reason": "unavailable"}),
    ("ingest", "floodgate_updates_received_total", {"outcome": "refused"}),
    ("scheduler", "floodgate_scheduler_routed_total", {"priority": "low"}),
]


async def test_known_label_values_start_at_zero(scrapes: dict[str, str]) -> None:
    for service, name, labels in FIRST_EVENTS:
        match = [v for got, v in samples(scrapes[service], name) if labels.items() <= got.items()]
        assert match == [0.0], f"{service} exposes {name}{labels} as {match}"
