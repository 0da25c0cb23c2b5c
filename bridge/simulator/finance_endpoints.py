"""The Finance+ reports and debtor notes, as the d6 fact sheets describe them.

Age analysis (family rows by default, per learner and per category on request), financial transactions
(grouped by family, or flat rows with `transactions_shape="flat"`), promises to pay and debtor notes
(soft-deleted notes only with `include_deleted`), and the small lookups (transaction types and
categories, note and communication types). Every one needs `HTTP-X-SCHOOLID`, like the other school calls.
"""

from __future__ import annotations

import bisect
from typing import Any

from bridge.simulator.data import OPEN_DATE
from bridge.simulator.endpoints import Endpoints, Reply, failure, invalid
from bridge.simulator.finance import Finance
from bridge.simulator.ledger import (
    BUCKETS,
    CATEGORIES,
    COMMUNICATION_TYPES,
    NOTE_TYPES,
    TRANSACTION_TYPES,
    Piece,
    Txn,
    buckets_of,
    money,
    outstanding,
)
from bridge.simulator.state import DEBTOR_ID, School
from bridge.simulator.table import Predicate, Record, Table, paginate
from bridge.simulator.validation import Checks

COMPLETED = ("Yes", "No", "Partial")
LOOKUPS: dict[str, tuple[dict[int, str], bool, str]] = {
    # resource: (names by id, ids as strings in the collection (as d6's examples show), the 404 message)
    "transactiontypes": (TRANSACTION_TYPES, True, "The transaction type does not exist"),
    "transactioncategories": (CATEGORIES, True, "The transaction category does not exist"),
    "debtornotes/notetypes": (NOTE_TYPES, False, "The note type does not exist"),
    "debtornotes/communicationtypes": (COMMUNICATION_TYPES, False, "The communication type does not exist"),
}


def _active(finance: Finance, debtor: Record) -> bool:
    """d6's default scope: an open account (current learners) or an outstanding balance."""
    if debtor.get("account_closing_date") == OPEN_DATE:
        return True
    return finance.balance(int(debtor[DEBTOR_ID])) != 0


def _debtor_filter(checks: Checks, finance: Finance, all_accounts: bool) -> Predicate | None:
    """The scope and the `debtor_code` / `accountable_person_id` filters, on debtor records."""
    code = checks.integer("debtor_code")
    person = checks.integer(DEBTOR_ID)
    code_text = str(code) if code is not None else None
    person_text = str(person) if person is not None else None
    if all_accounts and code_text is None and person_text is None:
        return None

    def where(debtor: Record) -> bool:
        return (
            (code_text is None or debtor["debtor_code"] == code_text)
            and (person_text is None or str(debtor[DEBTOR_ID]) == person_text)
            and (all_accounts or _active(finance, debtor))
        )

    return where


class FinanceEndpoints(Endpoints):
    """The d6 endpoints with the Finance+ ones added; `finance` dispatches to them by resource."""

    def finance(self, resource: str, school: School, query: dict[str, str], record_id: int | None) -> Reply:
        if resource in LOOKUPS:
            return lookup(resource, record_id)
        books = school.finance.ensure()
        if resource == "ageanalysis":
            return self.age_analysis(school, books, query)
        if resource == "financialtransactions":
            return self.transactions(school, books, query)
        if resource == "debtornotes/promisetopays":
            return self.promises(books, query, record_id)
        return self.notes(books, query, record_id)

    # age analysis

    def age_analysis(self, school: School, books: Finance, query: dict[str, str]) -> Reply:
        checks = Checks(query)
        all_accounts = checks.flag("all_accounts")
        per_learner = checks.flag("per_learner")
        per_category = checks.flag("per_category")
        reverse = checks.flag("reverse_order")
        learner = checks.integer("learner_id")
        category = checks.integer("category_id")
        where = _debtor_filter(checks, books, all_accounts)
        if not (per_learner or per_category or learner is not None or category is not None):
            found = self._collection(school.debtors, checks, where, reverse=reverse)
            if isinstance(found, Reply):
                return found
            page, limit = found
            rows = [books.balance_row(debtor) for debtor in page.records]
            return self._listing(page, limit, rows, query.get("cursor"))
        by_learner = per_learner or learner is not None
        by_category = per_category or category is not None
        table = Table()
        for debtor in school.debtors.values():
            if where is not None and not where(debtor):
                continue
            pieces = outstanding(books.ledgers.get(int(debtor[DEBTOR_ID]), ()), books.period)
            for key, row in _grouped_rows(books, debtor, pieces, by_learner, by_category, learner, category):
                table.put(key, row)
        found = self._collection(table, checks, None, reverse=reverse)
        if isinstance(found, Reply):
            return found
        page, limit = found
        return self._listing(page, limit, page.records, query.get("cursor"))

    # financial transactions

    def transactions(self, school: School, books: Finance, query: dict[str, str]) -> Reply:
        checks = Checks(query)
        all_accounts = checks.flag("all_accounts")
        per_learner = checks.flag("per_learner")
        reverse = checks.flag("reverse_order")
        learner = checks.integer("learner_id")
        category = checks.integer("category_id")
        start = checks.date("start_date")
        end = checks.date("end_date")
        if query.get("end_date") and "start_date" not in checks.errors and start is None:
            checks.errors["start_date"] = "The Start date field is required when End date is present."
        elif start is not None and end is not None and end < start:
            checks.errors["end_date"] = "The End date must be a date after or equal to Start date."
        where = _debtor_filter(checks, books, all_accounts)
        first = start.isoformat() if start is not None else ""
        last = end.isoformat() if end is not None else "9999-12-31"

        def wanted(txn: Txn) -> bool:
            return (learner is None or txn.learner_id == learner) and (
                category is None or txn.category_id == category
            )

        if self.config.transactions_shape == "flat":
            debtors = school.debtors

            def flat(txn: Txn) -> bool:
                debtor = debtors.get(txn.debtor_id)
                return (
                    first <= txn.date <= last
                    and wanted(txn)
                    and debtor is not None
                    and (where is None or where(debtor))
                )

            limit = checks.limit(self.config.default_limit, self.config.max_allowed_limit)
            cursor = checks.cursor()
            if checks.errors:
                return invalid(checks.errors)
            txns, next_cursor, number = paginate(books.txn_ids, books.txns, cursor, limit, reverse, flat)
            meta: dict[str, Any] = {"limit": limit, "max_allowed_limit": self.config.max_allowed_limit}
            if next_cursor is not None:
                meta["next_cursor"] = next_cursor
            rows = [books.row(txn) for txn in txns]
            return Reply(200, {"data": rows, "meta": meta}, page=number, cursor=query.get("cursor"))

        chosen: dict[int, tuple[int, int, list[Txn]]] = {}

        def grouped(debtor: Record) -> bool:
            if where is not None and not where(debtor):
                return False
            debtor_id = int(debtor[DEBTOR_ID])
            ledger = books.ledgers.get(debtor_id, [])
            begin = bisect.bisect_left(ledger, first, key=lambda txn: txn.date)
            finish = bisect.bisect_right(ledger, last, key=lambda txn: txn.date)
            txns = [txn for txn in ledger[begin:finish] if wanted(txn)]
            if txns:
                opening = ledger[begin - 1].balance if begin > 0 else 0
                chosen[debtor_id] = (opening, ledger[finish - 1].balance, txns)
            return bool(txns)

        found = self._collection(school.debtors, checks, grouped, reverse=reverse)
        if isinstance(found, Reply):
            return found
        page, limit = found
        families = [
            _family(school, books, debtor, *chosen[int(debtor[DEBTOR_ID])], per_learner)
            for debtor in page.records
        ]
        return self._listing(page, limit, families, query.get("cursor"))

    # promises to pay

    def promises(self, books: Finance, query: dict[str, str], record_id: int | None) -> Reply:
        checks = Checks(query)
        include_note = checks.flag("include_debtor_note")

        def shown(record: Record) -> Record:
            return (
                {**record, "debtor_note": books.notes.get(int(record["note_id"]))} if include_note else record
            )

        if record_id is not None:
            if checks.errors:
                return invalid(checks.errors)
            promise = books.promises.get(record_id)
            if promise is None:
                return failure(404, "The Promise To Pay does not exist")
            return Reply(200, shown(promise))
        person = checks.integer(DEBTOR_ID)
        code = checks.integer("debtor_code")
        completed = checks.choice("promise_completed", COMPLETED)
        year = checks.integer("year_promised")
        reverse = checks.flag("reverse_order")
        code_text = str(code) if code is not None else None
        year_text = f"{year:04d}-" if year is not None else None

        def where(record: Record) -> bool:
            return (
                (person is None or record[DEBTOR_ID] == person)
                and (code_text is None or record["debtor_code"] == code_text)
                and (completed is None or record["promise_completed"] == completed)
                and (year_text is None or str(record["date_promised"]).startswith(year_text))
            )

        filtered = person is not None or code is not None or completed is not None or year is not None
        found = self._collection(books.promises, checks, where if filtered else None, reverse=reverse)
        if isinstance(found, Reply):
            return found
        page, limit = found
        records = [shown(record) for record in page.records] if include_note else page.records
        return self._listing(page, limit, records, query.get("cursor"))

    # debtor notes

    def notes(self, books: Finance, query: dict[str, str], record_id: int | None) -> Reply:
        checks = Checks(query)
        include_deleted = checks.flag("include_deleted")
        include_promises = checks.flag("include_promise_to_pays")

        def shown(note: Record) -> Record:
            if not include_promises:
                return note
            promises = books.promises
            ids = sorted(books.promises_of_note.get(int(note["note_id"]), ()))
            return {**note, "promise_to_pays": [promises.records[key] for key in ids]}

        if record_id is not None:
            if checks.errors:
                return invalid(checks.errors)
            note = books.notes.get(record_id)
            if note is None or (note["status"] == "Deleted" and not include_deleted):
                return failure(404, "The note does not exist.")
            return Reply(200, shown(note))
        note_type = checks.integer("note_type_id")
        communication = checks.integer("communication_type_id")
        person = checks.integer(DEBTOR_ID)
        code = checks.integer("debtor_code")
        year = checks.integer("year")
        reverse = checks.flag("reverse_order")
        code_text = str(code) if code is not None else None
        year_text = f"{year:04d}-" if year is not None else None

        def where(note: Record) -> bool:
            return (
                (include_deleted or note["status"] != "Deleted")
                and (note_type is None or note["note_type_id"] == note_type)
                and (communication is None or note["communication_type_id"] == communication)
                and (person is None or note[DEBTOR_ID] == person)
                and (code_text is None or note["debtor_code"] == code_text)
                and (year_text is None or str(note["date"]).startswith(year_text))
            )

        found = self._collection(books.notes, checks, where, reverse=reverse)
        if isinstance(found, Reply):
            return found
        page, limit = found
        records = [shown(note) for note in page.records] if include_promises else page.records
        return self._listing(page, limit, records, query.get("cursor"))


def lookup(resource: str, record_id: int | None) -> Reply:
    """The fixed lists: a bare `data` array (no `meta`, as the fact sheets show), or one object."""
    names, as_text, missing = LOOKUPS[resource]
    if record_id is not None:
        if record_id not in names:
            return failure(404, missing)
        return Reply(200, {"id": record_id, "name": names[record_id]})
    return Reply(
        200, {"data": [{"id": str(key) if as_text else key, "name": name} for key, name in names.items()]}
    )


def _grouped_rows(
    books: Finance,
    debtor: Record,
    pieces: list[Piece],
    by_learner: bool,
    by_category: bool,
    learner: int | None,
    category: int | None,
) -> list[tuple[int, Record]]:
    """Age-analysis rows per learner and/or category: (a key that keeps the family's rows together, row)."""
    groups: dict[tuple[int, int], list[Piece]] = {}
    for piece in pieces:
        learner_id, category_id, _, _ = piece
        if (learner is not None and learner_id != learner) or (
            category is not None and category_id != category
        ):
            continue
        group = ((learner_id or 0) if by_learner else 0, (category_id or 0) if by_category else 0)
        groups.setdefault(group, []).append(piece)
    debtor_id = int(debtor[DEBTOR_ID])
    date = books.ageing_of(debtor_id)[0]
    rows: list[tuple[int, Record]] = []
    for (learner_id, category_id), grouped in sorted(groups.items()):
        row: Record = {"debtor_code": debtor["debtor_code"], DEBTOR_ID: str(debtor_id)}
        if by_learner:
            row["learner_id"] = str(learner_id) if learner_id else None
        if by_category:
            row["category_id"] = str(category_id) if category_id else None
            row["category"] = CATEGORIES.get(category_id) if category_id else None
        row["date"] = date
        buckets = buckets_of(grouped)
        for name, cents in zip(BUCKETS, buckets, strict=True):
            row[name] = money(cents)
        row["balance_total"] = money(sum(buckets))
        rows.append(((debtor_id << 32) | (learner_id << 8) | category_id, row))
    return rows


def _family(
    school: School,
    books: Finance,
    debtor: Record,
    opening: int,
    closing: int,
    txns: list[Txn],
    per_learner: bool,
) -> Record:
    """One family/parent group of the transactions report."""
    family: Record = {
        DEBTOR_ID: str(debtor[DEBTOR_ID]),
        "debtor_code": debtor["debtor_code"],
        "title": debtor.get("title", ""),
        "first_name": debtor.get("first_name", ""),
        "last_name": debtor.get("last_name", ""),
        "opening_balance": money(opening),
        "closing_balance": money(closing),
        "transactions": [books.row(txn, family=False) for txn in txns],
    }
    if per_learner:
        learners: dict[int, list[Txn]] = {}
        for txn in txns:
            if txn.learner_id is not None:
                learners.setdefault(txn.learner_id, []).append(txn)
        family["learners"] = [
            _learner_group(school, books, learner_id, own) for learner_id, own in sorted(learners.items())
        ]
    return family


def _learner_group(school: School, books: Finance, learner_id: int, txns: list[Txn]) -> Record:
    learner = school.learners.get(learner_id) or {}
    return {
        "learner_id": str(learner_id),
        "first_name": learner.get("first_name", ""),
        "last_name": learner.get("last_name", ""),
        "grade": learner.get("grade", ""),
        "transactions": [books.row(txn, family=False) for txn in txns],
    }
