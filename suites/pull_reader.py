"""A pull subscription's reader for a suite (docs/pull.md): it reads through whatever the suite does.

It reads the feed page after page (`GET .../feed`, a long-poll of 1 s) from whichever replica answers, a
killed one skipped, and commits each page it read (`POST .../feed/commit`) through any replica. Now and then
(1 page in 10) it forgets its cursor before committing, as a reader that restarts without state of its own
does: it reads on from the committed position, so it sees that page again. What it read is kept as the
receipts a webhook receiver keeps, so the suite checks it the same way: every event it matches at least
once, each school's in sequence order, and a materialising consumer's copy of d6 (suites/checks.py).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time

import httpx
import msgspec

from bridge.testing.receivers import Received
from suites.bridge_api import BridgeApi

PAGE = 200
WAIT_SECONDS = 1
FORGET_RATE = 0.1


class PullReader:
    def __init__(self, api: BridgeApi, subscription_id: str, *, seed: int) -> None:
        self._api = api
        self._path = f"/v1/subscriptions/{subscription_id}/feed"
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pull-reader", daemon=True)
        self.pages = 0
        self.forgotten = 0
        """Cursors dropped before their commit (the pages read again)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=WAIT_SECONDS + 35)

    def snapshot(self) -> list[Received]:
        """Every event read so far, as a receipt, in the order read (pages read again included)."""
        with self._lock:
            return list(self._received)

    def _run(self) -> None:
        cursor: str | None = None
        while not self._stopping.is_set():
            params: dict[str, str | int] = {"limit": PAGE, "wait": WAIT_SECONDS}
            if cursor:
                params["cursor"] = cursor
            try:
                page = self._api.call("GET", self._path, params=params, attempts=1)
            except httpx.HTTPStatusError:
                cursor = None  # an expired cursor: read on from the committed position
                continue
            except (RuntimeError, httpx.HTTPError):
                time.sleep(0.2)  # no replica answered now
                continue
            now = time.time()
            read = [
                Received({"webhook-id": e["id"]}, msgspec.json.encode(e), now, status=200, problem="")
                for e in page["data"]
            ]
            with self._lock:
                self._received += read
            self.pages += 1
            cursor = page["meta"]["next_cursor"]
            if not read:
                continue
            if self._rng.random() < FORGET_RATE:
                self.forgotten += 1
                cursor = None
                continue
            with contextlib.suppress(RuntimeError, httpx.HTTPError):  # the next page's commit covers it
                self._api.call("POST", self._path + "/commit", json={"cursor": cursor}, attempts=1)
