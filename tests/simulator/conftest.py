"""Fixtures for the simulator's tests: an httpx client that speaks to a simulator like a d6 client does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import CREDENTIALS


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A bare client; each test names the URL and headers it sends."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def d6(simulator: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the default simulator's `/api` with the sandbox credentials and school 1000."""
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    async with httpx.AsyncClient(base_url=simulator.base_url, headers=headers, timeout=10) as client:
        yield client
