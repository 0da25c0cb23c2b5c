"""The bridge app with the console mounted, as `create_app` serves it, and the browser that drives it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from litestar import Litestar

from bridge.app import Services, create_app
from bridge.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def console_app(settings: Settings, services: Services | None = None) -> Litestar:
    """`create_app`, which mounts the console; fails loudly if it ever stops doing so."""
    app = create_app(settings, services)
    assert any(route.path.startswith("/console") for route in app.routes), "create_app lost the console"
    return app


def chromium_path() -> str:
    """Debian's chromium, installed here when missing and allowed (root with apt-get); else skip."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            env=env,
            capture_output=True,
            timeout=600,
            check=False,
        )
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"no browser: {CHROMIUM} is missing and could not be installed (apt-get install chromium)"
        )
    return CHROMIUM
