"""Write-back (docs/commands.md) against the simulator: a note made through the bridge lands in d6 once and
comes back as `note.created`; an unknown outcome does not double it; retries, d6's refusals, deletes twice;
the API's refusals (validation before d6, Idempotency-Key, inactive school, read-only token)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from bridge.app import Services
from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge, school_events

SCHOOL = 1000
READER = "reader-token-abcdefghijklmnop"
FAST = {
    "BRIDGE_RESOURCES": "all",
    "BRIDGE_COMMAND_RETRY_SCHEDULE": "0.2,0.2,0.2",
    "BRIDGE_READONLY_TOKEN": READER,
}


async def _ready(services: Services) -> bool:
    status = await services.status.get(SCHOOL)
    return bool(status.feeds) and all(f.last_success for f in status.feeds.values())


async def _person(control: httpx.AsyncClient) -> int:
    debtor = (await control.get(f"/schools/{SCHOOL}/balances")).json()["data"][0]
    return int(debtor["accountable_person_id"])


def _note(person: int, text: str) -> dict[str, Any]:
    return {
        "accountable_person_id": person,
        "date": dt.date.today().isoformat(),
        "note_type_id": 1,
        "communication_type_id": 1,
        "note": text,
    }


async def _ended(client: httpx.AsyncClient, command_id: str) -> dict[str, Any] | None:
    command = (await client.get(f"/v1/commands/{command_id}")).json()
    return command if command["state"] in ("succeeded", "failed") else None


async def _notes_with(control: httpx.AsyncClient, text: str) -> list[dict[str, Any]]:
    notes = (await control.get(f"/schools/{SCHOOL}/notes")).json()["data"]
    return [n for n in notes if n.get("note") == text]


async def test_a_note_made_through_the_bridge_lands_once_and_comes_back_as_its_event(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=20, debtors=15, seed=41, inactive_schools=1)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with (
        running_bridge(bridge_settings(redis_url, sim.base_url, **FAST)) as services,
        api(services) as client,
    ):
        await wait_for(lambda: _ready(services), timeout=40, what="the first polls")
        person = await _person(control)
        body = _note(person, "SMS reminder sent (through the bridge)")
        await services.runner.stop()  # held back a moment: the queue depth gauge counts it
        made = await client.post(f"/v1/schools/{SCHOOL}/notes", json=body, headers={"Idempotency-Key": "k-1"})
        assert await services.commands.waiting() == 1
        scrape = (await client.get("/metrics")).text
        assert "d6_bridge_commands_waiting 1.0" in scrape, scrape[-2000:]
        services.runner.start()
        assert made.status_code == 202, made.text
        command = made.json()
        assert command["state"] in ("queued", "sending", "succeeded") and command["kind"] == "create_note"
        assert "note" not in command and "SMS reminder" not in made.text  # the note's text is not shown

        again = await client.post(
            f"/v1/schools/{SCHOOL}/notes", json=body, headers={"Idempotency-Key": "k-1"}
        )
        assert again.status_code == 202 and again.json()["command_id"] == command["command_id"]
        other = await client.post(
            f"/v1/schools/{SCHOOL}/notes",
            json={**body, "note": "another"},
            headers={"Idempotency-Key": "k-1"},
        )
        assert other.status_code == 409, other.text

        done = await wait_for(lambda: _ended(client, command["command_id"]), timeout=30, what="the command")
        assert done["state"] == "succeeded" and done["d6"]["status"] == 201, done
        note_id = done["result"]["note_id"]
        assert [n["note_id"] for n in await _notes_with(control, body["note"])] == [note_id]

        async def echoed() -> bool:
            return any(
                e.type == "note.created" and e.resource_id == str(note_id)
                for e in await school_events(redis, SCHOOL)
            )

        await wait_for(echoed, timeout=20, what="note.created of the note it made")
        echo = next(e for e in await school_events(redis, SCHOOL) if e.type == "note.created")
        assert echo.origin == {"command_id": command["command_id"], "idempotency_key": "k-1"}
        others = [e for e in await school_events(redis, SCHOOL) if e.resource == "note" and e is not echo]
        assert all(e.origin is None for e in others if e.resource_id != str(note_id))
        told = [e for e in await school_events(redis, SCHOOL) if e.type == "command.succeeded"]
        assert [(e.resource, e.resource_id) for e in told] == [("command", command["command_id"])]
        assert told[0].data["note_id"] == note_id and told[0].data["idempotency_key"] == "k-1"
        assert "note" not in told[0].data  # the text is not in the event
        sequences = [e.sequence for e in await school_events(redis, SCHOOL)]
        assert sequences == list(range(1, len(sequences) + 1))  # one sequence, no gap
        assert await services.commands.waiting() == 0
        listed = (await client.get("/v1/commands", params={"school_id": SCHOOL, "state": "succeeded"})).json()
        assert command["command_id"] in [c["command_id"] for c in listed["data"]]


async def test_refusals_before_d6_and_of_the_api(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=10, debtors=8, seed=42, inactive_schools=1)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with (
        running_bridge(bridge_settings(redis_url, sim.base_url, **FAST)) as services,
        api(services) as client,
    ):
        await wait_for(lambda: _ready(services), timeout=40, what="the first polls")
        person = await _person(control)
        notes = f"/v1/schools/{SCHOOL}/notes"
        cases = [
            (
                {k: v for k, v in _note(person, "x").items() if k != "accountable_person_id"},
                "accountable_person_id",
            ),
            ({**_note(person, "x"), "date": "2001-01-01"}, "date"),
            ({**_note(person, "x"), "note_type_id": 2}, "promise_to_pays"),
            ({**_note(person, "x"), "surprise": 1}, "surprise"),
            (
                {
                    **_note(person, "x"),
                    "note_type_id": 2,
                    "promise_to_pays": [
                        {
                            "date_promised": dt.date.today().isoformat(),
                            "amount_promised": "100.00",
                            "amount_paid": "1",
                        }
                    ],
                },
                "amount_paid",
            ),
        ]
        before = sim_requests = len((await control.get(f"/schools/{SCHOOL}/notes")).json()["data"])
        for body, field in cases:
            refused = await client.post(notes, json=body)
            assert refused.status_code == 400, (field, refused.text)
            assert field in refused.text, (field, refused.text)
        assert len((await control.get(f"/schools/{SCHOOL}/notes")).json()["data"]) == before == sim_requests
        assert (await client.get("/v1/commands")).json()["data"] == []  # nothing stored, nothing sent

        inactive = await client.post("/v1/schools/4242/notes", json=_note(person, "x"))
        assert inactive.status_code == 404, inactive.text
        client.headers["Authorization"] = f"Bearer {READER}"
        assert (await client.post(notes, json=_note(person, "x"))).status_code == 403
        assert (await client.get("/v1/commands")).status_code == 200
        assert (await client.get("/v1/commands/cmd_1000_nope")).status_code == 404


async def test_an_unknown_outcome_is_not_sent_twice_and_d6s_answers_are_acted_on(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=10, debtors=8, seed=43)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with (
        running_bridge(bridge_settings(redis_url, sim.base_url, **FAST)) as services,
        api(services) as client,
    ):
        await wait_for(lambda: _ready(services), timeout=40, what="the first polls")
        person = await _person(control)
        notes = f"/v1/schools/{SCHOOL}/notes"

        # Committed by d6, its answer lost: the bridge looks before it sends again, and finds its note.
        await control.post("/writes/drop", json={"times": 1})
        lost = (await client.post(notes, json=_note(person, "answer lost"))).json()
        done = await wait_for(lambda: _ended(client, lost["command_id"]), timeout=30, what="the lost create")
        assert done["state"] == "succeeded" and done["remark"] and done["attempts"] >= 2, done
        made = await _notes_with(control, "answer lost")
        assert [n["note_id"] for n in made] == [done["result"]["note_id"]]  # exactly one note

        # 429 then 500: retried on the schedule, then made.
        await control.post("/writes/fail", json={"status": 429, "times": 1})
        await control.post("/writes/fail", json={"status": 500, "times": 1})
        busy = (await client.post(notes, json=_note(person, "after a 429"))).json()
        done = await wait_for(
            lambda: _ended(client, busy["command_id"]), timeout=30, what="the retried create"
        )
        assert done["state"] == "succeeded" and done["attempts"] >= 2, done
        assert len(await _notes_with(control, "after a 429")) == 1

        # d6 refuses (an unknown person): failed at once with d6's message.
        unknown = (await client.post(notes, json=_note(999_999, "nobody"))).json()
        done = await wait_for(
            lambda: _ended(client, unknown["command_id"]), timeout=30, what="the refused create"
        )
        assert done["state"] == "failed" and done["d6"]["status"] in (400, 404) and done["d6"]["message"], (
            done
        )

        # Deleting twice: the second succeeds, noting d6's "already deleted".
        note_id = made[0]["note_id"]
        first = (await client.delete(f"{notes}/{note_id}")).json()
        second = (await client.delete(f"{notes}/{note_id}")).json()
        one = await wait_for(lambda: _ended(client, first["command_id"]), timeout=30, what="the delete")
        two = await wait_for(
            lambda: _ended(client, second["command_id"]), timeout=30, what="the second delete"
        )
        assert one["state"] == two["state"] == "succeeded" and two["remark"], (one, two)
        # A note neither d6 nor the bridge ever knew: d6's 404 fails the delete, with its message.
        never = (await client.delete(f"{notes}/987654")).json()
        done = await wait_for(
            lambda: _ended(client, never["command_id"]), timeout=30, what="a delete of nothing"
        )
        assert done["state"] == "failed" and done["d6"]["status"] == 404 and done["d6"]["message"], done

        # 401 not authorised: failed, and the school is handled as denied.
        await control.post("/writes/fail", json={"status": 401, "times": 1})
        denied = (await client.post(notes, json=_note(person, "no access"))).json()
        done = await wait_for(
            lambda: _ended(client, denied["command_id"]), timeout=30, what="the denied create"
        )
        assert done["state"] == "failed" and done["d6"]["status"] == 401, done
        # The school is handled as denied: its integrations are told revoked (a poll that d6 answers again
        # may restore it soon after, as for any denied school).
        revoked = [e for e in await school_events(redis, SCHOOL) if e.type == "integration.revoked"]
        assert revoked, "the 401 denied the school"
        kinds = [
            (e.type, e.data["kind"]) for e in await school_events(redis, SCHOOL) if e.resource == "command"
        ]
        assert kinds.count(("command.failed", "create_note")) == 2  # the unknown person and the 401
        assert kinds.count(("command.failed", "delete_note")) == 1
        assert kinds.count(("command.succeeded", "delete_note")) == 2


async def test_no_log_line_carries_a_notes_text_on_any_path(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    """The note's text is personal data: whatever the bridge logs about a command (accepted, sent, retried
    after d6's 5xx, failed on d6's 404, succeeded, echoed), no field of any log entry holds it."""
    sim: SimulatorServer = simulator_factory(schools=1, learners=10, debtors=10, seed=43)
    control = httpx.AsyncClient(base_url=sim.control_url)
    secret_text = "Promised R450 by Friday, ex-spouse pays the rest"
    with capture_logs() as logs:
        async with (
            running_bridge(bridge_settings(redis_url, sim.base_url, **FAST)) as services,
            api(services) as client,
        ):
            await wait_for(lambda: _ready(services), timeout=40, what="the first polls")
            person = await _person(control)
            await control.post("/writes/fail", json={"status": 500, "times": 1})
            made = (await client.post(f"/v1/schools/{SCHOOL}/notes", json=_note(person, secret_text))).json()
            refused = (
                await client.post(f"/v1/schools/{SCHOOL}/notes", json=_note(999_999, secret_text + " again"))
            ).json()
            done = await wait_for(lambda: _ended(client, made["command_id"]), timeout=30, what="the create")
            failed = await wait_for(lambda: _ended(client, refused["command_id"]), timeout=30, what="the 404")
            assert done["state"] == "succeeded" and done["attempts"] >= 2
            assert failed["state"] == "failed"
            await wait_for(
                lambda: _echoed(redis, done["command_id"]), timeout=30, what="the note.created echo"
            )
    assert any(entry.get("command_id") == made["command_id"] for entry in logs)
    for entry in logs:
        assert secret_text not in repr(entry), entry


async def _echoed(redis: aioredis.Redis, command_id: str) -> bool:
    return any(
        event.type == "note.created" and (event.origin or {}).get("command_id") == command_id
        for event in await school_events(redis, SCHOOL)
    )
