"""Properties of the Kubernetes manifests that validation alone does not catch."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import KUBE, ROOT, Doc, container, env_value, find, render

AUTOSCALED = ("ingest", "scheduler", "sender")
PROD = ("prod", "prod-hpa", "prod-cluster")


def is_autoscaler(doc: Doc) -> bool:
    return doc["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")


def autoscaler_max(docs: list[Doc], target: str) -> int | None:
    """maxReplicaCount / maxReplicas of whatever autoscales ``target``, if anything does."""
    for doc in docs:
        spec = doc.get("spec", {})
        if is_autoscaler(doc) and spec["scaleTargetRef"]["name"] == target:
            return int(spec.get("maxReplicaCount", spec.get("maxReplicas", 0)))
    return None


def autoscaler_min(docs: list[Doc], target: str) -> int:
    for doc in docs:
        spec = doc.get("spec", {})
        if is_autoscaler(doc) and spec["scaleTargetRef"]["name"] == target:
            return int(spec.get("minReplicaCount", spec.get("minReplicas", 1)))
    raise AssertionError(f"nothing autoscales {target}")


def test_no_overlay_contains_the_namespace(overlays: dict[str, list[Doc]]) -> None:
    base = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())
    assert "namespace.yaml" not in base["resources"]
    for name, docs in overlays.items():
        assert [d for d in docs if d["kind"] == "Namespace"] == [], name
        outside = {d["metadata"].get("namespace") for d in docs} - {"floodgate"}
        assert outside == set(), f"{name}: objects outside the namespace: {outside}"
    namespace = yaml.safe_load((KUBE / "namespace.yaml").read_text())
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", "floodgate")


def test_senders_of_two_releases_never_run_together(overlays: dict[str, list[Doc]]) -> None:
    for name, docs in overlays.items():
        strategy = find(docs, "Deployment", "sender")["spec"]["strategy"]
        assert strategy == {"type": "Recreate"}, name


def test_sender_fallback_floor_is_the_most_senders_that_can_run(
    overlays: dict[str, list[Doc]],
) -> None:
    for name, docs in overlays.items():
        sender = find(docs, "Deployment", "sender")
        most = autoscaler_max(docs, "sender") or sender["spec"]["replicas"]
        floor = env_value(container(sender, "sender"), "FLOODGATE_SENDER_REPLICAS")
        assert floor == str(most), f"{name}: FLOODGATE_SENDER_REPLICAS {floor}, at most {most}"


@pytest.mark.parametrize(
    ("overlay", "file", "field"),
    [
        ("prod", "components/keda/scaledobjects.yaml", "maxReplicaCount: 8"),
        ("prod-hpa", "components/hpa/hpa.yaml", "maxReplicas: 8"),
        ("prod-cluster", "components/keda/scaledobjects.yaml", "maxReplicaCount: 8"),
        ("dev", "overlays/dev/replicas.yaml", None),
    ],
)
def test_changing_the_maximum_moves_the_floor_with_it(
    tmp_path: Path, overlay: str, file: str, field: str | None
) -> None:
    """The tie is a kustomize replacement, not two equal numbers: edit one, the other follows."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copy)
    path = copy / file
    text = path.read_text()
    if field is None:
        pattern = r"(name: sender\nspec:\n  replicas: )\d+"
        changed = re.sub(pattern, r"\g<1>13", text)
    else:
        changed = text.replace(field, field.rsplit(" ", 1)[0] + " 13", 1)
    assert changed != text, f"{field or 'sender replicas'} not found in {file}"
    path.write_text(changed)
    docs = render(copy / "overlays" / overlay)
    sender = container(find(docs, "Deployment", "sender"), "sender")
    assert env_value(sender, "FLOODGATE_SENDER_REPLICAS") == "13"


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(
    overlays: dict[str, list[Doc]],
) -> None:
    for name in PROD:
        docs = overlays[name]
        for target in AUTOSCALED:
            assert "replicas" not in find(docs, "Deployment", target)["spec"], (name, target)
            assert autoscaler_max(docs, target), (name, target)
        # an idle pipeline scales down; a floor above 1 would undo that for the consumers
        assert autoscaler_min(docs, "sender") == 1, name
        assert autoscaler_min(docs, "scheduler") == 1, name
        assert autoscaler_min(docs, "ingest") >= 2, name  # the API keeps a spare server


def test_every_scale_target_exists(overlays: dict[str, list[Doc]]) -> None:
    for name, docs in overlays.items():
        deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
        for doc in docs:
            if is_autoscaler(doc):
                assert doc["spec"]["scaleTargetRef"]["name"] in deployments, (name, doc)


def images(docs: list[Doc]) -> list[str]:
    found = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            found += [c["image"] for c in doc["spec"]["template"]["spec"]["containers"]]
    return found


def test_no_floating_image_tags(overlays: dict[str, list[Doc]]) -> None:
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    for name, docs in overlays.items():
        for image in images(docs):
            repo, _, tag = image.rpartition(":")
            assert repo, f"{name}: {image} has no tag"
            assert "/" not in tag, f"{name}: {image} has no tag"
            assert re.fullmatch(r"v?\d+\.\d+\.\d+(-[\w.]+)?", tag), f"{name}: {image} floats"
            if repo == "floodgate":
                assert tag == version[1], f"{name}: {image} is not the release {version[1]}"


def test_redis_wants_a_password_from_the_secret(overlays: dict[str, list[Doc]]) -> None:
    conf = (KUBE / "components" / "redis" / "redis.conf").read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["protected-mode"] == "yes"
    assert settings["maxmemory-policy"] == "noeviction"
    assert settings["appendonly"] == "yes"
    assert "requirepass" not in settings  # never in a ConfigMap
    redis = container(find(overlays["dev"], "StatefulSet", "redis"), "redis")
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    source = next(v for v in redis["env"] if v["name"] == "REDIS_PASSWORD")["valueFrom"]
    assert source["secretKeyRef"] == {"name": "floodgate-redis", "key": "REDIS_PASSWORD"}


def secret_refs(node: object) -> Iterator[tuple[str, str | None]]:
    """(Secret name, key or None for the whole Secret) of every reference under ``node``:
    env secretKeyRef, envFrom secretRef, KEDA's secretTargetRef."""
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            yield node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]
        if "secretRef" in node:
            yield node["secretRef"]["name"], None
        for ref in node.get("secretTargetRef", []):
            yield ref["name"], ref["key"]
        for value in node.values():
            yield from secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from secret_refs(value)


def test_secrets_used_are_the_documented_ones(overlays: dict[str, list[Doc]]) -> None:
    example = list(yaml.safe_load_all((KUBE / "secret.example.yaml").read_text()))
    documented = {d["metadata"]["name"]: set(d["stringData"]) for d in example}
    for name, docs in overlays.items():
        assert not any(d["kind"] == "Secret" for d in docs), f"{name} would overwrite a Secret"
        refs = set(secret_refs(docs))
        assert refs, name
        for secret, key in refs:
            assert secret in documented, f"{name}: Secret {secret} not in secret.example.yaml"
            assert key is None or key in documented[secret], f"{name}: {secret}/{key}"


def test_config_map_keys_are_settings_the_code_reads(overlays: dict[str, list[Doc]]) -> None:
    code = "\n".join(
        p.read_text() for d in ("shared", "services") for p in (ROOT / d).rglob("*.py")
    )
    for name, docs in overlays.items():
        for key in find(docs, "ConfigMap", "floodgate-config")["data"]:
            assert f'"{key}"' in code, f"{name}: ConfigMap key {key} is read by no setting"


def test_the_cluster_exporter_scrapes_every_node_as_its_own_instance(
    overlays: dict[str, list[Doc]],
) -> None:
    """On a Redis Cluster one node filling up or going down is the failure to see; the
    exporter's /metrics watches one node, so each node is scraped through /scrape, under its
    own instance label (the alerts take max and min over instances)."""
    monitor = find(overlays["prod-cluster"], "ServiceMonitor", "redis-exporter")
    endpoints = monitor["spec"]["endpoints"]
    targets = [e["params"]["target"] for e in endpoints]
    instances = [e["relabelings"][0]["replacement"] for e in endpoints]
    assert all(e["path"] == "/scrape" for e in endpoints)
    assert all(len(t) == 1 and t[0].startswith("redis://") for t in targets)
    assert len({t[0] for t in targets}) == len(endpoints) >= 6  # 3 primaries, 3 replicas
    assert len(set(instances)) == len(endpoints)
    assert all(e["relabelings"][0]["targetLabel"] == "instance" for e in endpoints)
    # one server: the exporter's own /metrics, as before
    single = find(overlays["prod"], "ServiceMonitor", "redis-exporter")
    assert [e.get("path", "/metrics") for e in single["spec"]["endpoints"]] == ["/metrics"]
