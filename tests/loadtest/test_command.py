"""``floodgate loadtest`` end to end: a short run, its summary checked, its report's plots."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from floodgate.loadtest.report import PLOT_IDS
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.timeout(240)

SOURCES = {"notice", "regular", "broadcast", "burst", "answer"}


def _loadtest(report: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "floodgate.cli", "loadtest", "--bots", "3", "--users", "12"]
    argv += ["--duration", "6", "--seed", "3", "--report", str(report), *extra]
    env = {k: v for k, v in os.environ.items() if k != "FLOODGATE_ADMIN_KEY"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=200, env=env, check=False)


def _check_summary(summary: dict, processes: set[str]) -> None:
    telegram = summary["telegram_answers"]
    assert summary["lost"] == 0
    assert summary["duplicates"] == 0
    assert summary["http_429"] == 0 == telegram["429"]
    assert summary["submitted"] == sum(summary["accepted_by_priority"].values()) > 0
    # What the sandbox counted as delivered is exactly what the summary says was delivered.
    assert summary["delivered"] == summary["submitted"] == telegram["delivered"]
    assert summary["sandbox_received"] == telegram["delivered"]
    assert (
        sum(summary["latency_s"][p]["n"] for p in ("high", "normal", "low"))
        == (summary["delivered"])
    )
    assert set(summary["accepted_by_source"]) == SOURCES
    answers = summary["mention_answers"]
    assert answers["n"] == answers["asked"] > 0
    assert summary["latency_s"]["high"]["n"] >= answers["n"]
    assert summary["accepted_by_priority"]["low"] == summary["accepted_by_source"]["broadcast"]
    assert summary["peak_queue_depth"]["total"] > 0
    assert summary["queue"]["final_depth"] == 0
    assert summary["verdicts"] == {
        "nothing_lost": True,
        "no_duplicates": True,
        "no_429": True,
        "queue_stable": True,
    }
    assert processes <= set(summary["processes"])
    for figures in summary["processes"].values():
        assert figures["rss_mb_peak"] > 0


def _check_report(page: str) -> None:
    for plot in PLOT_IDS:
        figure = re.search(rf'<figure id="plot-{plot}"><svg.*?</svg>', page, re.DOTALL)
        assert figure, f"plot {plot} missing"
        assert "<path" in figure.group(0)
    for needle in ("lost", "duplicates", "HTTP 429 from Telegram", "queue stable"):
        assert needle in page
    assert page.count("PASS") == 4
    # Self-contained: nothing to fetch (the SVG namespace URI is a name, not a request).
    assert not re.search(r"""(src|href)=["']?https?:|url\(\s*["']?https?:|<script|<link""", page)


def test_embedded_run_writes_a_correct_summary_and_every_plot(tmp_path: Path) -> None:
    done = _loadtest(tmp_path / "report")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = orjson.loads((tmp_path / "report" / "summary.json").read_bytes())
    _check_summary(summary, {"sandbox", "loadtest + pipeline"})
    assert summary["config"]["backend"].startswith("embedded")
    _check_report((tmp_path / "report" / "report.html").read_text())
    assert "lost 0  duplicates 0  429s 0" in done.stdout


@pytest.mark.slow
def test_one_process_per_service_on_redis(tmp_path: Path) -> None:
    done = _loadtest(tmp_path / "report", "--redis-url", REDIS_URL, "--senders", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = orjson.loads((tmp_path / "report" / "summary.json").read_bytes())
    names = {"sandbox", "loadtest", "ingest", "scheduler", "sender-1", "sender-2", "stats"}
    _check_summary(summary, names | {"redis"})
    _check_report((tmp_path / "report" / "report.html").read_text())
    logs = {p.stem for p in (tmp_path / "report" / "logs").iterdir()}
    assert logs == names - {"loadtest"}
