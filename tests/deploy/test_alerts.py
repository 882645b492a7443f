"""The alert rules: one source, no job matchers, every alert tested, every metric real."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType
from typing import Any

import yaml

from tests.deploy.conftest import ROOT, Doc, find

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
RENDERED = ROOT / "deploy" / "kubernetes" / "components" / "monitoring" / "prometheusrule.yaml"


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def render_script() -> ModuleType:
    path = ROOT / "scripts" / "render-prometheusrule.py"
    spec = importlib.util.spec_from_file_location("render_prometheusrule", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheusrule_is_the_rendering_of_alerts_yml(overlays: dict[str, list[Doc]]) -> None:
    assert RENDERED.read_text() == render_script().render(ALERTS.read_text()), (
        "stale: run scripts/render-prometheusrule.py"
    )
    wanted = yaml.safe_load(ALERTS.read_text())["groups"]
    for name in ("prod", "prod-hpa", "prod-cluster"):
        rule = find(overlays[name], "PrometheusRule", "floodgate")
        assert rule["spec"]["groups"] == wanted, name


def test_no_rule_depends_on_the_job_name() -> None:
    for rule in rules():
        assert not re.search(r"\bjob\s*=", rule["expr"]), rule["alert"]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    doc = yaml.safe_load(ALERT_TESTS.read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    cases = [case for test in doc["tests"] for case in test["alert_rule_test"]]
    for rule in rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{rule['alert']} never fires in a test"
        assert any(not c.get("exp_alerts") for c in mine), f"{rule['alert']} has no quiet case"


def test_every_floodgate_metric_an_alert_reads_is_registered() -> None:
    code = "\n".join(
        p.read_text() for d in ("shared", "services") for p in (ROOT / d).rglob("*.py")
    )
    names = set()
    # plain names, and name regexes such as floodgate_messages_(sent|dead)_total, expanded
    for head, alternatives, tail in (
        m
        for r in rules()
        for m in re.findall(r"\b(floodgate_\w*)(?:\(([\w|]+)\)(\w*))?", r["expr"])
    ):
        names |= {head + alt + tail for alt in alternatives.split("|")}
    assert names
    for name in sorted(names):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f'"{base}"' in code, f"{name} is read by an alert and registered nowhere"


def test_redis_metrics_come_from_a_deployed_exporter(overlays: dict[str, list[Doc]]) -> None:
    uses = any(re.search(r"\bredis_\w+", r["expr"]) for r in rules())
    assert uses
    for name in ("prod", "prod-hpa", "prod-cluster"):
        find(overlays[name], "Deployment", "redis-exporter")
        find(overlays[name], "ServiceMonitor", "redis-exporter")
