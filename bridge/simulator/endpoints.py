"""The d6 Integrate v2 endpoints: what each one answers, with d6's bodies, filters and pagination.

Pure functions of the world and a parsed request; the HTTP plumbing (credentials, faults, counters)
lives in `api.py`. Collections answer `{"data": [...], "meta": {...}}`, single resources the bare object.
"""

from __future__ import annotations

from typing import Any

from bridge.simulator import data
from bridge.simulator.config import SimulatorConfig
from bridge.simulator.names import API_TYPES
from bridge.simulator.state import DEBTOR_ID, School, World
from bridge.simulator.table import Page, Predicate, Record, Table
from bridge.simulator.validation import Checks, body_boolean, body_integer


class Reply:
    """An answer before encoding; `page` is set on collection answers (the fault injector needs it)."""

    __slots__ = ("body", "cursor", "drop", "headers", "page", "status")

    def __init__(
        self,
        status: int,
        body: Any,
        page: int | None = None,
        cursor: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.page = page
        self.cursor = cursor
        self.headers = headers or []
        self.drop = False
        """Committed, but the connection is dropped instead of answering (`/_sim/writes/drop`)."""


def failure(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, {"success": False, "message": message, **extra})


def invalid(errors: dict[str, str]) -> Reply:
    return failure(400, "Validation Failed", validation_errors=errors)


NOT_AUTHORISED_MESSAGE = "Client has not authorised access"


class Endpoints:
    """One method per d6 endpoint; each returns a `Reply`."""

    def __init__(self, world: World, config: SimulatorConfig) -> None:
        self.world = world
        self.config = config

    def _collection(
        self, table: Table, checks: Checks, where: Predicate | None, *, reverse: bool
    ) -> Reply | tuple[Page, int]:
        """One page of `table`, or the validation answer when the pagination parameters are wrong."""
        limit = checks.limit(self.config.default_limit, self.config.max_allowed_limit)
        cursor = checks.cursor()
        if checks.errors:
            return invalid(checks.errors)
        return table.page(cursor, limit=limit, reverse=reverse, where=where), limit

    def _listing(self, page: Page, limit: int, records: list[Record], cursor_text: str | None) -> Reply:
        meta: dict[str, Any] = {"limit": limit, "max_allowed_limit": self.config.max_allowed_limit}
        if page.next_cursor is not None:
            meta["next_cursor"] = page.next_cursor
        return Reply(200, {"data": records, "meta": meta}, page=page.page, cursor=cursor_text)

    # credentials only

    def client_integrations(self, query: dict[str, str]) -> Reply:
        checks = Checks(query)
        school_id = checks.integer("school_id")
        api_type_id = checks.integer("api_type_id")
        reverse = checks.flag("reverse_order")

        def where(record: Record) -> bool:
            return (school_id is None or record["school_id"] == school_id) and (
                api_type_id is None or record["api_type_id"] == api_type_id
            )

        table = self.world.integration_rows()
        found = self._collection(table, checks, where, reverse=reverse)
        if isinstance(found, Reply):
            return found
        page, limit = found
        return self._listing(page, limit, page.records, query.get("cursor"))

    def change_state(self, body: Any) -> Reply:
        """Activate or deactivate one (school, API type); "already" answers 400 with the record, like d6."""
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        errors: dict[str, str] = {}
        school_id = body_integer(fields, "school_id", errors)
        api_type_id = body_integer(fields, "api_type_id", errors)
        state = body_boolean(fields, "state", errors)
        if api_type_id is not None and not self._known_api_type(api_type_id):
            errors["api_type_id"] = "The api_type_id is invalid"
        if errors or school_id is None or api_type_id is None or state is None:
            return invalid(errors)
        school = self.world.schools.get(school_id)
        if school is None or api_type_id not in school.integrations:
            return failure(401, NOT_AUTHORISED_MESSAGE)
        word = "activated" if state else "deactivated"
        if school.integrations[api_type_id] == state:
            return failure(400, f"Integration already {word}", data=school.integration(api_type_id))
        school.integrations[api_type_id] = state
        return Reply(
            200,
            {
                "success": True,
                "message": f"Integration successfully {word}",
                "data": school.integration(api_type_id),
            },
        )

    def _known_api_type(self, api_type_id: int) -> bool:
        if api_type_id in API_TYPES or api_type_id in self.config.api_type_ids:
            return True
        return any(api_type_id in school.integrations for school in self.world.schools.values())

    def schools(self, query: dict[str, str], record_id: int | None) -> Reply:
        world = self.world
        if record_id is not None:
            school = world.schools.get(record_id)
            if school is None or not school.authorised:
                return failure(404, "The school does not exist")
            return Reply(200, school.profile())
        checks = Checks(query)
        reverse = checks.flag("reverse_order")

        def where(record: Record) -> bool:
            return world.schools[record["school_id"]].authorised

        found = self._collection(world.school_table, checks, where, reverse=reverse)
        if isinstance(found, Reply):
            return found
        page, limit = found
        return self._listing(page, limit, page.records, query.get("cursor"))

    # school-specific (HTTP-X-SCHOOLID)

    def school_for(self, header: str | None) -> School | Reply:
        """The school a request names in its header, or the 400/401 d6 answers instead."""
        if header is None or header.strip() == "":
            return invalid({"school_id": "The School id field is required"})
        checks = Checks({"school_id": header})
        school_id = checks.integer("school_id")
        if school_id is None:
            return invalid(checks.errors)
        school = self.world.schools.get(school_id)
        if school is None or not school.authorised or school.denied:
            return failure(401, NOT_AUTHORISED_MESSAGE)
        return school

    def accountable_persons(self, school: School, query: dict[str, str], record_id: int | None) -> Reply:
        checks = Checks(query)
        include_learners = checks.flag("include_learners")
        if record_id is not None:
            if checks.errors:
                return invalid(checks.errors)
            debtor = school.debtors.get(record_id)
            if debtor is None:
                return failure(404, "The person does not exist")
            return Reply(200, with_learners(school, debtor) if include_learners else debtor)
        all_accounts = checks.flag("all_accounts")
        reverse = checks.flag("reverse_order")
        code = checks.integer("debtor_code")
        person = checks.integer(DEBTOR_ID)
        code_text = str(code) if code is not None else None
        person_text = str(person) if person is not None else None
        where: Predicate | None = None
        if not all_accounts or code_text is not None or person_text is not None:

            def where(record: Record) -> bool:
                return (
                    (all_accounts or record["account_closing_date"] == data.OPEN_DATE)
                    and (code_text is None or record["debtor_code"] == code_text)
                    and (person_text is None or record[DEBTOR_ID] == person_text)
                )

        found = self._collection(school.debtors, checks, where, reverse=reverse)
        if isinstance(found, Reply):
            return found
        page, limit = found
        records = [with_learners(school, r) for r in page.records] if include_learners else page.records
        return self._listing(page, limit, records, query.get("cursor"))

    def learners(self, school: School, query: dict[str, str], record_id: int | None) -> Reply:
        checks = Checks(query)
        include_parents = checks.flag("include_parents")
        include_person = checks.flag("include_accountable_person")
        if record_id is not None:
            if checks.errors:
                return invalid(checks.errors)
            learner = school.learners.get(record_id)
            if learner is None:
                return failure(404, "The learner does not exist")
            return Reply(200, expand_learner(school, learner, include_parents, include_person))
        all_accounts = checks.flag("all_accounts")
        reverse = checks.flag("reverse_order")
        code = checks.integer("debtor_code")
        person = checks.integer(DEBTOR_ID)
        parent = checks.integer("parent_id")
        code_text = str(code) if code is not None else None
        where: Predicate | None = None
        if not all_accounts or code is not None or person is not None or parent is not None:

            def where(record: Record) -> bool:
                return (
                    (code_text is None or record.get("debtor_code") == code_text)
                    and (person is None or record.get(DEBTOR_ID) == person)
                    and (parent is None or parent in (record.get("parent1_id"), record.get("parent2_id")))
                    and (all_accounts or school.learner_is_current(record))
                )

        found = self._collection(school.learners, checks, where, reverse=reverse)
        if isinstance(found, Reply):
            return found
        page, limit = found
        records = page.records
        if include_parents or include_person:
            records = [expand_learner(school, r, include_parents, include_person) for r in records]
        return self._listing(page, limit, records, query.get("cursor"))


def with_learners(school: School, debtor: Record) -> Record:
    """`include_learners`: the debtor's learners nested, ids as strings as in d6's example."""
    learners = school.learners.records
    nested = [data.nested_learner(learners[key]) for key in school.learner_ids_of(int(debtor[DEBTOR_ID]))]
    return {**debtor, "learners": nested}


def expand_learner(school: School, learner: Record, parents: bool, person: bool) -> Record:
    """`include_parents` / `include_accountable_person`: the linked records nested in the learner."""
    if not parents and not person:
        return learner
    expanded = dict(learner)
    if parents:
        expanded["parents"] = school.parents_of(learner)
    if person:
        debtor_id = learner.get(DEBTOR_ID)
        expanded["accountable_person"] = school.debtors.get(debtor_id) if isinstance(debtor_id, int) else None
    return expanded
