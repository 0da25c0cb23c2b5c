"""redis-server and Redis Cluster of our own, on free loopback ports (never the shared 127.0.0.1:6379).

`RedisServer` and `RedisCluster` are for runs that kill, pause and restart Redis (the data directory
outlives restarts, so AOF recovery can be tested); `redis_server()` and `redis_cluster()` are the
throwaway forms a test session or a benchmark needs: a URL, and everything removed afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from bridge.testing.processes import Child
from bridge.testing.servers import free_port, wait_for_port
from bridge.testing.waiting import wait_until


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed (apt-get install redis-server), or set BRIDGE_TEST_REDIS_URL for tests"
        )
    return path


class RedisServer(Child):
    """A redis-server in `workdir/redis-<port>/`, with its log there; AOF on when `appendfsync` is given."""

    def __init__(
        self, workdir: Path, *, appendfsync: str | None = None, extra: tuple[str, ...] = (), port: int = 0
    ) -> None:
        binary = _binary("redis-server")
        self.port = port or free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", appendfsync, "--save", ""]
            if appendfsync
            else ["--appendonly", "no", "--save", ""]
        )
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        super().__init__(f"redis:{self.port}", [*command, *persistence, *extra], self.dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pids(self) -> dict[str, int]:
        return {"redis": self.pid}

    def start(self) -> None:
        super().start()
        wait_for_port(self.port, self.process, timeout=20)
        with contextlib.closing(self.client()) as client:
            deadline = time.monotonic() + 30
            while True:  # after a restart Redis answers LOADING until the AOF is read back
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def client(self, socket_timeout: float = 5.0) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=socket_timeout)

    def used_memory(self) -> int:
        with contextlib.closing(self.client()) as client:
            return int(client.info("memory")["used_memory"])

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers, like a partitioned or frozen host."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


class RedisCluster:
    """A Redis Cluster of `masters` redis-servers (no replicas), created with `redis-cli --cluster create`;
    `url` names the first node, as `BRIDGE_REDIS_URL` does with `BRIDGE_REDIS_CLUSTER=true`."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        options = (
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", "5000"),
        )
        self.nodes = [RedisServer(workdir, extra=options, port=_cluster_port()) for _ in range(masters)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def pids(self) -> dict[str, int]:
        return {f"redis-{n + 1}": node.pid for n, node in enumerate(self.nodes)}

    def start(self) -> None:
        cli = _binary("redis-cli")
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(  # noqa: S603 - redis-cli on our own nodes
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for node in self.nodes:
            wait_until(functools.partial(_cluster_state_ok, node), timeout=30, what="cluster_state:ok")

    def client(self, socket_timeout: float = 10.0) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=socket_timeout)

    def used_memory(self) -> int:
        """INFO used_memory summed over the masters."""
        return sum(node.used_memory() for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def redis_server(*, port: int | None = None) -> Iterator[str]:
    """A throwaway redis-server (on a free port unless given); yields its URL, removes it afterwards."""
    with tempfile.TemporaryDirectory(prefix="bridge-redis-") as workdir:
        server = RedisServer(Path(workdir), port=port or 0)
        try:
            server.start()
            yield server.url
        finally:
            server.stop()


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[str]:
    """A throwaway Redis Cluster of `masters` nodes; yields the URL of one node."""
    with tempfile.TemporaryDirectory(prefix="bridge-cluster-") as workdir:
        cluster = RedisCluster(Path(workdir), masters)
        try:
            cluster.start()
            yield cluster.url
        finally:
            cluster.stop()


def _cluster_state_ok(node: RedisServer) -> bool:
    with contextlib.closing(node.client()) as client:
        return bool(client.cluster("info").get("cluster_state") == "ok")


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and a valid port too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")
