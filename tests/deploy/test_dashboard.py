"""The Grafana dashboard: valid JSON, real metric names, units that say what is counted."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "floodgate-dashboard.json"
# what the exporters and Prometheus provide, and prometheus-client's process and collector series
# (tests/services/test_collector.py checks that a service exposes those)
FOREIGN = re.compile(r"^(redis_\w+|up|process_\w+|python_gc_\w+)$")
KEYWORDS = {"and", "or", "unless", "bool", "on", "ignoring", "group_left", "group_right", "offset"}


def panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def metric_names(expr: str) -> set[str]:
    """Identifiers of a PromQL expression that name metrics: not functions, labels, keywords."""
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)  # label lists
    words = re.findall(r"\b[a-zA-Z_]\w*\b(?!\s*\()", expr)  # not followed by a call's "("
    return set(words) - KEYWORDS


def test_panel_ids_are_unique() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))


def test_every_metric_a_panel_reads_exists() -> None:
    code = "\n".join(
        p.read_text() for d in ("shared", "services") for p in (ROOT / d).rglob("*.py")
    )
    seen = set()
    for panel in panels():
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                seen.add(name)
                if FOREIGN.match(name):
                    continue
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert f'"{base}"' in code, f"panel {panel['title']!r} reads unknown {name}"
    wanted = {
        "floodgate_limiter_fallback_active",
        "floodgate_bot_rate_factor",
        "floodgate_limiter_decisions_total",
        "floodgate_updates_received_total",
        "floodgate_scheduler_routed_total",
        "redis_memory_used_bytes",
        "up",
        "process_cpu_seconds_total",
    }
    assert wanted - seen == set(), "panels missing"


def test_rates_are_in_what_they_count_not_requests() -> None:
    for panel in panels():
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit != "reqps", f"panel {panel['title']!r} counts messages, not requests"
        exprs = " ".join(t["expr"] for t in panel.get("targets", []))
        ratio = re.search(r"rate\(.*\)\s*/\s*scalar\(.*rate\(", exprs)  # e.g. CPU per message
        if "rate(" in exprs and "histogram_quantile" not in exprs and not ratio:
            assert str(unit).endswith("/s"), f"panel {panel['title']!r}: unit {unit}"
