"""Rendered overlays of deploy/kubernetes, built once per session with kustomize."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())

Doc = dict[str, Any]


def kubectl() -> str:
    """kubectl of the venv (scripts/ensure-tools.sh installs it), else the one on PATH. Missing
    fails the test: the checks must not be skipped on a machine that lacks the tool."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl not found: run scripts/ensure-tools.sh (make deploy-check does)")
    return found


def render(path: Path) -> list[Doc]:
    """The objects ``kubectl kustomize path`` builds."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, f"kustomize {path} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="session")
def overlays() -> dict[str, list[Doc]]:
    """Every overlay's objects, by overlay name."""
    assert OVERLAYS, "no overlays under deploy/kubernetes/overlays"
    return {name: render(KUBE / "overlays" / name) for name in OVERLAYS}


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    """The one object of that kind and name."""
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{len(hits)} {kind}/{name}"
    return hits[0]


def container(deployment: Doc, name: str) -> Doc:
    """One container of a Deployment or StatefulSet."""
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name} in {deployment['metadata']['name']}")


def env_value(c: Doc, name: str) -> str | None:
    """The literal value of one env variable of a container, or None."""
    for var in c.get("env", []):
        if var["name"] == name:
            return var.get("value")
    return None
