"""What the d6 client tests share: settings pointed at a simulator, its controls, mock d6 answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from bridge.d6 import D6Client, NoBudget
from bridge.settings import Settings
from bridge.testing.servers import SimulatorServer

FAST = {"backoff_base": 0.01, "backoff_cap": 0.05}
"""Retry timing that keeps tests fast while still going through the backoff path."""


def sim_settings(sim: SimulatorServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "d6_base_url": sim.base_url,
        "d6_username": "sandbox",
        "d6_password": "sandbox",
        "d6_max_rps": 1000.0,
        "d6_timeout_seconds": 5.0,
        **overrides,
    }
    return Settings(**values)


class Control:
    """The simulator's `/_sim/` controls (no credentials)."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.url = sim.control_url
        self._http = httpx.AsyncClient(timeout=10)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._http.request(method, f"{self.url}{path}", json=body)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    async def faults(self, **spec: Any) -> None:
        await self.call("POST", "/faults", spec)

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.call("GET", "/stats")
        return stats

    async def requests(self) -> list[dict[str, Any]]:
        body = await self.call("GET", "/requests")
        requests: list[dict[str, Any]] = body["requests"]
        return requests

    async def reset(self) -> None:
        await self.call("POST", "/stats/reset")

    async def aclose(self) -> None:
        await self._http.aclose()


Handler = Callable[[httpx.Request], httpx.Response]


def mock_client(handler: Handler, **kwargs: Any) -> D6Client:
    """A client whose network is `handler` (httpx.MockTransport): for branches a real peer can't produce."""
    settings = Settings(d6_base_url="https://d6.test/api", d6_username="user", d6_password="pw-secret-1")
    options: dict[str, Any] = {"budget": NoBudget(), **FAST, **kwargs}
    return D6Client(settings, transport=httpx.MockTransport(handler), **options)


def listing(records: list[dict[str, Any]], **meta: Any) -> httpx.Response:
    return httpx.Response(200, json={"data": records, "meta": {"limit": 50, "max_allowed_limit": 50, **meta}})
