"""Operating a real `d6-bridge serve` process: readiness follows Redis, and the process survives its loss."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from bridge.testing.receivers import Receiver
from bridge.testing.redis import redis_server
from bridge.testing.servers import SimulatorServer, ThreadedServer, free_port
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import start_replica


async def readiness(port: int) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"http://127.0.0.1:{port}/health/ready")
        return answer.status_code, answer.json()


async def test_ready_goes_503_without_redis_and_recovers_by_itself(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=30, debtors=20, seed=2)
    redis_port = free_port()
    with redis_server(port=redis_port) as url:
        process, port = start_replica(url, sim.base_url, tmp_path)
        try:
            await wait_for(lambda: _status(port, 200), timeout=30, what="ready")
            _code, body = await readiness(port)
            assert {c["name"]: c["ok"] for c in body["components"]} == {
                "redis": True,
                "scheduler": True,
                "delivery": True,
            }
            # On a new store with the initial snapshot on, the first integrations poll waits for older
            # replicas to look at the store marker first (docs/operations.md, store resets).
            await wait_for(lambda: _polled(port), timeout=30, what="the first integrations poll in readiness")
            assert process.poll() is None
        except BaseException:
            process.kill()
            raise
    # Redis is gone now: its context manager stopped it.
    try:
        _status_code, body = await wait_for(lambda: _status(port, 503), timeout=20, what="not ready")
        redis_component = next(c for c in body["components"] if c["name"] == "redis")
        assert redis_component["ok"] is False and redis_component["detail"]
        assert body["status"] == "not ready"
        assert process.poll() is None, "the process must survive losing Redis"
        with redis_server(port=redis_port):
            await wait_for(lambda: _status(port, 200), timeout=30, what="ready again")
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    log = (tmp_path / f"replica-{port}.log").read_text()
    assert "Traceback" not in log, log[-3000:]


async def _polled(port: int) -> bool:
    _code, body = await readiness(port)
    return body["last_integrations_poll_age_seconds"] is not None


async def _status(port: int, wanted: int) -> tuple[int, dict[str, Any]] | None:
    try:
        status, body = await readiness(port)
    except (httpx.HTTPError, ValueError):
        return None
    return (status, body) if status == wanted else None


async def test_no_secret_reaches_the_logs_of_a_full_run(
    simulator_factory: Any, redis_url: str, tmp_path: Path
) -> None:
    password, token = "pw-Secr3t-9f8e7d6c", "admin-T0ken-abcdef012345"
    sim: SimulatorServer = simulator_factory(
        schools=2,
        learners=30,
        debtors=20,
        seed=4,
        inactive_schools=1,
        username="integrator",
        password=password,
    )
    receiver = Receiver()
    with ThreadedServer(receiver) as server:
        process, port = start_replica(
            redis_url,
            sim.base_url,
            tmp_path,
            BRIDGE_D6_USERNAME="integrator",
            BRIDGE_D6_PASSWORD=password,
            BRIDGE_ADMIN_TOKEN=token,
            BRIDGE_LOG_LEVEL="debug",
            BRIDGE_ALLOW_PRIVATE_URLS="true",
            BRIDGE_EMIT_INITIAL_SNAPSHOT="false",
        )
        try:
            await wait_for(lambda: _status(port, 200), timeout=30, what="ready")
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
            ) as client:
                created = await client.post("/v1/subscriptions", json={"url": f"{server.url}/hook"})
                assert created.status_code == 201
                secret = created.json()["secret"]
                await client.post(f"/v1/subscriptions/{created.json()['id']}/test")
                # A rejected token and a d6 failure are logged too; neither may carry a secret.
                wrong = {"Authorization": f"Bearer {password}"}
                assert (await client.get("/v1/events", headers=wrong)).status_code == 401
                control = httpx.AsyncClient(base_url=sim.control_url)
                await control.post("/faults", json={"error_rate": 1.0, "times": 3})
                await control.post("/schools/1000/revoke")
                await wait_for(lambda: _received(receiver, 2), timeout=30, what="deliveries")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    log = (tmp_path / f"replica-{port}.log").read_text()
    assert log.count("\n") > 20, log
    for value in (password, token, secret, secret.removeprefix("whsec_")):
        assert value not in log, f"a secret leaked into the logs: {value[:6]}..."


async def _received(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count
