"""The figures of ``summary.json`` from a hand-made run, and the plan's seeding."""

from __future__ import annotations

from floodgate.loadtest.ledger import Ledger
from floodgate.loadtest.plan import build_plan
from floodgate.loadtest.sampler import Sample
from floodgate.loadtest.series import first_deliveries
from floodgate.loadtest.stack import Options, admin_key, pipeline_env
from floodgate.loadtest.summary import Run, summarize
from floodgate.observe import Delivery

T0 = 1_000_000.0
QUEUES = dict.fromkeys(("high", "normal", "low", "ingest", "deferred", "retry", "parked"), 0)


def _sample(t: float, queued: int, dead: int = 0) -> Sample:
    return Sample(t, QUEUES, queued, dead, {"429": 0}, {}, 0, {"x": 10.0}, {"x": 1 << 20})


def _run(deliveries: list[Delivery], samples: list[Sample], ledger: Ledger) -> dict:
    plan = build_plan(1, [1000], 5, 10)
    done = first_deliveries(ledger, deliveries, T0)
    return summarize(Run(plan, ledger, deliveries, done, samples, T0, 10, {}))


def test_lost_duplicates_and_latency_come_from_what_the_sandbox_received() -> None:
    ledger = Ledger()
    for n, priority in enumerate(["high", "normal", "normal", "low"]):
        ledger.accept(f"m{n}", T0 + n, priority, "regular")
    deliveries = [
        Delivery(1, T0 + 0.5, 1000, 1, "m0 text"),
        Delivery(2, T0 + 3.0, 1000, 2, "m1 text"),
        Delivery(3, T0 + 3.5, 1000, 2, "m1 text"),  # sent twice
        Delivery(4, T0 + 4.0, 1000, 3, "other 1"),  # not ours
    ]
    summary = _run(deliveries, [_sample(1, 3), _sample(9, 2, dead=1)], ledger)
    assert summary["submitted"] == 4
    assert summary["delivered"] == 2
    assert summary["dead"] == 1
    assert summary["lost"] == 1  # m3 neither delivered nor dead
    assert summary["duplicates"] == 1
    assert summary["latency_s"]["high"] == {"n": 1, "p50": 0.5, "p90": 0.5, "p99": 0.5, "max": 0.5}
    assert summary["latency_s"]["normal"]["max"] == 2.0
    assert summary["latency_s"]["low"]["n"] == 0
    assert summary["verdicts"]["nothing_lost"] is False
    assert summary["verdicts"]["no_duplicates"] is False
    assert summary["queue"]["final_depth"] == 2
    assert summary["verdicts"]["queue_stable"] is False
    assert summary["processes"]["x"] == {
        "cpu_percent_mean": 10.0,
        "cpu_percent_peak": 10.0,
        "rss_mb_peak": 1.0,
        "rss_mb_last": 1.0,
    }


def test_the_same_seed_plays_the_same_day() -> None:
    bots = list(range(1000, 1010))
    first, again = build_plan(5, bots, 40, 60), build_plan(5, bots, 40, 60)
    assert first.says == again.says
    assert first.sends == again.sends
    assert build_plan(6, bots, 40, 60).sends != first.sends
    assert first.polling_bots
    assert set(first.polling_bots) < set(bots)
    assert {s.source for s in first.sends} == {"notice", "regular", "broadcast", "burst"}
    assert any(s.mention for s in first.says)
    assert any(s.reply for s in first.says)


def test_processes_get_an_admin_key_of_at_least_32_characters(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FLOODGATE_ADMIN_KEY", raising=False)
    key = admin_key()
    assert len(key) >= 32
    assert admin_key() != key
    plan = build_plan(1, [1000, 1001], 5, 10)
    env = pipeline_env(plan, "http://127.0.0.1:1", Options(None, 1, 1, tmp_path), key)
    assert env["FLOODGATE_ADMIN_KEY"] == key
    monkeypatch.setenv("FLOODGATE_ADMIN_KEY", "x" * 40)
    assert admin_key() == "x" * 40
