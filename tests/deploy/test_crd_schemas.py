"""The hand-written schemas of the custom resources accept the overlays and refuse mistakes."""

from __future__ import annotations

import copy
import importlib.util
from types import ModuleType

import pytest

from tests.deploy.conftest import ROOT, Doc, find


def validator() -> ModuleType:
    path = ROOT / "scripts" / "validate-crds.py"
    spec = importlib.util.spec_from_file_location("validate_crds", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def problems(doc: Doc) -> list[str]:
    module = validator()
    return list(module.problems(doc, module._registry()))


def test_every_custom_resource_of_the_overlays_is_valid(overlays: dict[str, list[Doc]]) -> None:
    module = validator()
    custom = [
        d for docs in overlays.values() for d in docs if not module.is_builtin(d["apiVersion"])
    ]
    assert {d["kind"] for d in custom} == {
        "ScaledObject",
        "TriggerAuthentication",
        "PodMonitor",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for doc in custom:
        assert problems(doc) == [], doc["metadata"]["name"]


@pytest.mark.parametrize(
    ("kind", "name", "mutate", "complaint"),
    [
        ("ScaledObject", "sender", lambda d: d["spec"].update(maxReplicas=8), "maxReplicas"),
        (
            "ScaledObject",
            "sender",
            lambda d: d["spec"]["triggers"][0]["metadata"].update(streamLength=500),
            "not of type 'string'",
        ),
        ("ScaledObject", "scheduler", lambda d: d["spec"].pop("scaleTargetRef"), "required"),
        (
            "PodMonitor",
            "floodgate",
            lambda d: d["spec"]["podMetricsEndpoints"][0].update(interval="15 seconds"),
            "does not match",
        ),
        (
            "PrometheusRule",
            "floodgate",
            lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr"),
            "required",
        ),
        ("TriggerAuthentication", "floodgate-redis", lambda d: d["spec"].update(x=1), "'x'"),
    ],
)
def test_mistakes_are_refused(
    overlays: dict[str, list[Doc]], kind: str, name: str, mutate: object, complaint: str
) -> None:
    refused(find(overlays["prod"], kind, name), mutate, complaint)


def depth_trigger(doc: Doc) -> dict[str, str]:
    metadata: dict[str, str] = doc["spec"]["triggers"][0]["metadata"]
    return metadata


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (lambda d: depth_trigger(d).pop("query"), "'query' is a required property"),
        (lambda d: depth_trigger(d).update(threshold="lots"), "does not match"),
        (lambda d: depth_trigger(d).update(ignoreNullValues="no"), "is not one of"),
        # the component's placeholder, had the overlay's address not replaced it
        (
            lambda d: depth_trigger(d).update(serverAddress="set from the overlay's ConfigMap"),
            "does not match",
        ),
        (lambda d: depth_trigger(d).update(serverAdress="http://p:9090"), "'serverAdress'"),
    ],
)
def test_prometheus_trigger_mistakes_are_refused(
    overlays: dict[str, list[Doc]], mutate: object, complaint: str
) -> None:
    refused(find(overlays["prod-cluster"], "ScaledObject", "sender"), mutate, complaint)


def refused(original: Doc, mutate: object, complaint: str) -> None:
    """The schema finds ``complaint`` in a copy of ``original`` changed by ``mutate``."""
    assert problems(original) == []
    doc = copy.deepcopy(original)
    assert callable(mutate)
    mutate(doc)
    found = problems(doc)
    assert any(complaint in line for line in found), found


def test_a_custom_kind_without_a_schema_is_an_error() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert any("no schema" in line for line in problems(doc))
