"""The processes a suite runs: redis-server, the d6 simulator and `d6-bridge serve`, each a child process.

Every one listens on a free loopback port (never 127.0.0.1:6379) and can be killed, paused and started
again on the same port and data directory, which is what the chaos and fault suites need. Logs go to
files in the suite's work directory, so a failed run can be read afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import httpx
import redis

from tests.servers import free_port, wait_for_port

ROOT: Final = Path(__file__).resolve().parents[1]
TOKEN: Final = "suite-admin-token-0123456789abcdef"
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Child:
    """A child process that can be killed and started again with the same command line."""

    def __init__(self, name: str, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = command
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n--- start {self.starts + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no cleanup runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after `timeout`); returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


class RedisServer(Child):
    """A redis-server of our own; its data directory outlives restarts (so AOF recovery can be tested)."""

    def __init__(
        self, workdir: Path, *, appendfsync: str | None = None, extra: tuple[str, ...] = (), port: int = 0
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
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

    def start(self) -> None:
        super().start()
        wait_for_port(self.port, self.process, timeout=20)
        client = self.client()
        deadline = time.monotonic() + 30
        while True:  # after a restart Redis answers LOADING until the AOF is read back
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def used_memory(self) -> int:
        with contextlib.closing(self.client()) as client:
            return int(client.info("memory")["used_memory"])

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers, like a partitioned or frozen host."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


class Simulator(Child):
    """`d6-bridge simulator` in its own process, with a client for its `/_sim/` controls."""

    def __init__(
        self, workdir: Path, *, schools: int, learners: int, debtors: int, seed: int = 1, churn: float = 0.0
    ) -> None:
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "bridge",
            "simulator",
            "--port",
            str(self.port),
            "--schools",
            str(schools),
            "--learners",
            str(learners),
            "--debtors",
            str(debtors),
            "--seed",
            str(seed),
            "--churn",
            str(churn),
        ]
        super().__init__("simulator", command, workdir / "simulator.log", env={**os.environ})
        self.school_ids = list(range(1000, 1000 + schools))
        self.control = httpx.Client(base_url=f"http://127.0.0.1:{self.port}/_sim", timeout=60)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        super().start()
        wait_for_port(self.port, self.process, timeout=300)

    def churn(self, rate: float) -> dict[str, Any]:
        return self._call("POST", "/churn", json={"rate": rate})

    def faults(self, **fields: Any) -> None:
        self._call("POST", "/faults", json=fields)

    def clear_faults(self) -> None:
        self.control.delete("/faults").raise_for_status()

    def truth(self, school_id: int, resource: str) -> list[dict[str, Any]]:
        """Every record as the API sends it with all_accounts=1 (`learners` or `accountablepersons`)."""
        return list(self._call("GET", f"/schools/{school_id}/{resource}")["data"])

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/requests")["requests"])

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.control.request(method, path, **kwargs)
        answer.raise_for_status()
        return answer.json() if answer.content else None


def serve_env(redis_url: str, d6_base_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a `serve` process for a suite: short intervals, loopback subscribers allowed."""
    return {
        **os.environ,
        "BRIDGE_REDIS_URL": redis_url,
        "BRIDGE_D6_BASE_URL": d6_base_url,
        "BRIDGE_D6_USERNAME": "sandbox",
        "BRIDGE_D6_PASSWORD": "sandbox",
        "BRIDGE_ADMIN_TOKEN": TOKEN,
        "BRIDGE_HOST": "127.0.0.1",
        "BRIDGE_D6_MAX_RPS": "200",
        "BRIDGE_INTEGRATIONS_POLL_SECONDS": "1",
        "BRIDGE_SCHOOL_POLL_SECONDS": "2",
        "BRIDGE_POLL_JITTER_SECONDS": "0.2",
        "BRIDGE_ALLOW_PRIVATE_URLS": "true",
        "BRIDGE_EMIT_INITIAL_SNAPSHOT": "true",
        "BRIDGE_LOG_LEVEL": "warning",
        "BRIDGE_LOG_FORMAT": "json",
        **overrides,
    }


class Serve(Child):
    """One `d6-bridge serve` replica; a restart keeps its port, as a restarted pod keeps its address."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__(
            name,
            [sys.executable, "-m", "bridge", "serve"],
            workdir / f"{name}.log",
            env={**env, "BRIDGE_PORT": str(self.port)},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> int | None:
        """The status code of `/health/ready`, or None when nothing answers."""
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=5).status_code
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for 200 from `/health/ready`; returns how long it took."""
        started = time.monotonic()
        while self.ready() != 200:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited with {self.process and self.process.returncode}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} not ready after {timeout} s")
            time.sleep(0.05)
        return time.monotonic() - started


class RedisCluster:
    """A Redis Cluster of `masters` redis-servers of our own (no replicas), created with `redis-cli --cluster
    create`; `url` names the first node, as `BRIDGE_REDIS_URL` does with `BRIDGE_REDIS_CLUSTER=true`."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(workdir, extra=_cluster_options(), port=_cluster_port()) for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes]

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-tools)")
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for node in self.nodes:
            with contextlib.closing(node.client()) as client:
                while client.cluster("info").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
                    time.sleep(0.1)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=10)

    def used_memory(self) -> int:
        """INFO used_memory summed over the masters."""
        return sum(node.used_memory() for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_options() -> tuple[str, ...]:
    return (
        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
        *("--cluster-node-timeout", "5000"),
    )


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
