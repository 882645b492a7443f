"""Real OS processes for end-to-end tests: services, the sandbox, private Redis servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from tests.helpers import ADMIN_KEY, free_port

LOG_DIR = Path(os.environ.get("FLOODGATE_TEST_LOGS", tempfile.gettempdir())) / "floodgate-test-logs"


class Proc:
    """A child process with its output in a log file; stopped with SIGTERM, else SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        port: int | None,
        health_path: str = "/healthz",
    ) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name, self.port, self.health_path = name, port, health_path
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}-{time.time_ns()}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            list(argv), env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
                try:
                    async with session.get(f"{self.url}{self.health_path}") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy in {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


# (REDIS_URL, FLOODGATE_NAMESPACE) of every process started: their keys are deleted after the
# session (tests/conftest.py), so runs do not pile up status records in the shared Redis.
NAMESPACES: set[tuple[str, str]] = set()


def floodgate(name: str, args: Sequence[str], env: dict[str, str]) -> Proc:
    """``floodgate run <service>`` (or ``sandbox``) on a free port."""
    if env.get("REDIS_URL") and env.get("FLOODGATE_NAMESPACE"):
        NAMESPACES.add((env["REDIS_URL"], env["FLOODGATE_NAMESPACE"]))
    port = free_port()
    argv = [sys.executable, "-m", "floodgate.cli", *args, "--port", str(port)]
    if args[0] == "run":
        argv += ["--host", "127.0.0.1"]
    health = "/healthz" if args[0] == "run" else "/_sandbox/stats"
    defaults = {"FLOODGATE_LOG_FORMAT": "json", "FLOODGATE_ADMIN_KEY": ADMIN_KEY}
    return Proc(name, argv, {**defaults, **env}, port, health)


class RedisServer:
    """A private redis-server on a free port, for tests that kill or restart Redis."""

    def __init__(self, appendonly: bool = True) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="floodgate-redis-")
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            self.dir,
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--maxmemory-policy",
            "noeviction",
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if probe.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self, hard: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.proc.wait(10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
