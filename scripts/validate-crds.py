#!/usr/bin/env python3
"""Check the custom resources in rendered manifests against deploy/kubernetes/schemas.

    validate-crds.py RENDERED.yaml [...]

kubernetes-validate checks the built-in kinds and only warns about the others; this checks the
others (KEDA, Prometheus Operator) against the JSON Schemas of deploy/kubernetes/schemas. A
custom kind without a schema there is an error too, so nothing goes out unchecked. Exit 1 when
anything is wrong, listing every problem.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "schemas"
BUILTIN_GROUPS = frozenset({"", "apps", "batch", "policy", "autoscaling"})


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def is_builtin(api_version: str) -> bool:
    """Whether kubernetes-validate knows the kind (core groups and ``*.k8s.io``)."""
    group = _group(api_version)
    return group in BUILTIN_GROUPS or group.endswith(".k8s.io")


def schema_path(api_version: str, kind: str) -> Path:
    """Where the schema of one custom kind lives: ``<group>-<version>-<Kind>.yaml``."""
    return SCHEMAS / f"{api_version.replace('/', '-')}-{kind}.yaml"


def _registry() -> Registry:
    common = yaml.safe_load((SCHEMAS / "common.yaml").read_text())
    return Registry().with_resource("common.yaml", Resource.opaque(common))


def problems(doc: dict[str, Any], registry: Registry) -> Iterator[str]:
    """Every schema violation of one custom resource, as readable lines."""
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    name = (doc.get("metadata") or {}).get("name", "?")
    path = schema_path(api_version, kind)
    if not path.exists():
        yield f"{kind}/{name} ({api_version}): no schema {path.name} in {SCHEMAS}"
        return
    validator = Draft202012Validator(yaml.safe_load(path.read_text()), registry=registry)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(top)"
        yield f"{kind}/{name}: {where}: {error.message}"


def check(paths: list[Path]) -> tuple[int, list[str]]:
    """How many custom resources the files hold, and what is wrong with them."""
    registry = _registry()
    count, found = 0, []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or is_builtin(str(doc.get("apiVersion", ""))):
                continue
            count += 1
            found.extend(f"{path}: {line}" for line in problems(doc, registry))
    return count, found


def main() -> int:
    paths = [Path(arg) for arg in sys.argv[1:]]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    count, found = check(paths)
    for line in found:
        print(line, file=sys.stderr)
    print(f"custom resources: {count} checked, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
