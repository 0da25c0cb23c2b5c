"""The bridge app with the console mounted, as `create_app` serves it; the browser that drives it; and what
the browser tests share: the stack they run against and how a test signs in and moves between pages."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from bridge.app import Services, create_app
from bridge.settings import Settings
from bridge.testing.receivers import Receiver
from bridge.testing.settings import TOKEN

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
READONLY_TOKEN = "console-readonly-token-0123456789"
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
SCRIPT_SCHOOL = "<script>alert(1)</script>"
SCRIPT_SCHOOL_ID = 1100
SCRIPT_LEARNER = "<img src=x onerror=alert(2)>"
WAIT_MS = 15_000


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


@dataclass
class Stack:
    bridge: str
    simulator: str
    ok: Receiver
    flaky: Receiver
    flaky_url: str
    ok_url: str
    script_learner: int
    failing: dict[str, bool] = field(default_factory=lambda: {"on": True})

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(
            method, self.bridge + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10, **kwargs
        )
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def settled(self) -> bool:
        """No subscription has a delivery waiting or in flight."""
        ids = [s["id"] for s in self.api("GET", "/v1/subscriptions")["data"]]
        return all(self.api("GET", f"/v1/subscriptions/{i}")["pending_deliveries"] == 0 for i in ids)

    def subscription(self, url: str) -> dict[str, Any]:
        return next(s for s in self.api("GET", "/v1/subscriptions?limit=500")["data"] if s["url"] == url)


def sign_in(page: Any, token: str = TOKEN) -> None:
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#page:not([hidden])")


def go(page: Any, name: str, ready: str) -> None:
    page.click(f"nav a[href='#{name}']")
    page.wait_for_selector(f"#page[data-page='{name}'] {ready}")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
