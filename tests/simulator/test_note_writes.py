"""d6's debtor-note writes in the simulator: Create, Update and Delete Note, Delete Promise To Pay, their
validation as d6 shapes it, soft delete and restore, and the write faults (`/_sim/writes`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from bridge.simulator.app import Simulator
from bridge.testing.servers import SimulatorServer
from tests.simulator.finance_helpers import NOTES, PROMISES, TODAY, assert_books_hold_together
from tests.simulator.helpers import CREDENTIALS, DEBTORS, control

VALIDATION = "Validation Failed"


@pytest.fixture
def sim(simulator_factory: Callable[..., SimulatorServer]) -> SimulatorServer:
    return simulator_factory(schools=2, learners=30, debtors=20, seed=4, today=TODAY)


@pytest.fixture
async def d6(sim: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
async def person(d6: httpx.AsyncClient) -> int:
    """An accountable person of school 1000."""
    debtors = (await d6.get(DEBTORS, params={"limit": 1})).json()["data"]
    return int(debtors[0]["accountable_person_id"])


def world_of(sim: SimulatorServer) -> Simulator:
    """The simulator behind the server (same process): its books, to check they hold together."""
    app: Any = sim.server.config.app
    simulator: Simulator = app.state.simulator
    return simulator


def promise_note(person: int, **fields: Any) -> dict[str, Any]:
    return {
        "accountable_person_id": person,
        "date": TODAY,
        "note_type_id": 2,
        "communication_type_id": 3,
        "note": "Will pay in two parts",
        "promise_to_pays": [
            {"date_promised": "2026-04-01", "amount_promised": "1500.00"},
            {"date_promised": "2026-05-01", "amount_promised": 1500},
        ],
        **fields,
    }


def refused(response: httpx.Response) -> dict[str, str]:
    """d6's validation answer (errors-and-bad-requests.md): 400, `success` false, the errors by field."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["success"], body["message"]) == (False, VALIDATION)
    errors: dict[str, str] = body["validation_errors"]
    return errors


async def created(d6: httpx.AsyncClient, body: dict[str, Any]) -> int:
    response = await d6.post(NOTES, json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["success"], answer["message"]) == (True, "Note created successfully")
    note_id: int = answer["data"]["note_id"]
    return note_id


# create


async def test_a_created_note_is_served_with_its_promises(
    sim: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient, person: int
) -> None:
    await control(http, "POST", f"{sim.control_url}/changes/reset")
    note_id = await created(d6, promise_note(person))
    note = (await d6.get(f"{NOTES}/{note_id}", params={"include_promise_to_pays": 1})).json()
    assert {
        k: note[k] for k in ("accountable_person_id", "date", "note_type_id", "communication_type_id")
    } == {
        "accountable_person_id": person,
        "date": TODAY,
        "note_type_id": 2,
        "communication_type_id": 3,
    }
    assert (note["note"], note["status"], note["note_type"]) == (
        "Will pay in two parts",
        "Created",
        "Promise to pay",
    )
    promises = note["promise_to_pays"]
    assert [
        (p["date_promised"], p["amount_promised"], p["amount_paid"], p["promise_completed"]) for p in promises
    ] == [
        ("2026-04-01", "1500.00", "0.00", "No"),
        ("2026-05-01", "1500.00", "0.00", "No"),
    ]
    listed = (await d6.get(NOTES, params={"accountable_person_id": person, "limit": 50})).json()["data"]
    assert note_id in [n["note_id"] for n in listed]
    served = (await d6.get(PROMISES, params={"accountable_person_id": person, "limit": 50})).json()["data"]
    assert {p["promise_to_pay_id"] for p in promises} <= {p["promise_to_pay_id"] for p in served}
    changes = (await control(http, "GET", f"{sim.control_url}/changes?school_id=1000"))["changes"]
    assert [(c["resource"], c["kind"]) for c in changes] == [
        ("notes", "created"),
        ("promises", "created"),
        ("promises", "created"),
    ]
    assert_books_hold_together(world_of(sim).world.schools[1000].finance)


async def test_an_internal_note_needs_no_communication_type(d6: httpx.AsyncClient, person: int) -> None:
    note_id = await created(
        d6, {"accountable_person_id": str(person), "date": "2025-01-01", "note_type_id": 3}
    )
    note = (await d6.get(f"{NOTES}/{note_id}")).json()
    assert (note["communication_type_id"], note["note"], note["date"]) == (None, "", "2025-01-01")


async def test_create_validation_as_d6_shapes_it(d6: httpx.AsyncClient, person: int) -> None:
    assert refused(await d6.post(NOTES, json={})) == {
        "accountable_person_id": "The Accountable person id field is required",
        "date": "The Date field is required",
        "note_type_id": "The Note type id field is required",
        "communication_type_id": "The Communication type id field is required unless it is an internal note",
    }
    assert refused(await d6.post(NOTES, content=b"{not json")) == refused(await d6.post(NOTES, json={}))
    # errors-and-bad-requests.md's own example, word for word
    assert refused(
        await d6.post(NOTES, json={"accountable_person_id": 999_999, "date": "14/03/2026", "note_type_id": 1})
    ) == {
        "accountable_person_id": "The accountable_person_id is invalid",
        "date": "The Date is not valid date format. Expected format is 'Y-m-d'.",
        "communication_type_id": "The Communication type id field is required unless it is an internal note",
    }
    base = {"accountable_person_id": person, "note_type_id": 1, "communication_type_id": 1}
    assert refused(await d6.post(NOTES, json={**base, "date": "2024-12-31"})) == {
        "date": "The Date must be a date between 2025-01-01 and 2027-12-31."
    }
    assert refused(await d6.post(NOTES, json={**base, "date": "2028-01-01"}))["date"].startswith(
        "The Date must"
    )
    assert refused(await d6.post(NOTES, json={**base, "date": TODAY, "note_type_id": 7})) == {
        "note_type_id": "The note_type_id is invalid"
    }
    assert refused(await d6.post(NOTES, json={**base, "date": TODAY, "communication_type_id": 99})) == {
        "communication_type_id": "The communication_type_id is invalid"
    }
    assert refused(await d6.post(NOTES, json={**base, "date": TODAY, "note": 5})) == {
        "note": "The Note must be a string."
    }


async def test_promise_rules(d6: httpx.AsyncClient, person: int) -> None:
    assert refused(await d6.post(NOTES, json=promise_note(person, promise_to_pays=[]))) == {
        "promise_to_pays": "The Promise to pays field is required when Note type id is 2."
    }
    assert refused(await d6.post(NOTES, json=promise_note(person, promise_to_pays={"a": 1}))) == {
        "promise_to_pays": "The Promise to pays must be an array."
    }
    entries = [
        {"date_promised": "2025-12-31", "amount_promised": "100"},  # before this year
        {"date_promised": "2026-04-01", "amount_promised": "R100"},  # a currency symbol
        {"date_promised": "2026-04-02", "amount_promised": "0"},
        {
            "date_promised": "2026-04-03",
            "amount_promised": "100",
            "amount_paid": "100",
            "promise_completed": "Yes",
        },
        {"amount_promised": "1,000.00"},
        {"date_promised": "2026-04-05", "amount_promised": "250"},
        {"date_promised": "2026-04-05", "amount_promised": 250.0},  # the same promise again
        "not an object",
    ]
    assert refused(await d6.post(NOTES, json=promise_note(person, promise_to_pays=entries))) == {
        "promise_to_pays.0.date_promised": (
            "The Date promised must be a date between 2026-01-01 and 2027-12-31."
        ),
        "promise_to_pays.1.amount_promised": "The Amount promised must be a number.",
        "promise_to_pays.2.amount_promised": "The Amount promised must be greater than 0.",
        "promise_to_pays.3.amount_paid": "The Amount paid may only be set by the school.",
        "promise_to_pays.3.promise_completed": "The Promise completed may only be set by the school.",
        "promise_to_pays.4.date_promised": "The Date promised field is required",
        "promise_to_pays.4.amount_promised": "The Amount promised must be a number.",
        "promise_to_pays.6": "A promise to pay with this date and amount already exists.",
        "promise_to_pays.7": "The promise_to_pays.7 must be an object.",
    }


async def test_a_refused_write_changes_nothing(
    sim: SimulatorServer, d6: httpx.AsyncClient, person: int
) -> None:
    books = world_of(sim).world.schools[1000].finance.ensure()
    notes, promises = len(books.notes), len(books.promises)
    refused(await d6.post(NOTES, json=promise_note(person, date="2020-01-01")))
    assert (len(books.notes), len(books.promises)) == (notes, promises)


# update, delete, restore


async def test_update_changes_fields_and_promises(
    sim: SimulatorServer, d6: httpx.AsyncClient, person: int
) -> None:
    note_id = await created(d6, promise_note(person))
    first, second = (await d6.get(f"{NOTES}/{note_id}", params={"include_promise_to_pays": 1})).json()[
        "promise_to_pays"
    ]
    change = {
        "note": "Paid the first part by EFT",
        "communication_type_id": 2,
        "promise_to_pays": [
            {"promise_to_pay_id": first["promise_to_pay_id"], "amount_promised": "1000.00"},
            {"date_promised": "2026-06-01", "amount_promised": "500"},
        ],
    }
    response = await d6.patch(f"{NOTES}/{note_id}", json=change)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "message": "Note updated successfully",
        "data": {"note_id": note_id},
    }
    note = (await d6.get(f"{NOTES}/{note_id}", params={"include_promise_to_pays": 1})).json()
    assert (note["note"], note["communication_type_id"], note["communication_type"]) == (
        "Paid the first part by EFT",
        2,
        "E-mail",
    )
    assert [(p["date_promised"], p["amount_promised"]) for p in note["promise_to_pays"]] == [
        ("2026-04-01", "1000.00"),
        ("2026-05-01", "1500.00"),
        ("2026-06-01", "500.00"),
    ]
    # A duplicate of an existing promise (update-note.md), a promise of another note, d6's shapes.
    duplicate = {"promise_to_pays": [{"date_promised": second["date_promised"], "amount_promised": "1500"}]}
    assert refused(await d6.patch(f"{NOTES}/{note_id}", json=duplicate)) == {
        "promise_to_pays.0": "A promise to pay with this date and amount already exists."
    }
    foreign = {"promise_to_pays": [{"promise_to_pay_id": 999_999, "amount_promised": "1"}]}
    assert refused(await d6.patch(f"{NOTES}/{note_id}", json=foreign)) == {
        "promise_to_pays.0.promise_to_pay_id": "The promise_to_pay_id is invalid"
    }
    settable = {"promise_to_pays": [{"promise_to_pay_id": second["promise_to_pay_id"], "amount_paid": "5"}]}
    assert refused(await d6.patch(f"{NOTES}/{note_id}", json=settable)) == {
        "promise_to_pays.0.amount_paid": "The Amount paid may only be set by the school."
    }
    assert refused(
        await d6.patch(f"{NOTES}/{note_id}", json={"note_type_id": 1, "communication_type_id": None})
    ) == {
        "communication_type_id": "The Communication type id field is required unless it is an internal note"
    }
    assert refused(await d6.patch(f"{NOTES}/{note_id}", json={"status": "Gone", "date": "2031-01-01"})) == {
        "status": "The selected Status is invalid.",
        "date": "The Date must be a date between 2025-01-01 and 2027-12-31.",
    }
    assert (await d6.patch(f"{NOTES}/999999", json={"note": "x"})).json() == {
        "success": False,
        "message": "The note does not exist.",
    }
    missing_id = await d6.patch(NOTES, json={"note": "x"})
    assert (missing_id.status_code, missing_id.json()) == (
        400,
        {"success": False, "message": "The Note ID is required"},
    )
    assert_books_hold_together(world_of(sim).world.schools[1000].finance)


async def test_a_note_given_to_another_person_takes_its_promises(
    sim: SimulatorServer, d6: httpx.AsyncClient, person: int
) -> None:
    note_id = await created(d6, promise_note(person))
    debtors = (await d6.get(DEBTORS, params={"limit": 2})).json()["data"]
    other = int(debtors[1]["accountable_person_id"])
    assert (await d6.patch(f"{NOTES}/{note_id}", json={"accountable_person_id": other})).status_code == 200
    note = (await d6.get(f"{NOTES}/{note_id}", params={"include_promise_to_pays": 1})).json()
    assert note["accountable_person_id"] == other
    assert {p["accountable_person_id"] for p in note["promise_to_pays"]} == {other}
    assert_books_hold_together(world_of(sim).world.schools[1000].finance)


async def test_delete_is_soft_and_update_restores(d6: httpx.AsyncClient, person: int) -> None:
    note_id = await created(
        d6, {"accountable_person_id": person, "date": TODAY, "note_type_id": 1, "communication_type_id": 1}
    )
    deleted = await d6.delete(f"{NOTES}/{note_id}")
    assert (deleted.status_code, deleted.json()) == (200, {"status": "Deleted"})
    assert (await d6.get(f"{NOTES}/{note_id}")).status_code == 404
    mine = {"accountable_person_id": person, "limit": 50}
    assert note_id not in [n["note_id"] for n in (await d6.get(NOTES, params=mine)).json()["data"]]
    kept = (await d6.get(NOTES, params={**mine, "include_deleted": 1})).json()["data"]
    assert [n["status"] for n in kept if n["note_id"] == note_id] == ["Deleted"]
    again = await d6.delete(f"{NOTES}/{note_id}")
    assert (again.status_code, again.json()) == (
        404,
        {"success": False, "message": "The note does not exist or has already been deleted."},
    )
    restored = await d6.patch(f"{NOTES}/{note_id}", json={"status": "Created"})
    assert restored.json() == {
        "success": True,
        "message": "Note restored successfully",
        "data": {"note_id": note_id},
    }
    assert (await d6.get(f"{NOTES}/{note_id}")).json()["status"] == "Created"
    no_id = await d6.delete(NOTES)
    assert (no_id.status_code, no_id.json()) == (
        400,
        {"success": False, "message": "The Note ID is required"},
    )
    assert (await d6.delete(f"{NOTES}/abc")).status_code == 404


async def test_delete_promise_to_pay(d6: httpx.AsyncClient, person: int) -> None:
    note_id = await created(d6, promise_note(person))
    first, second = (await d6.get(f"{NOTES}/{note_id}", params={"include_promise_to_pays": 1})).json()[
        "promise_to_pays"
    ]
    gone = await d6.delete(f"{PROMISES}/{first['promise_to_pay_id']}")
    assert (gone.status_code, gone.json()) == (200, {"status": "Deleted"})
    assert (await d6.get(f"{PROMISES}/{first['promise_to_pay_id']}")).status_code == 404
    note = (await d6.get(f"{NOTES}/{note_id}", params={"include_promise_to_pays": 1})).json()
    assert [p["promise_to_pay_id"] for p in note["promise_to_pays"]] == [second["promise_to_pay_id"]]
    again = await d6.delete(f"{PROMISES}/{first['promise_to_pay_id']}")
    assert (again.status_code, again.json()) == (
        404,
        {"success": False, "message": "The Promise To Pay does not exist"},
    )
    no_id = await d6.delete(PROMISES)
    assert (no_id.status_code, no_id.json()) == (
        400,
        {"success": False, "message": "The Promise To Pay ID is required"},
    )


async def test_methods_credentials_and_schools(
    sim: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient, person: int
) -> None:
    note_id = await created(d6, promise_note(person))
    wrong = await d6.post(f"{NOTES}/{note_id}", json={})
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET, PATCH, DELETE")
    assert (await d6.patch(f"{PROMISES}/1", json={})).status_code == 405
    anonymous = await http.post(
        f"{sim.base_url}{NOTES}", json=promise_note(person), headers={"HTTP-X-SCHOOLID": "1000"}
    )
    assert anonymous.status_code == 401
    await control(http, "POST", f"{sim.control_url}/schools/1000/access", {"denied": True})
    denied = await d6.delete(f"{NOTES}/{note_id}")
    assert (denied.status_code, denied.json()) == (
        401,
        {"success": False, "message": "Client has not authorised access"},
    )
    await control(http, "POST", f"{sim.control_url}/schools/1000/access", {"denied": False})
    assert (await d6.delete(f"{NOTES}/{note_id}")).status_code == 200


async def test_writes_are_counted_and_logged(
    sim: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient, person: int
) -> None:
    await control(http, "POST", f"{sim.control_url}/stats/reset")
    note_id = await created(d6, promise_note(person))
    await d6.patch(f"{NOTES}/{note_id}", json={"note": "x"})
    await d6.delete(f"{NOTES}/{note_id}")
    await d6.delete(f"{NOTES}/{note_id}")
    stats = await control(http, "GET", f"{sim.control_url}/stats")
    assert stats["by_endpoint"] == {
        "POST /v2/finplus/debtmanagement/debtornotes/notes": 1,
        "PATCH /v2/finplus/debtmanagement/debtornotes/notes/{id}": 1,
        "DELETE /v2/finplus/debtmanagement/debtornotes/notes/{id}": 2,
    }
    log = (await control(http, "GET", f"{sim.control_url}/requests"))["requests"]
    assert [(r["method"], r["status"], r["school_id"]) for r in log] == [
        ("POST", 201, 1000),
        ("PATCH", 200, 1000),
        ("DELETE", 200, 1000),
        ("DELETE", 404, 1000),
    ]


# write faults


async def test_a_dropped_write_is_committed_but_never_answered(
    sim: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient, person: int
) -> None:
    writes = f"{sim.control_url}/writes"
    armed = await control(http, "POST", f"{writes}/drop", {"times": 1})
    assert armed["drop"] == {"times": 1, "school_id": None, "remaining": 1}
    await control(http, "POST", f"{sim.control_url}/stats/reset")
    refused(
        await d6.post(NOTES, json=promise_note(person, promise_to_pays=[]))
    )  # refused: answered, not dropped
    before = {
        n["note_id"]
        for n in (await d6.get(NOTES, params={"accountable_person_id": person, "limit": 50})).json()["data"]
    }
    with pytest.raises(httpx.RemoteProtocolError):
        await d6.post(NOTES, json=promise_note(person))
    after = (
        await d6.get(
            NOTES, params={"accountable_person_id": person, "limit": 50, "include_promise_to_pays": 1}
        )
    ).json()["data"]
    made = [n for n in after if n["note_id"] not in before]
    assert [(n["note"], len(n["promise_to_pays"])) for n in made] == [("Will pay in two parts", 2)]
    log = (await control(http, "GET", f"{sim.control_url}/requests"))["requests"]
    assert [(r["method"], r["status"]) for r in log if r["method"] == "POST"] == [("POST", 400), ("POST", 0)]
    shown = await control(http, "GET", writes)
    assert (shown["drop"]["remaining"], shown["dropped"]) == (0, 1)
    # Spent: the next write is answered.
    assert (await d6.delete(f"{NOTES}/{made[0]['note_id']}")).status_code == 200


async def test_a_failed_write_answers_the_status_and_changes_nothing(
    sim: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient, person: int
) -> None:
    writes = f"{sim.control_url}/writes"
    books = world_of(sim).world.schools[1000].finance.ensure()
    count = len(books.notes)
    await control(http, "POST", f"{writes}/fail", {"status": 429, "times": 2, "retry_after": "3"})
    for _ in range(2):
        limited = await d6.post(NOTES, json=promise_note(person))
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "3"
        assert limited.json() == {
            "success": False,
            "message": "Rate limits have been reached, please slow down your requests",
        }
    assert len(books.notes) == count
    await control(http, "POST", f"{writes}/fail", {"status": 500})
    broken = await d6.post(NOTES, json=promise_note(person))
    assert (broken.status_code, broken.json()) == (
        500,
        {"success": False, "message": "Internal Server Error"},
    )
    await control(http, "POST", f"{writes}/fail", {"status": 401, "error_body": "v1"})
    denied = await d6.post(NOTES, json=promise_note(person))
    assert (denied.status_code, denied.json()) == (
        401,
        {"error": "Unauthorized", "error_description": "Client has not authorised access"},
    )
    assert len(books.notes) == count
    note_id = await created(d6, promise_note(person))  # spent
    assert (await d6.get(f"{NOTES}/{note_id}")).status_code == 200  # reads are never touched
    shown = await control(http, "GET", writes)
    assert (shown["fail"]["remaining"], shown["failed"]) == (0, 4)


async def test_write_faults_for_one_school_and_cleared(
    sim: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient, person: int
) -> None:
    writes = f"{sim.control_url}/writes"
    await control(http, "POST", f"{writes}/fail", {"status": 503, "times": 5, "school_id": 1001})
    await created(d6, promise_note(person))  # school 1000: untouched
    other = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1001"}
    person_1001 = (await http.get(f"{sim.base_url}{DEBTORS}", headers=other)).json()["data"][0]
    body = promise_note(int(person_1001["accountable_person_id"]))
    assert (await http.post(f"{sim.base_url}{NOTES}", json=body, headers=other)).status_code == 503
    cleared = await control(http, "DELETE", writes)
    assert cleared == {"drop": None, "fail": None, "dropped": 0, "failed": 0}
    assert (await http.post(f"{sim.base_url}{NOTES}", json=body, headers=other)).status_code == 201
    assert (await http.post(f"{writes}/fail", json={"status": 200})).status_code == 400
    assert (await http.post(f"{writes}/drop", json={"times": -1})).status_code == 400
