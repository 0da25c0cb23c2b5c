"""The processes a suite runs: the d6 simulator and `d6-bridge serve`, each a child process (Redis and
Redis Cluster come from `bridge.testing.redis`), and what a suite measures of them.

Every one listens on a free loopback port (never 127.0.0.1:6379) and can be killed, paused and started
again on the same port and data directory, which is what the chaos and fault suites need. Logs go to
files in the suite's work directory, so a failed run can be read afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import httpx

from bridge.testing.processes import Child
from bridge.testing.servers import free_port, wait_for_port

ROOT: Final = Path(__file__).resolve().parents[1]
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


class Processes:
    """Processes by label, and what /proc says of them: CPU seconds now, the peak RSS seen so far."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_rss: dict[str, int] = {}

    def cpu(self) -> dict[str, float]:
        values = {}
        for label, pid in self.pids.items():
            with contextlib.suppress(OSError):
                values[label] = cpu_seconds(pid)
        return values

    def sample_rss(self) -> None:
        for label, pid in self.pids.items():
            with contextlib.suppress(OSError):
                self.peak_rss[label] = max(self.peak_rss.get(label, 0), rss_bytes(pid))


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
        super().__init__("simulator", command, workdir / "simulator.log", env={**os.environ}, cwd=ROOT)
        self.school_ids = list(range(1000, 1000 + schools))
        self.control = httpx.Client(base_url=f"http://127.0.0.1:{self.port}/_sim", timeout=60)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        super().start()
        wait_for_port(self.port, self.process, timeout=300)

    def churn(self, rate: float, skew: float | None = None) -> dict[str, Any]:
        """Changes a second; with `skew`, the school of rank r (in id order) gets a share as 1/r^skew."""
        return self._call("POST", "/churn", json={"rate": rate, **({} if skew is None else {"skew": skew})})

    def changes(self, since: float | None = None) -> list[dict[str, Any]]:
        """What changed in d6 after `since` (Unix time) and when, oldest first (`/_sim/changes`)."""
        params = {} if since is None else {"since": since}
        return list(self._call("GET", "/changes", params=params)["changes"])

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


class Serve(Child):
    """One `d6-bridge serve` replica; a restart keeps its port, as a restarted pod keeps its address."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__(
            name,
            [sys.executable, "-m", "bridge", "serve"],
            workdir / f"{name}.log",
            env={**env, "BRIDGE_PORT": str(self.port)},
            cwd=ROOT,
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


def start_serves(serves: Iterable[Serve], timeout: float = 60.0) -> None:
    """Start every replica that is down, then wait until every one is ready (they boot side by side)."""
    serves = list(serves)
    for serve in serves:
        if not serve.alive:
            serve.start()
    for serve in serves:
        serve.wait_ready(timeout=timeout)


def stop_serves(serves: Iterable[Serve], timeout: float = 45.0) -> dict[str, tuple[int | None, float]]:
    """SIGTERM each replica in turn (SIGKILL after `timeout`): its exit code and seconds to exit, by name."""
    stopped = {}
    for serve in serves:
        began = time.monotonic()
        code = serve.stop(timeout=timeout)
        stopped[serve.name] = (code, time.monotonic() - began)
    return stopped
