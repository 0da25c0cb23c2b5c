"""The browser tests' fixtures: one stack a test module, one browser a module, a fresh tab a test.

The stack is wired as the demo wires it: the d6 simulator over HTTP, the test Redis, two webhook receivers
on loopback (one answers 200; one answers 500 until told otherwise, which makes dead letters), and a
school named `<script>alert(1)</script>` whose learner is named like an `<img onerror>`. A read-only token
is set too (`READONLY_TOKEN`). Each tab fails its test if the page raised a dialog, a script error or a
CSP violation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bridge.testing.receivers import Answer, Receiver
from bridge.testing.servers import SimulatorServer, ThreadedServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_until
from tests.console.helpers import (
    CHROMIUM_ARGS,
    READONLY_TOKEN,
    SCRIPT_LEARNER,
    SCRIPT_SCHOOL,
    SCRIPT_SCHOOL_ID,
    WAIT_MS,
    Stack,
    chromium_path,
    console_app,
)


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[Stack]:
    failing = {"on": True}
    flaky = Receiver(
        lambda _r, _n: Answer(status=500, body=b"down for the test") if failing["on"] else Answer()
    )
    ok = Receiver()
    with (
        SimulatorServer(schools=2, learners=24, debtors=4, seed=11) as sim,
        ThreadedServer(ok) as ok_server,
        ThreadedServer(flaky) as flaky_server,
    ):
        settings = bridge_settings(
            redis_url,
            f"{sim.url}/api",
            BRIDGE_REDIS_PREFIX=f"console{os.getpid()}x{time.monotonic_ns()}",
            BRIDGE_RETRY_SCHEDULE="0.1,0.1",
            BRIDGE_EMIT_INITIAL_SNAPSHOT="true",
            BRIDGE_READONLY_TOKEN=READONLY_TOKEN,
        )
        with ThreadedServer(console_app(settings)) as bridge:
            stack = Stack(
                bridge=bridge.url,
                simulator=sim.url,
                ok=ok,
                flaky=flaky,
                ok_url=f"{ok_server.url}/hooks/ok",
                flaky_url=f"{flaky_server.url}/hooks/flaky",
                script_learner=0,
                failing=failing,
            )
            stack.api(
                "POST",
                "/v1/subscriptions",
                json={
                    "url": stack.flaky_url,
                    "event_types": ["learner.created"],
                    "school_ids": [SCRIPT_SCHOOL_ID],
                    "description": "answers 500",
                },
            )
            # The school joins after the subscription exists, so its learners' events dead-letter there.
            school = {"school_id": SCRIPT_SCHOOL_ID, "name": SCRIPT_SCHOOL, "learners": 2, "debtors": 2}
            httpx.post(
                f"{sim.url}/_sim/schools", json={**school, "activated": True}, timeout=10
            ).raise_for_status()
            learner = httpx.post(
                f"{sim.url}/_sim/schools/{SCRIPT_SCHOOL_ID}/learners",
                json={"first_name": SCRIPT_LEARNER},
                timeout=10,
            ).json()
            stack.script_learner = learner["learner_id"]
            wait_until(
                lambda: len(stack.api("GET", "/v1/dead-letters")["data"]) == 3,
                timeout=30,
                what="three dead letters",
            )
            yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A fresh tab on the console; afterwards: no dialog, no script error, no CSP violation.

    The browser logs each refused API call (401) as an error; those are the sign-in tests' business.
    """
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    trouble: list[str] = []
    page.on("dialog", lambda dialog: (trouble.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("pageerror", lambda error: trouble.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            trouble.append(f"console {message.type}: {message.text}")
            if message.type == "error" and "status of 401" not in message.text
            else None
        ),
    )
    page.goto(f"{stack.bridge}/console")
    yield page
    context.close()
    assert trouble == []
