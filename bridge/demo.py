"""`d6-bridge demo`: the simulator, the bridge and a verifying subscriber in one process.

Nothing else is needed: without `BRIDGE_REDIS_URL` the bridge uses the embedded `memory://` store
(fakeredis: the same commands and Lua scripts as Redis, in this process, not durable). The simulator
seeds a few schools, one authorised but not activated (the bridge activates it), and changes records
steadily. Polling is fast (seconds, not minutes) so events show up at once. Ctrl-C stops it all cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import secrets
import signal
import socket
import sys
from collections.abc import Generator, Mapping
from typing import Any, Final, Literal

import httpx
import uvicorn

from bridge.app import Services, create_app
from bridge.demo_subscriber import DemoSubscriber
from bridge.logs import configure_logging
from bridge.settings import Settings, load_settings, or_exit
from bridge.simulator.app import SimulatorConfig, create_simulator_app

HOST: Final = "127.0.0.1"
SIMULATOR_PORT: Final = 8081
SUBSCRIBER_PORT: Final = 8082

DEMO_DEFAULTS: Final = {
    "BRIDGE_REDIS_URL": "memory://",
    "BRIDGE_HOST": HOST,
    "BRIDGE_RESOURCES": "all",
    "BRIDGE_INTEGRATIONS_POLL_SECONDS": "5",
    "BRIDGE_SCHOOL_POLL_SECONDS": "5",
    "BRIDGE_POLL_JITTER_SECONDS": "1",
    "BRIDGE_ALLOW_PRIVATE_URLS": "true",
    "BRIDGE_RETRY_SCHEDULE": "1,5,30",
    "BRIDGE_LOG_LEVEL": "warning",
    "BRIDGE_LOG_FORMAT": "console",  # the demo's output is for a person, terminal or not
}
RELAXED: Final = {
    "BRIDGE_ALLOW_PRIVATE_URLS": "subscriber URLs may be private addresses (its subscriber is on 127.0.0.1)",
    "BRIDGE_RETRY_SCHEDULE": "a failed delivery is retried after 1, 5 and 30 seconds, then dead-lettered "
    "(serve: over about 26 hours)",
    "BRIDGE_SCHOOL_POLL_SECONDS": "schools are polled every 5 seconds (serve: every 5 minutes)",
}
"""What the demo relaxes for local use, shown in its banner when the environment did not set it."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the demo, so one Ctrl-C stops all three servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def port_or_free(preferred: int) -> int:
    """`preferred` when it is free on the loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port on the loopback")


Notes = list[tuple[str, str]]
"""Lines for the banner: (`moved` or `relaxed`, what and why)."""


def moved_port(preferred: int, what: str, notes: Notes, hint: str = "") -> int:
    """`port_or_free(preferred)`; when the port had to change, a note for the banner says so and why."""
    port = port_or_free(preferred)
    if port != preferred:
        notes.append(("moved", f"{what} to port {port}: {preferred} is already in use on {HOST}{hint}"))
    return port


def demo_settings(environ: Mapping[str, str], simulator_url: str) -> Settings:
    env = {**DEMO_DEFAULTS, **environ}
    env.setdefault("BRIDGE_ADMIN_TOKEN", secrets.token_urlsafe(24))
    env["BRIDGE_D6_BASE_URL"] = f"{simulator_url}/api"
    env["BRIDGE_D6_USERNAME"] = env["BRIDGE_D6_PASSWORD"] = "sandbox"  # noqa: S105 - the simulator's
    return or_exit(lambda: load_settings(env, isatty=sys.stdout.isatty()))


def run_demo(settings: Settings, *, environ: Mapping[str, str] | None = None, churn: float = 0.5) -> None:
    """Run until SIGINT or SIGTERM. `settings` (the environment's) decide only the store and the port."""
    environ = dict(os.environ if environ is None else environ)
    notes: Notes = []
    if "BRIDGE_PORT" not in environ:
        hint = " (set BRIDGE_PORT to choose it)"
        environ["BRIDGE_PORT"] = str(moved_port(settings.port, "the bridge", notes, hint))
    simulator_port = moved_port(SIMULATOR_PORT, "the d6 simulator", notes)
    notes += [
        ("relaxed", f"{name}={DEMO_DEFAULTS[name]}: {RELAXED[name]}")
        for name in RELAXED
        if name not in environ
    ]
    demo = demo_settings(environ, f"http://{HOST}:{simulator_port}")
    configure_logging(level=demo.log_level, fmt=demo.log_format, secrets=[demo.admin_token])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(demo, simulator_port, churn, notes))
    print("demo stopped", flush=True)


async def _main(settings: Settings, simulator_port: int, churn: float, notes: Notes) -> None:
    subscriber = DemoSubscriber()
    subscriber_port = moved_port(SUBSCRIBER_PORT, "the demo subscriber", notes)
    simulator = create_simulator_app(
        SimulatorConfig(schools=3, learners=60, debtors=40, churn=churn, inactive_schools=1, seed=7)
    )
    services = Services.build(settings)
    servers = [
        _server(simulator, simulator_port),
        _server(subscriber, subscriber_port, lifespan="off"),
        _server(create_app(settings, services), settings.port),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                raise SystemExit("demo: a server could not start (is its port taken?)")
            await asyncio.sleep(0.05)
        subscription = await services.subscriptions.create(
            url=f"http://{HOST}:{subscriber_port}/webhooks/d6", description="demo subscriber"
        )
        subscriber.secret = subscription.secret
        _banner(settings, simulator_port, subscriber_port, notes)
        writing = asyncio.create_task(_write_back(services, settings))
        await stop.wait()
        writing.cancel()
    finally:
        # The bridge first: its last polls and deliveries still reach the simulator and the subscriber.
        servers[-1].should_exit = True
        await asyncio.gather(tasks[-1], return_exceptions=True)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        print(
            f"\nverified {subscriber.verified} webhooks, rejected {subscriber.rejected}",
            flush=True,
        )


async def _write_back(services: Services, settings: Settings, school_id: int = 1000) -> None:
    """Once the school's notes are baselined, one note written into d6 through the bridge's API
    (docs/commands.md): its `command.succeeded` and its `note.created`, marked with the command as its
    origin, then arrive like any event."""
    person = None
    while person is None:  # the school's first polls, not an event, end the wait
        await asyncio.sleep(0.5)
        notes = (await services.status.get(school_id)).feeds.get("notes")
        if notes is None or not notes.last_success:  # its baseline first: a note before it is told by none
            continue
        debtors = await services.snapshots.all_records(school_id, "debtor")
        person = next((d.get("accountable_person_id") for d in debtors.values()), None)
    body = {
        "accountable_person_id": person,
        "date": datetime.date.today().isoformat(),
        "note_type_id": 1,
        "communication_type_id": 1,
        "note": "SMS reminder sent (written through the bridge by the demo)",
    }
    base = f"http://{HOST}:{settings.port}"
    headers = {"Authorization": f"Bearer {settings.admin_token}", "Idempotency-Key": "demo-reminder-1"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        made = (await client.post(f"/v1/schools/{school_id}/notes", json=body)).json()
    print(
        f"write-back    POST /v1/schools/{school_id}/notes: command {made.get('command_id')} "
        f"{made.get('state')} (GET /v1/commands/{made.get('command_id')})",
        flush=True,
    )


def _server(app: Any, port: int, lifespan: Literal["on", "off"] = "on") -> _Server:
    config = uvicorn.Config(
        app, host=HOST, port=port, lifespan=lifespan, log_config=None, access_log=False, log_level="warning"
    )
    return _Server(config)


def _banner(settings: Settings, simulator_port: int, subscriber_port: int, notes: Notes) -> None:
    relaxed = any(label == "relaxed" for label, _ in notes)
    base = f"http://{HOST}:{settings.port}"
    store = (
        "memory:// (embedded in this process, NOT durable)"
        if settings.uses_memory_store
        else settings.redis_url
    )
    print(
        "d6 bridge demo\n"
        f"  console       {base}/console  (sign in with the admin token)\n"
        f"  API docs      {base}/schema/swagger\n"
        f"  health        {base}/health/ready\n"
        f"  metrics       {base}/metrics\n"
        f"  admin token   {settings.admin_token}\n"
        f"                curl -H 'Authorization: Bearer {settings.admin_token}' {base}/v1/events\n"
        f"  d6 simulator  http://{HOST}:{simulator_port}/api  (controls: http://{HOST}:{simulator_port}/_sim/)\n"
        f"  subscriber    http://{HOST}:{subscriber_port}/webhooks/d6  (verifies every signature)\n"
        f"  store         {store}\n"
        + "".join(f"  {label:<13} {note}\n" for label, note in sorted(notes, key=lambda n: n[0]))
        + ("  (relaxed for local use only: serve keeps the safe defaults)\n" if relaxed else "")
        + "Schools are activated and baselined first; then every change shows up below. Ctrl-C stops.\n",
        flush=True,
    )
