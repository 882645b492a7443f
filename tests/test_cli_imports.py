"""`floodgate run` loads what a service needs and nothing else.

Building the whole command line used to import every command's module: each service process
loaded the sandbox and the load test's plotting (matplotlib), 0.6 s of CPU and 45 MiB of
memory at every start. A real `floodgate run stats` (stopped by its missing REDIS_URL, after the
imports) is watched with ``-X importtime``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from floodgate.cli import COMMANDS

FOREIGN = ("matplotlib", "sandbox", "floodgate.loadtest", "floodgate.demo")


def _imported(*args: str) -> set[str]:
    """Modules the command imports, by name."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "floodgate.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_a_service_loads_no_other_command() -> None:
    modules = _imported("run", "stats")
    assert "floodgate.launch" in modules  # the watch works: the service's own code is seen
    loaded = sorted(m for m in modules for f in FOREIGN if m == f or m.startswith(f + "."))
    assert loaded == [], f"`floodgate run` imported {loaded[:10]}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_still_has_its_flags(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "floodgate.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    usage = done.stdout.split("\n\n", 1)[0]
    assert usage.startswith(f"usage: floodgate {command} [-h]"), done.stdout
    assert usage != f"usage: floodgate {command} [-h]", f"{command} lost its arguments"
