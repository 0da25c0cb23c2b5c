"""The `d6-bridge` command: serve, demo, simulator, check."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bridge import __version__
from bridge.settings import Settings, load_settings, or_exit


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        raise SystemExit(2)
    args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d6-bridge",
        description="Signed webhooks for the poll-only d6 Integrate API. Settings come from BRIDGE_* "
        "environment variables (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"d6-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")

    serve = commands.add_parser("serve", help="run the service: HTTP API, scheduler and delivery workers")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo", help="everything in one process: simulator, bridge on the in-memory store, demo subscriber"
    )
    demo.set_defaults(run=_demo)

    sim = commands.add_parser("simulator", help="run the d6 Integrate v2 simulator on its own port")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sim.add_argument("--port", type=_port, default=8081, help="port to listen on (default 8081)")
    sim.add_argument("--schools", type=_count, default=5, help="seeded schools (default 5)")
    sim.add_argument("--learners", type=_count, default=1000, help="learners per school (default 1000)")
    sim.add_argument(
        "--debtors", type=_count, default=800, help="accountable persons per school (default 800)"
    )
    sim.add_argument("--seed", type=int, default=1, help="seed of the generated data (default 1)")
    sim.add_argument("--churn", type=_rate, default=0.0, help="record changes per second (default 0)")
    sim.add_argument(
        "--churn-skew", type=_rate, default=0.0, help="school of rank r gets 1/r^S of the churn (default 0)"
    )
    sim.add_argument("--inactive-schools", type=_count, default=0, help="seeded schools not yet activated")
    sim.add_argument("--username", default="sandbox", help="expected HTTP-X-USERNAME (default sandbox)")
    sim.add_argument("--password", default="sandbox", help="expected HTTP-X-PASSWORD (default sandbox)")
    sim.set_defaults(run=_simulator)

    check = commands.add_parser("check", help="validate the settings and reach Redis and d6 once")
    check.set_defaults(run=_check)
    return parser


def _port(text: str) -> int:
    value = _count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _settings() -> Settings:
    return or_exit(load_settings)


def _serve(_args: argparse.Namespace) -> None:
    settings = _settings()
    or_exit(settings.require_for_serve)
    from bridge.serve import run_serve

    run_serve(settings)


def _demo(_args: argparse.Namespace) -> None:
    from bridge.demo import run_demo

    run_demo(_settings())


def _simulator(args: argparse.Namespace) -> None:
    from bridge.simulator.app import SimulatorConfig, run_simulator

    config = SimulatorConfig(
        schools=args.schools,
        learners=args.learners,
        debtors=args.debtors,
        seed=args.seed,
        churn=args.churn,
        churn_skew=args.churn_skew,
        inactive_schools=args.inactive_schools,
        username=args.username,
        password=args.password,
    )
    print(f"d6 simulator on http://{args.host}:{args.port}/api (controls under /_sim/)", flush=True)
    run_simulator(config, args.host, args.port)


def _check(_args: argparse.Namespace) -> None:
    from bridge.check import run_check
    from bridge.logs import configure_logging
    from bridge.settings import secrets_of

    settings = _settings()
    # Each check prints its own line, failures included; a log line would only say one again.
    configure_logging(level="error", fmt=settings.log_format, secrets=secrets_of(settings))
    raise SystemExit(asyncio.run(run_check(settings, sys.stdout)))


if __name__ == "__main__":
    main()
