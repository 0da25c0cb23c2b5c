"""The d6 Integrate v2 simulator: d6's API under `/api`, generated data, controls under `/_sim/`.

Entry points live in `bridge.simulator.app` (`SimulatorConfig`, `create_simulator_app`, `run_simulator`).
"""
