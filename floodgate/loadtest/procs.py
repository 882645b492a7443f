"""Child processes of the load test, and what they cost: CPU and RSS from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
STOP_TIMEOUT_S = 30.0
HEALTHY_WITHIN_S = 30.0


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Child:
    """A ``floodgate`` subcommand on a free port, its output in ``log_dir/<name>.log``."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.port = name, free_port()
        argv = [sys.executable, "-m", "floodgate.cli", *args, "--port", str(self.port)]
        if args[0] == "run":
            argv += ["--host", "127.0.0.1"]
        self.health = "/healthz" if args[0] == "run" else "/_sandbox/stats"
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(  # noqa: S603 - this interpreter, our own arguments
            argv, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        """Base URL of its HTTP server."""
        return f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self, session: aiohttp.ClientSession) -> None:
        """Until its health route answers 200; raises with its log's tail if it exits or hangs."""
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            try:
                async with session.get(f"{self.url}{self.health}") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy in {HEALTHY_WITHIN_S} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log."""
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds used so far and resident memory now, of one process."""

    cpu_s: float
    rss_bytes: int


def proc_usage(pid: int) -> Usage | None:
    """From /proc/<pid>/stat and statm; None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu_ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return Usage(cpu_ticks / TICKS_PER_S, int(statm.split()[1]) * PAGE_BYTES)


def redis_usage(info: dict[str, object]) -> Usage:
    """From Redis ``INFO`` (sections cpu and memory), for a server that may be elsewhere."""
    cpu = float(str(info.get("used_cpu_sys", 0))) + float(str(info.get("used_cpu_user", 0)))
    return Usage(cpu, int(str(info.get("used_memory_rss", 0))))
