"""`d6-bridge demo`: everything in one process on a fresh machine."""

from __future__ import annotations

from bridge.settings import Settings


def run_demo(settings: Settings) -> None:
    """Until the bridge itself is built, the demo runs the d6 simulator with a few seeded schools."""
    del settings
    from bridge.simulator.app import SimulatorConfig, run_simulator

    print(
        "d6-bridge demo: the bridge is not built yet, so the demo runs only the d6 simulator.\n"
        "  d6 simulator: http://127.0.0.1:8081/api  (try: curl -H 'HTTP-X-USERNAME: sandbox' "
        "-H 'HTTP-X-PASSWORD: sandbox' http://127.0.0.1:8081/api/v2/settings/clientintegrations)\n"
        "  Ctrl-C stops it.",
        flush=True,
    )
    run_simulator(
        SimulatorConfig(schools=3, learners=50, debtors=40, churn=0.5, inactive_schools=1), "127.0.0.1", 8081
    )
