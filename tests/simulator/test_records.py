"""The records: every field d6's pages show, d6's types, the filters, and reproducibility by seed."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import CREDENTIALS, DEBTORS, LEARNERS, SCHOOLS, scan

DEBTOR_FIELDS = [
    "accountable_person_id", "title", "first_name", "full_names", "last_name", "debtor_code",
    "mobile_calling_code", "mobile_number", "work_tel_number", "home_tel_number", "email_address",
    "residential_address", "postal_address", "home_language", "nationality", "id_number", "passport_number",
    "employer", "employer_address", "account_closing_date", "account_start_date",
]  # fmt: skip
LEARNER_FIELDS = [
    "learner_id", "first_name", "last_name", "gender", "grade", "debtor_code", "parent1_id", "parent2_id",
    "accountable_person_id",
]  # fmt: skip


async def test_debtors_have_every_documented_field_in_d6_types(d6: httpx.AsyncClient) -> None:
    debtors, _ = await scan(d6, DEBTORS, {"limit": 50, "all_accounts": 1})
    assert len(debtors) == 90
    for debtor in debtors:
        assert list(debtor) == DEBTOR_FIELDS
        assert isinstance(debtor["accountable_person_id"], str)
        assert debtor["accountable_person_id"].isdigit()
        assert debtor["mobile_calling_code"] == "27"
        assert re.fullmatch(r"0\d{9}", debtor["mobile_number"])
        assert "\r\n" in debtor["residential_address"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", debtor["account_start_date"])
    closed = [d for d in debtors if d["account_closing_date"] != "0000-00-00"]
    assert 0 < len(closed) < len(debtors)
    assert all(re.fullmatch(r"20\d\d-\d{2}-\d{2}", d["account_closing_date"]) for d in closed)


async def test_learners_have_every_documented_field_with_integer_ids(d6: httpx.AsyncClient) -> None:
    learners, _ = await scan(d6, LEARNERS, {"limit": 50, "all_accounts": 1})
    assert len(learners) == 120
    for learner in learners:
        assert list(learner) == LEARNER_FIELDS
        assert isinstance(learner["learner_id"], int)
        assert isinstance(learner["accountable_person_id"], int)
        assert learner["parent1_id"] == learner["accountable_person_id"]
        assert learner["gender"] in ("M", "F")


async def test_learners_link_to_their_debtors(d6: httpx.AsyncClient) -> None:
    debtors = {int(d["accountable_person_id"]): d for d in (await scan(d6, DEBTORS, {"all_accounts": 1}))[0]}
    for learner in (await scan(d6, LEARNERS, {"all_accounts": 1}))[0]:
        debtor = debtors[learner["accountable_person_id"]]
        assert learner["debtor_code"] == debtor["debtor_code"]
        assert learner["last_name"] == debtor["last_name"]


async def test_default_scope_hides_closed_accounts_and_their_learners(d6: httpx.AsyncClient) -> None:
    every, _ = await scan(d6, DEBTORS, {"all_accounts": 1, "limit": 50})
    active, _ = await scan(d6, DEBTORS, {"limit": 50})
    assert [d for d in every if d["account_closing_date"] == "0000-00-00"] == active
    closed_ids = {int(d["accountable_person_id"]) for d in every} - {
        int(d["accountable_person_id"]) for d in active
    }
    current, _ = await scan(d6, LEARNERS, {"limit": 50})
    all_learners, _ = await scan(d6, LEARNERS, {"limit": 50, "all_accounts": 1})
    assert [r for r in all_learners if r["accountable_person_id"] not in closed_ids] == current
    assert len(current) < len(all_learners)


async def test_a_closed_account_is_still_readable_by_id(d6: httpx.AsyncClient) -> None:
    every, _ = await scan(d6, DEBTORS, {"all_accounts": 1, "limit": 50})
    closed = next(d for d in every if d["account_closing_date"] != "0000-00-00")
    single = await d6.get(f"{DEBTORS}/{closed['accountable_person_id']}")
    assert single.status_code == 200
    assert single.json() == closed


async def test_include_learners_nests_them_with_string_ids(d6: httpx.AsyncClient) -> None:
    debtors, _ = await scan(d6, DEBTORS, {"all_accounts": 1, "include_learners": 1, "limit": 50})
    learners, _ = await scan(d6, LEARNERS, {"all_accounts": 1, "limit": 50})
    nested = {int(n["learner_id"]) for d in debtors for n in d["learners"]}
    assert nested == {r["learner_id"] for r in learners}
    sample = next(d for d in debtors if d["learners"])
    assert set(sample["learners"][0]) == {"learner_id", "first_name", "last_name", "gender", "grade"}
    assert isinstance(sample["learners"][0]["learner_id"], str)
    single = (
        await d6.get(f"{DEBTORS}/{sample['accountable_person_id']}", params={"include_learners": 1})
    ).json()
    assert single == sample


async def test_filters_on_debtor_code_person_and_parent(d6: httpx.AsyncClient) -> None:
    learners, _ = await scan(d6, LEARNERS, {"all_accounts": 1, "limit": 50})
    family = max(
        learners,
        key=lambda r: sum(x["accountable_person_id"] == r["accountable_person_id"] for x in learners),
    )
    person = family["accountable_person_id"]
    siblings = [r for r in learners if r["accountable_person_id"] == person]
    assert len(siblings) >= 2
    by_person, _ = await scan(d6, LEARNERS, {"all_accounts": 1, "accountable_person_id": person})
    by_code, _ = await scan(d6, LEARNERS, {"all_accounts": 1, "debtor_code": family["debtor_code"]})
    by_parent, _ = await scan(d6, LEARNERS, {"all_accounts": 1, "parent_id": person})
    assert by_person == by_code == by_parent == siblings
    debtor, _ = await scan(d6, DEBTORS, {"all_accounts": 1, "debtor_code": family["debtor_code"]})
    assert [d["accountable_person_id"] for d in debtor] == [str(person)]
    same, _ = await scan(d6, DEBTORS, {"all_accounts": 1, "accountable_person_id": person})
    assert same == debtor


async def test_include_parents_and_accountable_person(d6: httpx.AsyncClient) -> None:
    learner = (
        await d6.get(f"{LEARNERS}/1", params={"include_parents": 1, "include_accountable_person": 1})
    ).json()
    debtor = (await d6.get(f"{DEBTORS}/{learner['accountable_person_id']}")).json()
    assert learner["accountable_person"] == debtor
    assert learner["parents"][0]["parent_id"] == learner["parent1_id"]
    expected_parents = [learner["parent1_id"]] + ([learner["parent2_id"]] if learner["parent2_id"] else [])
    assert [p["parent_id"] for p in learner["parents"]] == expected_parents


async def test_single_records_are_bare_objects(d6: httpx.AsyncClient) -> None:
    learner = (await d6.get(f"{LEARNERS}/1")).json()
    assert list(learner) == LEARNER_FIELDS
    school = (await d6.get(f"{SCHOOLS}/1000")).json()
    assert school["school_id"] == 1000
    assert "data" not in school


async def test_schools_lists_the_authorised_schools(d6: httpx.AsyncClient) -> None:
    schools, _ = await scan(d6, SCHOOLS, {"limit": 2})
    assert [s["school_id"] for s in schools] == [1000, 1001, 1002]
    assert {"school_id", "school_name", "admin_email_address"} <= set(schools[0])


async def test_the_same_seed_gives_the_same_data(simulator_factory: Callable[..., SimulatorServer]) -> None:
    async def everything(sim: SimulatorServer) -> list[object]:
        found: list[object] = []
        async with httpx.AsyncClient(base_url=sim.base_url, headers=CREDENTIALS) as client:
            for school_id in ("1000", "1001"):
                client.headers["HTTP-X-SCHOOLID"] = school_id
                found += (await scan(client, DEBTORS, {"all_accounts": 1, "limit": 50}))[0]
                found += (await scan(client, LEARNERS, {"all_accounts": 1, "limit": 50}))[0]
        return found

    first = await everything(simulator_factory(schools=2, learners=60, debtors=50, seed=7))
    again = await everything(simulator_factory(schools=2, learners=60, debtors=50, seed=7))
    other = await everything(simulator_factory(schools=2, learners=60, debtors=50, seed=8))
    assert first == again
    assert first != other
