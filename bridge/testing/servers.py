"""Servers on loopback: free ports, an ASGI app under uvicorn in a thread, the d6 simulator."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from typing import Any, Self

import uvicorn


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel picks it; someone may take it before we do)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    """Block until something accepts connections on the loopback `port`; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


class ThreadedServer:
    """An ASGI app served by uvicorn in a daemon thread, on a free loopback port (or the one given).

    A context manager; `start()` and `stop()` for callers that hold several servers for a whole run.
    """

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimulatorServer(ThreadedServer):
    """The d6 simulator in this process: `base_url` is what a bridge points at, `control_url` its
    `/_sim/` controls. Takes any `SimulatorConfig` field."""

    def __init__(self, **config: Any) -> None:
        from bridge.simulator.app import SimulatorConfig, create_simulator_app

        super().__init__(create_simulator_app(SimulatorConfig(**config)))

    @property
    def base_url(self) -> str:
        return f"{self.url}/api"

    @property
    def control_url(self) -> str:
        return f"{self.url}/_sim"
