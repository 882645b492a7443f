"""deploy/docker-compose.yml: parses, pins its images, mounts files that exist, and sets only
settings the code reads. (No container runs here: this checks what can be checked offline.)"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.conftest import ROOT

DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def test_every_part_of_the_local_stack_is_there() -> None:
    services = set(compose()["services"])
    assert services >= {"redis", "sandbox", "ingest", "scheduler", "sender", "stats"}
    assert services >= {"redis-exporter", "prometheus", "grafana"}
    for name in ("ingest", "scheduler", "sender", "stats"):
        assert compose()["services"][name]["command"][:2] == ["run", name]


def test_images_are_pinned() -> None:
    for name, service in compose()["services"].items():
        tag = service["image"].rpartition(":")[2]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+(-[\w.]+)?", tag), f"{name}: {service['image']}"


def test_mounted_files_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_redis_has_a_password_and_the_services_use_it() -> None:
    services = compose()["services"]
    assert "--requirepass" in services["redis"]["command"]
    for name in ("ingest", "scheduler", "sender", "stats"):
        url = services[name]["environment"]["REDIS_URL"]
        assert re.match(r"redis://:[^@]+@redis:6379/", url), name


def test_environment_names_are_settings_the_code_reads() -> None:
    sources = [p for d in ("shared", "services") for p in (ROOT / d).rglob("*.py")]
    code = "\n".join(p.read_text() for p in sources)
    for name in ("ingest", "scheduler", "sender", "stats"):
        for key in compose()["services"][name]["environment"]:
            assert f'"{key}"' in code, f"{name}: {key} is read by no setting"
