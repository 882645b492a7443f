"""The image build: dependencies from the lock, cached apart from the sources, non-root."""

from __future__ import annotations

import re
import tomllib

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LOCK = ROOT / "deploy" / "requirements.lock"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def instructions() -> list[str]:
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dependencies_install_from_the_lock_before_the_sources_are_copied() -> None:
    steps = instructions()
    copy_all = steps.index("COPY . .")
    lock_copy = next(
        i for i, s in enumerate(steps) if s.startswith("COPY deploy/requirements.lock")
    )
    lock_install = next(i for i, s in enumerate(steps) if "-r deploy/requirements.lock" in s)
    assert lock_copy < lock_install < copy_all
    final = next(s for s in steps[copy_all:] if s.startswith("RUN"))
    assert "--no-deps" in final  # nothing resolved after the lock


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = [s.split()[1] for s in instructions() if s.startswith("USER ")]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_base_images_carry_a_full_release_tag() -> None:
    for step in instructions():
        if step.startswith("FROM "):
            image = step.split()[1]
            assert re.search(r":\d+\.\d+\.\d+", image), f"{image} floats"


def test_lock_pins_every_runtime_dependency() -> None:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep
            assert version, line
            pins[normalized(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = normalized(re.split(r"[\s\[<>=!;~]", requirement, maxsplit=1)[0])
        assert name in pins, f"{name} is a dependency and not in deploy/requirements.lock"
