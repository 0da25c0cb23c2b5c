"""Fixtures for the d6 client tests: the simulator's controls and a client on it (see helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bridge.d6 import D6Client
from bridge.testing.servers import SimulatorServer
from tests.d6.helpers import FAST, Control, sim_settings


@pytest.fixture
async def control(simulator: SimulatorServer) -> AsyncIterator[Control]:
    ctl = Control(simulator)
    yield ctl
    await ctl.aclose()


@pytest.fixture
async def client(simulator: SimulatorServer) -> AsyncIterator[D6Client]:
    """A client on the default simulator, with fast retries and a budget that does not slow tests."""
    async with D6Client(sim_settings(simulator), **FAST) as d6:
        yield d6
