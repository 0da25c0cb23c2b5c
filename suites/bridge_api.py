"""The bridge's admin API as a suite uses it: any live replica will do, so a killed one is skipped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from bridge.testing.settings import TOKEN


class BridgeApi:
    def __init__(self, urls: Callable[[], Sequence[str]], token: str = TOKEN) -> None:
        """`urls` gives the base URLs of the replicas now (they change as replicas die and return)."""
        self._urls = urls
        self._client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def call(self, method: str, path: str, *, attempts: int = 60, **kwargs: Any) -> Any:
        """One request to the first replica that answers; retried while none does (or Redis is away)."""
        last: Exception | None = None
        for _ in range(attempts):
            for base in self._urls():
                try:
                    answer = self._client.request(method, base + path, **kwargs)
                except httpx.HTTPError as error:
                    last = error
                    continue
                if answer.status_code == 503:
                    last = RuntimeError(f"{path}: 503 {answer.text[:200]}")
                    continue
                answer.raise_for_status()
                return answer.json() if answer.content else None
            time.sleep(0.5)
        raise RuntimeError(f"no replica answered {method} {path}: {last}")

    def create_subscription(self, url: str, **fields: Any) -> dict[str, Any]:
        return dict(self.call("POST", "/v1/subscriptions", json={"url": url, **fields}))

    def every(self, path: str, limit: int = 500) -> list[dict[str, Any]]:
        """Every item of a list endpoint, page after page (`{"data", "meta": {"next_cursor"?}}`)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = self.call("GET", path, params=params)
            items += page["data"]
            cursor = page["meta"].get("next_cursor")
            if not cursor:
                return items

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.every("/v1/dead-letters", limit=200)

    def retry_dead_letters(self) -> int:
        """Send every dead letter again; returns how many were requeued."""
        requeued = self.call("POST", "/v1/dead-letters/retry", json={})["requeued"]
        return len(requeued) if isinstance(requeued, list) else int(requeued)

    def events(self) -> list[dict[str, Any]]:
        """The whole event log through `GET /v1/events`, every page."""
        return self.every("/v1/events")

    def schools(self) -> list[dict[str, Any]]:
        return self.every("/v1/schools")
