"""`d6-bridge demo` as a newcomer runs it: events arrive verified, and Ctrl-C ends it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bridge.testing.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_verified_events_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_PORT"] = str(free_port())
    out = (tmp_path / "demo.out").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and text.count("verified ") < 3:
            time.sleep(0.5)
            text = (tmp_path / "demo.out").read_text()
            assert process.poll() is None, text
        assert text.count("verified ") >= 3, text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = (tmp_path / "demo.out").read_text()
    assert "integration.activated" in text  # the demo's inactive school was activated by the bridge
    assert "/schema/swagger" in text and "/health/ready" in text and "/metrics" in text and "/console" in text
    assert "admin token" in text and "NOT durable" in text
    assert "REJECTED" not in text and "Traceback" not in text
    assert text.rstrip().endswith("demo stopped")
