"""`d6-bridge check` as an operator reads it, output not a terminal: one line per check, no log lines."""

from __future__ import annotations

import os
import subprocess
import sys

from bridge.testing.servers import free_port


def test_check_prints_only_its_own_lines_when_d6_does_not_answer() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env = {
        **clean,
        "BRIDGE_REDIS_URL": "memory://",
        "BRIDGE_ADMIN_TOKEN": "check-token-0123456789",
        "BRIDGE_D6_USERNAME": "sandbox",
        "BRIDGE_D6_PASSWORD": "sandbox",
        "BRIDGE_D6_BASE_URL": f"http://127.0.0.1:{free_port()}/api",
    }
    run = subprocess.run(
        [sys.executable, "-m", "bridge", "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    lines = (run.stdout + run.stderr).splitlines()
    assert all(line.startswith(("ok   ", "FAIL ")) for line in lines), lines
    assert lines[-1].startswith("FAIL d6 at http://127.0.0.1:") and "did not answer usefully" in lines[-1]
