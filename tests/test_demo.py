"""`d6-bridge demo` as a newcomer runs it: events arrive verified, and Ctrl-C ends it cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bridge.demo import SIMULATOR_PORT
from bridge.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_verified_events_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_PORT"] = str(free_port())
    out = (tmp_path / "demo.out").open("w+")
    held = socket.socket()  # the simulator's port taken (by us, or by whatever has it already)
    with contextlib.suppress(OSError):
        held.bind(("127.0.0.1", SIMULATOR_PORT))
        held.listen()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and (
            text.count("verified ") < 3 or "written through the bridge" not in text
        ):
            time.sleep(0.5)
            text = (tmp_path / "demo.out").read_text()
            assert process.poll() is None, text
        assert text.count("verified ") >= 3, text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        held.close()
        if process.poll() is None:
            process.kill()
    text = (tmp_path / "demo.out").read_text()
    assert "integration.activated" in text  # the demo's inactive school was activated by the bridge
    assert "write-back    POST /v1/schools/1000/notes" in text and "command.succeeded" in text
    assert "note.created" in text and "[written through the bridge: cmd_1000_" in text
    assert "/schema/swagger" in text and "/health/ready" in text and "/metrics" in text and "/console" in text
    assert "admin token" in text and "NOT durable" in text
    assert "REJECTED" not in text and "Traceback" not in text
    # It says where it moved and why, and what it relaxes; and no log line slips into its output.
    assert "the d6 simulator to port " in text and f": {SIMULATOR_PORT} is already in use" in text
    assert "BRIDGE_ALLOW_PRIVATE_URLS=true: subscriber URLs may be private addresses" in text
    assert "BRIDGE_RETRY_SCHEDULE=1,5,30: a failed delivery is retried after 1, 5 and 30 seconds" in text
    assert not [line for line in text.splitlines() if line.lstrip().startswith("{")], text
    assert text.rstrip().endswith("demo stopped")
