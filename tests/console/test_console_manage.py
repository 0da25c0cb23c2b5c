"""The console's management work in a real browser: editing, deleting and replaying subscriptions, an
attempt's request and response, the last hour per subscription, searching events, filtering dead letters,
the event-type catalogue, and the read-only token that sees everything and can change nothing.

The stack and the tab come from conftest.py (this module has a stack of its own); screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bridge.catalogue import EVENT_TYPES
from bridge.testing.waiting import wait_until
from tests.console.helpers import READONLY_TOKEN, SCRIPT_SCHOOL_ID, Stack, go, shot, sign_in

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
CHANGE_BUTTONS = ("Edit", "Replay", "Disable", "Enable", "Rotate secret", "Send test", "Delete")


def test_dead_letters_filter_by_subscription_and_school_and_show_urls(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    sign_in(page)
    go(page, "dead-letters", "h1")
    rows = page.locator("#dead-letters-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text(stack.flaky_url)  # the subscription's URL, not only its id
    retry = page.get_by_role("button", name="Retry selected")
    expect(retry).to_be_disabled()  # nothing selected yet
    rows.first.locator("input[type=checkbox]").check()
    expect(retry).to_be_enabled()
    rows.first.locator("input[type=checkbox]").uncheck()
    expect(retry).to_be_disabled()

    flaky = stack.subscription(stack.flaky_url)
    page.select_option("#dead-letter-filters select[name=subscription_id]", flaky["id"])
    filter_and_wait(page)
    expect(rows).to_have_count(3)
    page.fill("#dead-letter-filters input[name=school_id]", "4242")
    filter_and_wait(page)
    expect(page.locator("#page")).to_contain_text("No dead letters match.")
    page.fill("#dead-letter-filters input[name=school_id]", str(SCRIPT_SCHOOL_ID))
    filter_and_wait(page)
    expect(rows).to_have_count(3)
    expect(page.get_by_role("button", name="Retry all shown")).to_be_enabled()
    shot(page, "dead-letters-filtered")


def filter_and_wait(page: Any) -> None:
    """Submit the dead-letter filters and wait for the page drawn with them (the form is drawn anew)."""
    form = page.locator("#dead-letter-filters").element_handle()
    page.click("#dead-letter-filters button[type=submit]")
    page.wait_for_function("form => !form.isConnected", arg=form)


def test_each_subscription_shows_its_last_hour_and_a_quiet_empty_error(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    ok = stack.api("POST", "/v1/subscriptions", json={"url": stack.ok_url, "event_types": ["webhook.test"]})
    assert stack.api("POST", f"/v1/subscriptions/{ok['id']}/test")["success"] is True
    sign_in(page)
    go(page, "subscriptions", "#subscriptions-table")
    flaky_row = page.locator(f"tr[data-subscription='{stack.subscription(stack.flaky_url)['id']}']")
    expect(flaky_row.locator("td.hour")).to_contain_text(re.compile(r"0% ok of \d+ attempts"))
    expect(flaky_row.locator("td.hour")).to_contain_text("nothing delivered")
    expect(flaky_row.locator("td.error-text")).to_have_text("HTTP 500")
    ok_row = page.locator(f"tr[data-subscription='{ok['id']}']")
    expect(ok_row.locator("td.hour")).to_contain_text("100% ok of 1 attempt")
    expect(ok_row.locator("td").nth(3)).to_have_text("none")
    expect(ok_row.locator("td").nth(3)).to_have_class("muted")  # not a red dash
    stack.api("DELETE", f"/v1/subscriptions/{ok['id']}")


def test_edit_a_subscription_then_delete_it(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    made = stack.api(
        "POST", "/v1/subscriptions", json={"url": stack.ok_url + "/edit", "description": "to edit"}
    )
    sign_in(page)
    go(page, "subscriptions", "#subscriptions-table")
    row = page.locator(f"tr[data-subscription='{made['id']}']")
    row.get_by_role("button", name="Edit").click()
    form = page.locator("#edit-subscription")
    expect(form.locator("input[name=url]")).to_have_value(stack.ok_url + "/edit")
    form.locator("input[name=event_types]").fill("debtor.*, learner.updated")
    form.locator("input[name=school_ids]").fill(f"1000, {SCRIPT_SCHOOL_ID}")
    form.locator("input[name=description]").fill("edited <i>here</i>")
    form.locator("input[name=enabled]").uncheck()
    shaping = "payload" in made
    if shaping:
        form.locator("textarea[name=fields]").fill("learner: first_name, grade\ndebtor: debtor_code")
        form.locator("input[name=redact]").fill("id_number")
        form.locator("select[name=payload]").select_option("thin")
    shot(page, "subscription-edit")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#flash")).to_have_text(f"Subscription {made['id']} saved.")
    saved = stack.api("GET", f"/v1/subscriptions/{made['id']}")
    assert saved["event_types"] == ["debtor.*", "learner.updated"]
    assert saved["school_ids"] == [1000, SCRIPT_SCHOOL_ID]
    assert (saved["description"], saved["enabled"]) == ("edited <i>here</i>", False)
    if shaping:
        assert saved["fields"] == {"learner": ["first_name", "grade"], "debtor": ["debtor_code"]}
        assert (saved["redact"], saved["payload"]) == (["id_number"], "thin")
    row = page.locator(f"tr[data-subscription='{made['id']}']")
    expect(row).to_contain_text("edited <i>here</i>")
    expect(row.locator(".badge").first).to_have_text("disabled")

    delete = row.get_by_role("button", name="Delete")
    delete.click()
    expect(row.get_by_role("button", name="Confirm delete")).to_be_visible()  # asks once more, no dialog
    assert stack.api("GET", f"/v1/subscriptions/{made['id']}")["id"] == made["id"]
    row.get_by_role("button", name="Confirm delete").click()
    expect(page.locator("#flash")).to_contain_text(f"Subscription {made['id']} deleted")
    expect(page.locator(f"tr[data-subscription='{made['id']}']")).to_have_count(0)
    assert made["id"] not in {s["id"] for s in stack.api("GET", "/v1/subscriptions")["data"]}


def test_replay_a_window_then_read_an_attempts_request_and_response(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    url = stack.ok_url + "/replay"
    made = stack.api("POST", "/v1/subscriptions", json={"url": url, "event_types": ["learner.created"]})
    learners = stack.api("GET", "/v1/events", params={"type": "learner.created", "limit": 500})["data"]
    sign_in(page)
    go(page, "subscriptions", "#subscriptions-table")
    row = page.locator(f"tr[data-subscription='{made['id']}']")
    row.get_by_role("button", name="Replay").click()
    page.locator("#replay-subscription").get_by_role("button", name="Replay").click()
    expect(page.locator("#flash")).to_have_text(f"Replay to {url}: {len(learners)} events queued.")
    wait_until(
        lambda: {e["id"] for e in learners} <= {r.event_id for r in stack.ok.received},
        what="the replayed events",
    )

    page.reload()
    page.wait_for_selector("#subscriptions-table")
    row = page.locator(f"tr[data-subscription='{made['id']}']")
    row.get_by_role("button", name="Attempts").click()
    attempts = page.locator("#subscription-detail tbody tr")
    expect(attempts).to_have_count(min(25, len(learners)))
    event_id = attempts.first.locator(".mono").first.inner_text()
    attempts.first.get_by_role("button", name="Request and response").click()
    headers = page.locator("#attempt-headers")
    expect(headers).to_contain_text(f"webhook-id{event_id}")
    expect(headers).to_contain_text("webhook-signaturev1,[masked]")
    expect(headers).to_contain_text("content-typeapplication/json")
    assert made["secret"] not in page.content()
    expect(page.locator("#attempt-body")).to_contain_text(event_id)
    expect(page.locator("#attempt-status")).to_contain_text("HTTP 200")
    shot(page, "attempt")
    stack.api("DELETE", f"/v1/subscriptions/{made['id']}")


def test_events_found_by_id_by_record_and_by_school(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    record = str(stack.script_learner)
    of_record = stack.api(
        "GET",
        "/v1/events",
        params={"school_id": SCRIPT_SCHOOL_ID, "resource": "learner", "resource_id": record},
    )["data"]
    assert of_record and all(e["resource_id"] == record for e in of_record)
    sign_in(page)
    go(page, "events", "#events-table")
    rows = page.locator("#events-table tbody tr")
    form = page.locator("#event-filters")

    form.locator("input[name=event_id]").fill(of_record[0]["id"])
    form.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(page.locator("#event-detail .mono").first).to_have_text(of_record[0]["id"])

    form.locator("input[name=event_id]").fill("")
    form.locator("input[name=school_id]").fill(str(SCRIPT_SCHOOL_ID))
    form.locator("select[name=resource]").select_option("learner")
    form.locator("input[name=resource_id]").fill(record)
    form.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(len(of_record))
    # The table is drawn anew after each search: read it once every row of the answer is there.
    for cells in wait_until(lambda: _drawn(rows, len(of_record)), what="the record's events drawn"):
        assert (cells[2], cells[3]) == (str(SCRIPT_SCHOOL_ID), f"learner {record}")

    form.locator("input[name=resource_id]").fill("")
    form.locator("select[name=resource]").select_option("")
    form.get_by_role("button", name="Search").click()
    of_school = stack.api("GET", "/v1/events", params={"school_id": SCRIPT_SCHOOL_ID, "limit": 50})["data"]
    expect(rows).to_have_count(len(of_school))
    for cells in wait_until(lambda: _drawn(rows, len(of_school)), what="the school's events drawn"):
        assert cells[2] == str(SCRIPT_SCHOOL_ID)


def _drawn(rows: Any, count: int) -> list[list[str]] | None:
    """The rows' cells once the table holds `count` complete rows (None while it is being drawn)."""
    cells = [text.rstrip().split("\t") for text in rows.all_inner_texts()]
    return cells if len(cells) == count and all(len(row) > 3 for row in cells) else None


def test_the_event_type_catalogue(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    sign_in(page)
    go(page, "event-types", "#event-types-table")
    expect(page.locator("#event-types-table tbody tr")).to_have_count(len(EVENT_TYPES))
    row = page.locator("tr[data-type='learner.updated']")
    row.locator("summary").click()
    expect(row.locator("pre.example")).to_contain_text('"type": "learner.updated"')
    expect(row.locator("pre.schema")).to_contain_text('"const": "learner.updated"')
    shot(page, "event-types")


def test_a_read_only_token_sees_everything_and_no_change_button(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    sign_in(page, READONLY_TOKEN)
    expect(page.locator("#role")).to_have_text("read-only")
    go(page, "subscriptions", "#subscriptions-table")
    expect(page.locator("#subscriptions-table tbody tr")).not_to_have_count(0)
    for name in CHANGE_BUTTONS:
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.locator("#create-subscription")).to_have_count(0)
    expect(page.get_by_role("button", name="Attempts").first).to_be_visible()  # reading is allowed
    go(page, "schools", "table")
    expect(page.get_by_role("button", name="Poll now")).to_have_count(0)
    go(page, "dead-letters", "#dead-letters-table")
    expect(page.get_by_role("button", name=re.compile("^Retry"))).to_have_count(0)
    expect(page.locator("#dead-letters-table input[type=checkbox]")).to_have_count(0)
    go(page, "events", "#events-table")
    page.locator("#events-table tbody tr").first.get_by_role("button").click()
    expect(page.locator("#event-detail h3").first).to_have_text("Deliveries")
    expect(page.get_by_role("button", name="Redeliver")).to_have_count(0)
    shot(page, "read-only")


def test_create_a_pull_subscription_and_see_its_waiting_events(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    sign_in(page)
    go(page, "subscriptions", "#subscriptions-table")
    page.get_by_text("New subscription").click()
    form = page.locator("#create-subscription")
    form.locator("select[name=delivery]").select_option("pull")
    form.locator("input[name=description]").fill("a feed for the office")
    form.get_by_role("button", name="Create subscription").click()
    expect(page.locator("#flash")).to_contain_text("Pull subscription")
    made = next(
        s
        for s in stack.api("GET", "/v1/subscriptions")["data"]
        if s["description"] == "a feed for the office"
    )
    assert made["delivery"] == "pull" and made["url"] is None
    page.reload()
    row = page.locator(f"tr[data-subscription='{made['id']}']")
    expect(row).to_contain_text(f"{made['pending_deliveries']} events waiting to be read")
    expect(row.locator(".badge").first).to_have_text("pull")
    for absent in ("Send test", "Rotate secret"):  # nothing is ever sent to it
        expect(row.get_by_role("button", name=absent)).to_have_count(0)
    shot(page, "subscription-pull")


def test_commands_show_their_state_and_d6s_answer_to_a_read_only_token(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    import datetime as dt

    body = {
        "accountable_person_id": 999_999,  # d6 knows no such person: the command fails with d6's message
        "date": dt.date.today().isoformat(),
        "note_type_id": 3,
        "note": "an internal note",
    }
    made = stack.api("POST", "/v1/schools/1000/notes", json=body)
    assert wait_until(lambda: stack.api("GET", f"/v1/commands/{made['command_id']}")["state"] == "failed")
    sign_in(page, READONLY_TOKEN)
    go(page, "commands", "#commands-table")
    row = page.locator(f"tr[data-command='{made['command_id']}']")
    expect(row).to_contain_text("create_note")
    expect(row.locator(".badge")).to_have_text("failed")
    expect(row.locator(".error-text")).to_contain_text("HTTP 4")
    expect(page.locator("body")).not_to_contain_text("an internal note")  # a note's text is never shown
    shot(page, "commands")
