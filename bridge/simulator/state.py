"""The simulator's world: schools, their integrations, debtors, parents and learners, and every change.

All mutations go through `World` so the indexes (sorted ids, learners per debtor) never drift from the
records. Everything runs on the server's one event loop, so no locks are needed.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable
from typing import Any

from bridge.simulator import data
from bridge.simulator.changes import ChangeLog
from bridge.simulator.finance import Finance
from bridge.simulator.finance_data import books_for
from bridge.simulator.ledger import Calendar
from bridge.simulator.names import api_type_name
from bridge.simulator.table import NotFound, Record, Table

DEBTOR_ID = "accountable_person_id"


class School:
    """One d6 school: its profile, which API types it authorised (and whether each is activated)."""

    def __init__(
        self,
        school_id: int,
        name: str,
        email: str,
        telephone: str,
        changes: ChangeLog | None = None,
        calendar: Calendar | None = None,
    ) -> None:
        self.school_id = school_id
        self.name = name
        self.email = email
        self.telephone = telephone
        self.integrations: dict[int, bool] = {}
        self.denied = False
        """Listed, but its data calls answer 401 "Client has not authorised access" (a d6 inconsistency)."""
        self.debtors = Table()
        self.learners = Table()
        self.parents: dict[int, Record] = {}
        self.learners_by_debtor: dict[int, set[int]] = {}
        self.next_debtor_code = 1001
        self.finance = Finance(self, changes or ChangeLog(), calendar or Calendar())
        """Transactions, the age analysis, promises to pay and debtor notes (Finance+)."""

    @property
    def authorised(self) -> bool:
        return bool(self.integrations)

    def integration(self, api_type_id: int) -> Record:
        """The client-integrations record for one API type, as d6 sends it."""
        return {
            "school_id": self.school_id,
            "school_name": self.name,
            "admin_email_address": self.email,
            "telephone_calling_code": "27",
            "telephone_number": self.telephone,
            "api_type_id": api_type_id,
            "api_type": api_type_name(api_type_id),
            "activated_by_integrator": "Yes" if self.integrations.get(api_type_id) else "No",
        }

    def profile(self) -> Record:
        """The record `GET .../schools` sends."""
        return {
            "school_id": self.school_id,
            "school_name": self.name,
            "admin_email_address": self.email,
            "telephone_calling_code": "27",
            "telephone_number": self.telephone,
        }

    def summary(self) -> Record:
        """What the `/_sim/` controls answer about a school."""
        return {
            **self.profile(),
            "integrations": [self.integration(api_type) for api_type in sorted(self.integrations)],
            "denied": self.denied,
            "learners": len(self.learners),
            "debtors": len(self.debtors),
            "finance": self.finance.state,
            "transactions": len(self.finance.txns),
            "promises": len(self.finance.promises),
            "notes": len(self.finance.notes),
        }

    def learner_ids_of(self, debtor_id: int) -> list[int]:
        return sorted(self.learners_by_debtor.get(debtor_id, ()))

    def learner_is_current(self, learner: Record) -> bool:
        """A learner counts as current unless the account paying for them is closed (a left learner)."""
        debtor_id = learner.get(DEBTOR_ID)
        debtor = self.debtors.get(debtor_id) if isinstance(debtor_id, int) else None
        return debtor is None or debtor.get("account_closing_date") == data.OPEN_DATE

    def parents_of(self, learner: Record) -> list[Record]:
        found: list[Record] = []
        for key in ("parent1_id", "parent2_id"):
            parent_id = learner.get(key)
            if not isinstance(parent_id, int):
                continue
            debtor = self.debtors.get(parent_id)
            if debtor is not None:
                found.append(data.debtor_as_parent(debtor))
            elif parent_id in self.parents:
                found.append(self.parents[parent_id])
        return found

    def link_learner(self, learner_id: int, debtor_id: Any, add: bool) -> None:
        if not isinstance(debtor_id, int):
            return
        bucket = self.learners_by_debtor.setdefault(debtor_id, set())
        if add:
            bucket.add(learner_id)
        else:
            bucket.discard(learner_id)
            if not bucket:
                del self.learners_by_debtor[debtor_id]


class World:
    """Every school, plus the one random generator that mutations draw from (seeded, so reproducible),
    the calendar the schools' books follow and the log of every change."""

    def __init__(self, seed: int, calendar: Calendar | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed ^ 0x5EED)
        self.calendar = calendar or Calendar()
        self.changes = ChangeLog()
        self.schools: dict[int, School] = {}
        self.school_ids: list[int] = []
        self.school_table = Table()

    # schools and integrations

    def school(self, school_id: int) -> School:
        school = self.schools.get(school_id)
        if school is None:
            raise NotFound(f"school {school_id} does not exist")
        return school

    def next_school_id(self, first: int) -> int:
        return max(self.school_ids[-1] + 1, first) if self.school_ids else first

    def add_school(
        self,
        school_id: int,
        *,
        name: str | None = None,
        debtors: int = 0,
        learners: int = 0,
        api_type_ids: Iterable[int] = (),
        activated: bool = False,
        finance: bool = True,
    ) -> School:
        """A school with its own generators seeded from (seed, school id): adding one changes no other.
        With `finance`, its debtors get months of books (a separate generator: the records stay the same)."""
        if school_id in self.schools:
            raise ValueError(f"school {school_id} already exists")
        rng = random.Random(self.seed * 1_000_003 + school_id)
        school_name = name or data.school_name(rng)
        email = data.school_email(school_name, school_id)
        school = School(school_id, school_name, email, data.landline(rng), self.changes, self.calendar)
        for api_type_id in api_type_ids:
            school.integrations[api_type_id] = activated
        self.schools[school_id] = school
        bisect.insort(self.school_ids, school_id)
        self.school_table.put(school_id, school.profile())
        self._populate(school, rng, debtors, learners)
        if finance:
            books = random.Random((self.seed * 1_000_003 + school_id) ^ 0xF1_4A_4CE)
            school.finance.pending = books_for(school, books)
        return school

    def _populate(self, school: School, rng: random.Random, debtors: int, learners: int) -> None:
        """Debtors first (one in ten closed), every debtor gets a learner, the rest are their siblings."""
        made: list[Record] = []
        spouses: dict[int, int | None] = {}
        for _ in range(debtors):
            person = self._new_debtor(school, rng, {}, closed=rng.random() < 0.1)
            made.append(person)
            spouses[int(person[DEBTOR_ID])] = self._maybe_spouse(school, rng, person)
        for index in range(learners):
            debtor: Record | None = made[index] if index < len(made) else (rng.choice(made) if made else None)
            spouse = spouses.get(int(debtor[DEBTOR_ID])) if debtor is not None else None
            learner_id = school.learners.allocate()
            self._store_learner(school, data.make_learner(rng, learner_id, debtor, spouse))

    def _maybe_spouse(self, school: School, rng: random.Random, debtor: Record) -> int | None:
        if rng.random() >= 0.6:
            return None
        parent_id = school.debtors.allocate()
        school.parents[parent_id] = data.make_parent(rng, parent_id, str(debtor["last_name"]))
        return parent_id

    def authorise(self, school_id: int, api_type_id: int) -> School:
        school = self.school(school_id)
        school.integrations.setdefault(api_type_id, False)
        return school

    def revoke(self, school_id: int, api_type_id: int | None = None) -> School:
        school = self.school(school_id)
        if api_type_id is None:
            school.integrations.clear()
        else:
            school.integrations.pop(api_type_id, None)
        return school

    def integration_rows(self) -> Table:
        """Client-integration records keyed (school, type) in order; small, so built per request."""
        table = Table()
        for school_id in self.school_ids:
            school = self.schools[school_id]
            for api_type_id in sorted(school.integrations):
                table.put(school_id * 65_536 + api_type_id, school.integration(api_type_id))
        return table

    # debtors

    def _new_debtor(self, school: School, rng: random.Random, fields: Record, closed: bool = False) -> Record:
        person_id = school.debtors.allocate()
        code = str(fields.get("debtor_code") or school.next_debtor_code)
        school.next_debtor_code += 1
        debtor = data.make_debtor(rng, person_id, code, closed=closed)
        debtor.update({key: value for key, value in fields.items() if key != DEBTOR_ID})
        debtor[DEBTOR_ID] = str(person_id)
        school.debtors.put(person_id, debtor)
        return debtor

    def create_debtor(self, school_id: int, fields: Record) -> Record:
        school = self.school(school_id)
        debtor = self._new_debtor(school, self.rng, fields)
        self.changes.record(school_id, "debtors", debtor[DEBTOR_ID], "created")
        school.finance.debtor_created(int(debtor[DEBTOR_ID]))
        return debtor

    def update_debtor(self, school_id: int, debtor_id: int, fields: Record) -> Record:
        school = self.school(school_id)
        debtor = school.debtors.get(debtor_id)
        if debtor is None:
            raise NotFound(f"debtor {debtor_id} does not exist")
        changed = {**debtor, **{key: value for key, value in fields.items() if key != DEBTOR_ID}}
        school.debtors.put(debtor_id, changed)
        if changed != debtor:
            self.changes.record(school_id, "debtors", debtor_id, "updated")
        if changed.get("debtor_code") != debtor.get("debtor_code"):
            for learner_id in school.learner_ids_of(debtor_id):
                learner = school.learners.records[learner_id]
                school.learners.put(learner_id, {**learner, "debtor_code": changed.get("debtor_code")})
                self.changes.record(school_id, "learners", learner_id, "updated")
            school.finance.debtor_code_changed(debtor_id)
        return changed

    def remove_debtor(self, school_id: int, debtor_id: int) -> Record:
        """Learners keep their (now dangling) link, as a database without cascades would show them; the
        debtor's books go with it (no report can show them without the account)."""
        school = self.school(school_id)
        removed = school.debtors.remove(debtor_id)
        if removed is None:
            raise NotFound(f"debtor {debtor_id} does not exist")
        self.changes.record(school_id, "debtors", debtor_id, "removed")
        school.finance.debtor_removed(debtor_id)
        return removed

    # learners

    def _store_learner(self, school: School, learner: Record) -> None:
        school.learners.put(int(learner["learner_id"]), learner)
        school.link_learner(int(learner["learner_id"]), learner.get(DEBTOR_ID), add=True)

    def create_learner(self, school_id: int, fields: Record) -> Record:
        """Missing links are filled from an existing debtor, so a new learner belongs to a family."""
        school = self.school(school_id)
        fields = learner_fields(fields)
        debtor_id = fields.get(DEBTOR_ID)
        debtor = school.debtors.get(debtor_id) if isinstance(debtor_id, int) else None
        if debtor is None and DEBTOR_ID not in fields and len(school.debtors):
            debtor = school.debtors.records[self.rng.choice(school.debtors.ids)]
        spouse = None
        if debtor is not None:
            siblings = school.learner_ids_of(int(debtor[DEBTOR_ID]))
            spouse = school.learners.records[siblings[0]].get("parent2_id") if siblings else None
        learner_id = school.learners.allocate()
        learner = data.make_learner(self.rng, learner_id, debtor, spouse)
        learner.update({key: value for key, value in fields.items() if key != "learner_id"})
        self._store_learner(school, learner)
        self.changes.record(school_id, "learners", learner_id, "created")
        return learner

    def update_learner(self, school_id: int, learner_id: int, fields: Record) -> Record:
        school = self.school(school_id)
        learner = school.learners.get(learner_id)
        if learner is None:
            raise NotFound(f"learner {learner_id} does not exist")
        changed = {**learner, **{k: v for k, v in learner_fields(fields).items() if k != "learner_id"}}
        school.link_learner(learner_id, learner.get(DEBTOR_ID), add=False)
        self._store_learner(school, changed)
        if changed != learner:
            self.changes.record(school_id, "learners", learner_id, "updated")
        return changed

    def remove_learner(self, school_id: int, learner_id: int) -> Record:
        school = self.school(school_id)
        removed = school.learners.remove(learner_id)
        if removed is None:
            raise NotFound(f"learner {learner_id} does not exist")
        school.link_learner(learner_id, removed.get(DEBTOR_ID), add=False)
        self.changes.record(school_id, "learners", learner_id, "removed")
        return removed


def learner_fields(fields: Record) -> Record:
    """v2 sends a learner's ids as integers: accept `"40"` from a control caller and store `40`."""
    return {
        key: int(value) if key.endswith("_id") and isinstance(value, str) and value.isdigit() else value
        for key, value in fields.items()
    }
