"""The d6 Integrate v2 simulator as one ASGI app: d6's API under `/api`, the controls under `/_sim/`.

`create_simulator_app` builds a fresh, seeded world per call (tests start many side by side);
`run_simulator` serves one for `d6-bridge simulator` until Ctrl-C.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote

import uvicorn
from litestar import Litestar
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.handlers import asgi
from litestar.types import Receive, Scope, Send

from bridge.simulator.api import D6Api
from bridge.simulator.churn import churning
from bridge.simulator.config import SimulatorConfig
from bridge.simulator.controls import CONTROL_HANDLERS, Simulator, not_found
from bridge.simulator.finance_controls import FINANCE_CONTROL_HANDLERS
from bridge.simulator.table import NotFound

__all__ = ["Simulator", "SimulatorConfig", "create_simulator_app", "run_simulator"]


def create_simulator_app(config: SimulatorConfig) -> Litestar:
    """A simulator whose state lives in this app alone (also reachable as `app.state.simulator`)."""
    simulator = Simulator(config)
    d6 = D6Api(simulator.world, config, simulator.faults, simulator.stats, simulator.writes)

    async def serve_d6(scope: Scope, receive: Receive, send: Send) -> None:
        # Litestar's mount rewrote `path` to the part after `/api/`; restore it so access logs show
        # the path the client asked for.
        if scope["type"] == ScopeType.HTTP:
            scope["path"] = unquote(scope["raw_path"].decode("latin-1"))
        await d6(scope, receive, send)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with churning(simulator.churn):
            yield

    def provide_simulator() -> Simulator:
        return simulator

    app = Litestar(
        route_handlers=[
            asgi("/api", is_mount=True, copy_scope=False)(serve_d6),
            *CONTROL_HANDLERS,
            *FINANCE_CONTROL_HANDLERS,
        ],
        dependencies={"sim": Provide(provide_simulator, sync_to_thread=False)},
        exception_handlers={NotFound: not_found},
        lifespan=[lifespan],
        openapi_config=None,
    )
    app.state.simulator = simulator
    return app


def run_simulator(config: SimulatorConfig, host: str, port: int) -> None:
    """Serve until Ctrl-C; uvicorn turns the signal into a clean shutdown (the churn task is cancelled)."""
    app = create_simulator_app(config)
    root = f"http://{host}:{port}"
    print(
        f"d6 simulator: {config.schools} schools from {config.first_school_id}, "
        f"API at {root}/api (HTTP-X-USERNAME {config.username}), controls at {root}/_sim/"
    )
    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="on")
