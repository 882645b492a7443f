"""The autoscalers' triggers read what the code writes, for the partitions each overlay runs."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from services.stats.depths import queue_stats
from services.stats.metrics import StatsMetrics
from shared.context import dlq_keys
from shared.keys import MAX_PARTITIONS, PRIORITIES, SENDER_GROUP, Keys
from shared.memory_broker import MemoryBroker
from shared.settings import CLUSTER_PARTITIONS
from tests.deploy.conftest import KUBE, Doc, find, kubectl

# The queues whose backlog each consumer works off.
QUEUES = {"sender": {p.value for p in PRIORITIES}, "scheduler": {"ingest"}}
QUERY = re.compile(r"max\((?P<metric>\w+)\{(?P<labels>[^}]*)\}\)")
LABEL = re.compile(r'\s*(\w+)="([^"]*)"\s*')


def layout(docs: list[Doc]) -> Keys:
    """The keys of the pipeline an overlay's processes run, from its ConfigMap."""
    config = find(docs, "ConfigMap", "floodgate-config")["data"]
    return Keys(config["FLOODGATE_NAMESPACE"], int(config["FLOODGATE_PARTITIONS"]))


def triggers(docs: list[Doc], target: str, kind: str) -> list[Doc]:
    """The triggers of one type of the ScaledObject scaling ``target``, if there is one."""
    scaled = [d for d in docs if d["kind"] == "ScaledObject" and d["metadata"]["name"] == target]
    return [t for d in scaled for t in d["spec"]["triggers"] if t["type"] == kind]


def query_parts(query: str) -> tuple[str, dict[str, str]]:
    """The metric and label matchers of ``max(metric{a="x", ...})``, the one query form used."""
    found = QUERY.fullmatch(query)
    assert found, f'not of the form max(metric{{label="value", ...}}): {query}'
    pairs = [LABEL.fullmatch(part) for part in found["labels"].split(",")]
    assert all(pairs), query
    return found["metric"], {p[1]: p[2] for p in pairs if p}


def stats_registry(keys: Keys) -> CollectorRegistry:
    """The stats service's metrics, with every queue depth series it sets on a refresh."""
    registry = CollectorRegistry()
    metrics = StatsMetrics(registry)
    doc = asyncio.run(queue_stats(MemoryBroker(dlq_keys(keys)), keys))
    for queue in doc["stats"]:
        metrics.depth.labels(queue).set(0)
    return registry


def test_every_overlay_states_its_partitions(overlays: dict[str, list[Doc]]) -> None:
    """Left unset, the number would follow REDIS_URL's scheme and could differ between
    processes given different URLs, or from what the triggers assume."""
    base = yaml.safe_load((KUBE / "base" / "configmap.yaml").read_text())
    assert base["data"]["FLOODGATE_PARTITIONS"] == "1"
    for name, docs in overlays.items():
        assert 1 <= layout(docs).partitions <= MAX_PARTITIONS, name
    assert layout(overlays["prod-cluster"]).partitions == CLUSTER_PARTITIONS


def test_stream_triggers_name_the_streams_of_the_overlays_layout(
    overlays: dict[str, list[Doc]],
) -> None:
    """A redis-streams trigger names one stream: with several partitions each queue is one
    stream per partition and such triggers would watch one partition at most."""
    checked = []
    for name, docs in overlays.items():
        keys = layout(docs)
        expected = {
            "sender": set(keys.shards[0].send_streams),
            "scheduler": {keys.shards[0].ingest},
        }
        for target, streams in expected.items():
            redis = triggers(docs, target, "redis-streams")
            if not redis:
                continue
            assert keys.partitions == 1, f"{name}: stream triggers on {keys.partitions} partitions"
            assert {t["metadata"]["stream"] for t in redis} == streams, (name, target)
            for trigger in redis:
                assert trigger["authenticationRef"]["name"] == "floodgate-redis"
                if "consumerGroup" in trigger["metadata"]:
                    assert trigger["metadata"]["consumerGroup"] == SENDER_GROUP
            checked.append(name)
    assert "prod" in checked


def test_depth_triggers_read_series_the_stats_service_exports(
    overlays: dict[str, list[Doc]],
) -> None:
    checked = []
    for name, docs in overlays.items():
        keys = layout(docs)
        registry = stats_registry(keys)
        namespace = find(docs, "Deployment", "stats")["metadata"]["namespace"]
        for target, queues in QUEUES.items():
            read = set()
            for trigger in triggers(docs, target, "prometheus"):
                metric, labels = query_parts(trigger["metadata"]["query"])
                assert registry.get_sample_value(metric, {"queue": labels["queue"]}) is not None, (
                    f"{name}: {trigger['metadata']['query']} reads no series of the stats service"
                )
                # the PodMonitor sets `service` from the component label, Prometheus `namespace`
                assert set(labels) == {"namespace", "service", "queue"}, name
                assert (labels["namespace"], labels["service"]) == (namespace, "stats"), name
                # no data is an error (the HPA then holds), not a backlog of 0 (a scale-down)
                assert trigger["metadata"]["ignoreNullValues"] == "false", name
                read.add(labels["queue"])
            if read:
                assert read == queues, (name, target)
                checked.append(name)
    assert "prod-cluster" in checked
    component = find(overlays["prod-cluster"], "Deployment", "stats")
    assert component["metadata"]["labels"]["app.kubernetes.io/component"] == "stats"


def test_both_keda_components_scale_on_the_same_backlog(overlays: dict[str, list[Doc]]) -> None:
    """A queue's threshold per replica is the same whether read from Redis or from Prometheus."""
    for target in QUEUES:
        by_stream = {
            t["name"]: t["metadata"]["streamLength"]
            for t in triggers(overlays["prod"], target, "redis-streams")
        }
        by_gauge = {
            t["name"]: t["metadata"]["threshold"]
            for t in triggers(overlays["prod-cluster"], target, "prometheus")
        }
        assert by_stream == by_gauge, target
        for field in ("minReplicaCount", "maxReplicaCount"):
            single = find(overlays["prod"], "ScaledObject", target)["spec"][field]
            assert find(overlays["prod-cluster"], "ScaledObject", target)["spec"][field] == single


def test_prometheus_address_is_the_overlays(overlays: dict[str, list[Doc]]) -> None:
    local = yaml.safe_load((KUBE / "overlays" / "prod-cluster" / "prometheus.yaml").read_text())
    assert local["metadata"]["annotations"] == {"config.kubernetes.io/local-config": "true"}
    docs = overlays["prod-cluster"]
    assert not [d for d in docs if d["metadata"]["name"] == local["metadata"]["name"]]
    addresses = {
        t["metadata"]["serverAddress"]
        for target in QUEUES
        for t in triggers(docs, target, "prometheus")
    }
    assert addresses == {local["data"]["serverAddress"]}
    # KEDA reads no Redis here: its credentials are not handed to it
    assert not [d for d in docs if d["kind"] == "TriggerAuthentication"]


def test_without_the_prometheus_address_the_build_fails(tmp_path: Path) -> None:
    """The component's placeholder never reaches a cluster: no address, no manifests."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copy)
    overlay = copy / "overlays" / "prod-cluster"
    (overlay / "prometheus.yaml").unlink()
    kustomization = overlay / "kustomization.yaml"
    text = kustomization.read_text()
    assert "  - prometheus.yaml\n" in text
    kustomization.write_text(text.replace("  - prometheus.yaml\n", ""))
    out = subprocess.run(
        [kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    assert out.returncode != 0
    assert "floodgate-prometheus" in out.stderr
