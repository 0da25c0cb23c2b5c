"""The in-memory world without HTTP: pagination over a table, and churn keeping every index true."""

from __future__ import annotations

from bridge.simulator.churn import Churn
from bridge.simulator.state import DEBTOR_ID, World
from bridge.simulator.table import Table, decode_cursor


def table_of(ids: list[int]) -> Table:
    table = Table()
    for key in ids:
        table.put(key, {"id": key})
    return table


def test_pages_resume_after_the_last_id_whatever_was_removed() -> None:
    table = table_of(list(range(1, 11)))
    first = table.page(None, limit=4)
    assert [r["id"] for r in first.records] == [1, 2, 3, 4]
    assert first.next_cursor is not None
    table.remove(4)
    table.remove(5)
    table.put(table.allocate(), {"id": 11})
    second = table.page(decode_cursor(first.next_cursor), limit=4)
    assert [r["id"] for r in second.records] == [6, 7, 8, 9]
    assert second.page == 2
    assert second.next_cursor is not None
    last = table.page(decode_cursor(second.next_cursor), limit=4)
    assert [r["id"] for r in last.records] == [10, 11]
    assert last.next_cursor is None


def test_a_filtered_page_only_promises_more_when_a_match_remains() -> None:
    table = table_of(list(range(1, 21)))
    page = table.page(None, limit=5, where=lambda r: r["id"] % 4 == 0)
    assert [r["id"] for r in page.records] == [4, 8, 12, 16, 20]
    assert page.next_cursor is None


def test_reverse_pages() -> None:
    table = table_of([2, 4, 6, 8, 10])
    first = table.page(None, limit=2, reverse=True)
    assert [r["id"] for r in first.records] == [10, 8]
    assert first.next_cursor is not None
    rest = table.page(decode_cursor(first.next_cursor), limit=5)
    assert [r["id"] for r in rest.records] == [6, 4, 2]


def test_churn_is_reproducible_and_keeps_the_indexes_consistent() -> None:
    def churned(seed: int) -> World:
        world = World(seed)
        for school_id in (1000, 1001):
            world.add_school(school_id, debtors=30, learners=40, api_type_ids=(8,), activated=True)
        Churn(world, rate=100).step(5.0)
        return world

    world = churned(3)
    for school in world.schools.values():
        assert school.learners.ids == sorted(school.learners.records)
        assert school.debtors.ids == sorted(school.debtors.records)
        expected: dict[int, set[int]] = {}
        for learner in school.learners.values():
            expected.setdefault(learner[DEBTOR_ID], set()).add(learner["learner_id"])
        assert school.learners_by_debtor == expected
    again = churned(3)
    assert [list(s.learners.values()) for s in world.schools.values()] == [
        list(s.learners.values()) for s in again.schools.values()
    ]
