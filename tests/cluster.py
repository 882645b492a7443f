"""Private Redis topologies for tests: a Redis Cluster (3 primaries, 3 replicas) and a Sentinel
setup (1 primary, 1 replica, 3 sentinels), each started on free ports in a temp dir of its own
and torn down with it."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.helpers import free_port

NODE_TIMEOUT_MS = 1000  # short, so a killed primary is replaced within seconds
START_TIMEOUT = 15.0
SERVICE = "fgprimary"


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too and below the ephemeral range."""
    for _ in range(200):
        port = free_port()
        if port + 10_000 >= 32_768:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli(port: int, *args: str, timeout: float = 5.0) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        check=False,
        timeout=timeout,
    )
    return done.stdout.decode(errors="replace").strip()


def _wait(what: str, ready: object, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(ready) and ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready in {timeout} s")


class _Processes:
    """redis-server processes in one temp dir, each in a folder of its own."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.argv: dict[int, tuple[str, ...]] = {}

    def spawn(self, port: int, *args: str) -> None:
        home = self.dir / str(port)
        home.mkdir(exist_ok=True)
        self.argv[port] = args
        log = (home / "log").open("ab")
        self.procs[port] = subprocess.Popen(
            ["redis-server", *args], cwd=home, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def server(self, port: int, *args: str) -> None:
        self.spawn(
            port,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--repl-diskless-sync-delay",
            "0",  # a replica syncs at once instead of waiting for others to join
            *args,
        )

    def kill(self, port: int) -> None:
        """SIGKILL one process: it gets no chance to hand anything over."""
        proc = self.procs[port]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def restart(self, port: int, *extra: str) -> None:
        """Start a killed process again, as it was (with ``extra`` arguments), in its own folder
        (a cluster node finds its nodes.conf there and rejoins as a replica of whoever took its
        slots)."""
        self.spawn(port, *self.argv[port], *extra)

    def start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Started, and cleaned up even if starting fails half-way."""
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster(_Processes):
    """A real Redis Cluster: 3 primaries and 3 replicas on 127.0.0.1."""

    def __init__(self, node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        super().__init__("floodgate-cluster-")
        self.ports = [_cluster_port() for _ in range(6)]
        self.node_timeout_ms = node_timeout_ms

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def start(self) -> None:
        for port in self.ports:
            self.server(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--cluster-replica-validity-factor",
                "0",  # a replica may always take over, however long it was cut off
            )
        for port in self.ports:
            _wait(f"cluster node {port}", lambda p=port: _cli(p, "ping") == "PONG")
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            check=False,
            timeout=START_TIMEOUT,
        )
        if created.returncode != 0:
            raise RuntimeError(f"cluster create failed: {created.stdout.decode()[-2000:]}")
        _wait("cluster", self._settled)

    def _settled(self) -> bool:
        """Every node sees the cluster ok and every replica is attached to its primary."""
        for port in self.ports:
            if "cluster_state:ok" not in _cli(port, "cluster", "info"):
                return False
        return all(
            "master_link_status:up" in _cli(p, "info", "replication") for p in self.replicas()
        )

    def _roles(self) -> dict[int, str]:
        return {p: _cli(p, "role").split("\n", 1)[0] for p in self.ports if self.alive(p)}

    def alive(self, port: int) -> bool:
        return self.procs[port].poll() is None

    def primaries(self) -> list[int]:
        return [p for p, role in self._roles().items() if role == "master"]

    def replicas(self) -> list[int]:
        return [p for p, role in self._roles().items() if role == "slave"]

    def owner(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot now."""
        port = self.serving(key)
        if port is None:
            raise RuntimeError(f"no primary serves {key!r}")
        return port

    def serving(self, key: str) -> int | None:
        """The port of the primary that serves ``key``'s slot now, if one does."""
        live = next(p for p in self.ports if self.alive(p))
        slot = int(_cli(live, "cluster", "keyslot", key))
        for line in _cli(live, "cluster", "nodes").splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            for span in parts[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(parts[1].split("@")[0].rsplit(":", 1)[1])
        return None

    def replica_of(self, primary: int) -> int:
        """The port of a replica attached to ``primary``."""
        for line in _cli(primary, "info", "replication").splitlines():
            if line.startswith("slave0:"):
                fields = dict(item.split("=", 1) for item in line.split(":", 1)[1].split(","))
                return int(fields["port"])
        raise RuntimeError(f"primary {primary} has no replica")

    def pause(self, port: int, paused: bool) -> None:
        """SIGSTOP (or SIGCONT) one node: it holds its connections but answers nothing."""
        self.procs[port].send_signal(signal.SIGSTOP if paused else signal.SIGCONT)


class SentinelSetup(_Processes):
    """A primary, one replica and three sentinels watching them (quorum 2)."""

    def __init__(self) -> None:
        super().__init__("floodgate-sentinel-")
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> None:
        self.server(self.primary)
        self.server(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        _wait(
            "sentinel replica",
            lambda: "master_link_status:up" in _cli(self.replica, "info", "replication"),
        )
        for port in self.sentinels:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
            )
            self.spawn(port, str(conf), "--sentinel")
        _wait("sentinels", self._settled)

    def current_primary(self) -> int | None:
        """The port of the primary the Sentinels name now (None while none answers)."""
        for port in self.sentinels:
            answer = _cli(port, "sentinel", "get-master-addr-by-name", SERVICE).splitlines()
            if len(answer) == 2 and answer[1].isdigit():
                return int(answer[1])
        return None

    def _settled(self) -> bool:
        """Every sentinel knows the replica and the other two sentinels."""
        for port in self.sentinels:
            info = _cli(port, "sentinel", "master", SERVICE)
            lines = info.splitlines()
            fields = dict(zip(lines[::2], lines[1::2], strict=False))
            if fields.get("num-slaves") != "1" or fields.get("num-other-sentinels") != "2":
                return False
        return True
