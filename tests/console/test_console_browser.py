"""The console in a real browser (Debian's chromium, headless, driven by Playwright) against a real bridge:
signing in, the overview, schools, subscriptions, events and dead letters as an operator sees them.

The stack and the tab come from conftest.py; screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from bridge.testing.waiting import wait_until
from tests.console.helpers import (
    SCRIPT_LEARNER,
    SCRIPT_SCHOOL,
    SCRIPT_SCHOOL_ID,
    Stack,
    go,
    shot,
    sign_in,
)

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)


def test_nothing_shows_without_the_token_and_a_wrong_one_is_refused(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#page")).to_be_hidden()
    expect(page.locator("nav")).to_be_hidden()
    page.fill("#token", "not-the-token")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_have_text(
        "The bridge refused this token; enter the admin token again."
    )
    assert page.evaluate("sessionStorage.length") == 0
    expect(page.locator("#page")).to_be_empty()
    shot(page, "login")
    sign_in(page)
    expect(page.locator("#login")).to_be_hidden()
    assert page.evaluate("Object.keys(sessionStorage)") == ["d6b.admin-token"]
    assert page.evaluate("localStorage.length + document.cookie.length") == 0
    page.click("#sign-out")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#page")).to_be_empty()
    assert page.evaluate("sessionStorage.length") == 0


def test_overview_counts_schools_events_and_deliveries(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    sign_in(page)
    page.wait_for_selector("#page[data-page='overview'] svg.chart")
    tiles = page.locator(".tile")
    value = {t.locator(".label").inner_text(): t.locator(".value").inner_text() for t in tiles.all()}
    assert value["Active"] == "3" and value["Failing"] == "0"
    assert value["Inactive"] == "0" and value["Revoked"] == "0"
    assert int(value["Dead letters"]) >= 3
    assert int(value["Failed attempts"]) >= 9  # three attempts for each dead letter
    events_heading = page.locator("h2", has_text="Events per minute")
    expect(events_heading).to_contain_text("last hour")
    total = int(events_heading.inner_text().rsplit("(", 1)[1].rstrip(")+"))
    assert total >= 3 * 2 + 3  # at least every learner created (the initial snapshot is emitted)
    assert page.locator("svg.chart rect.bar[height]:not([height='0'])").count() >= 1
    shot(page, "overview")


def test_schools_show_names_as_text_and_poll_now(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    sign_in(page)
    go(page, "schools", "table")
    row = page.locator("tr", has=page.locator("td.school-name", has_text=SCRIPT_SCHOOL))
    expect(row).to_have_count(1)
    expect(row.locator("td.school-name")).to_have_text(SCRIPT_SCHOOL)
    expect(row.locator(".badge").first).to_have_text("active")
    expect(row.locator("td").nth(6)).to_have_text("3")  # learners: two seeded and the one added
    expect(page.locator("tr", has_text="1000").locator("td").nth(6)).to_have_text("24")
    feeds = row.locator("td.feeds .feed")  # each watched resource: its own schedule, counts and status
    expect(feeds).to_have_count(2)
    expect(row.locator('.feed[data-resource="learners"]')).to_contain_text("learners 3 · every")
    expect(row.locator('.feed[data-resource="debtors"]')).to_contain_text("debtors")
    assert page.locator("main script").count() == 0
    row.get_by_role("button", name="Poll now").click()
    expect(page.locator("#flash")).to_have_text(f"Poll of school {SCRIPT_SCHOOL_ID} queued.")
    shot(page, "schools")


def test_subscriptions_create_test_rotate_and_disable(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    sign_in(page)
    go(page, "subscriptions", "table")
    flaky_row = page.locator("tr", has_text=stack.flaky_url)
    expect(flaky_row.locator("td").nth(3)).to_have_text("HTTP 500")  # its last error
    page.click("summary")
    page.fill("#create-subscription input[name=url]", stack.ok_url)
    page.fill("#create-subscription input[name=event_types]", "learner.*, debtor.updated")
    page.fill("#create-subscription input[name=description]", "console <b>test</b>")
    page.click("#create-subscription button[type=submit]")
    secret = page.locator("#secret-value")
    expect(secret).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{44}$"))
    first_secret = secret.inner_text()
    row = page.locator("tr", has_text=stack.ok_url)
    expect(row).to_contain_text("events: debtor.updated, learner.*")  # the bridge sorts them
    expect(row).to_contain_text("console <b>test</b>")
    expect(row.locator(".badge").first).to_have_text("enabled")

    row.get_by_role("button", name="Send test").click()
    expect(page.locator("#flash")).to_contain_text("Test delivered: HTTP 200")
    assert [b["type"] for b in stack.ok.bodies()] == ["webhook.test"]
    expect(row.locator(".badge.ok", has_text="200")).to_have_count(1)  # the list shows the attempt
    expect(secret).to_have_text(first_secret)  # still there: it is shown until dismissed

    row.get_by_role("button", name="Rotate secret").click()
    expect(secret).not_to_have_text(first_secret)
    expect(secret).to_have_text(re.compile(r"^whsec_"))
    page.get_by_role("button", name="Done").click()
    expect(page.locator("#secret")).to_be_hidden()

    row.get_by_role("button", name="Attempts").click()
    expect(page.locator("#subscription-detail")).to_contain_text("webhook.test")
    shot(page, "subscriptions")

    row.get_by_role("button", name="Disable").click()
    row = page.locator("tr", has_text=stack.ok_url)
    expect(row.locator(".badge").first).to_have_text("disabled")
    ok_id = next(s["id"] for s in stack.api("GET", "/v1/subscriptions")["data"] if s["url"] == stack.ok_url)
    assert stack.api("GET", f"/v1/subscriptions/{ok_id}")["enabled"] is False
    row.get_by_role("button", name="Enable").click()
    expect(page.locator("tr", has_text=stack.ok_url).locator(".badge").first).to_have_text("enabled")


def test_events_filter_open_and_redeliver(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    sign_in(page)
    go(page, "events", "#events-table")
    rows = page.locator("#events-table tbody tr")
    expect(rows).to_have_count(50)  # one page; the initial snapshots made more
    page.get_by_role("button", name="Older").click()
    total = len(stack.api("GET", "/v1/events?limit=500")["data"])
    assert total > 50
    expect(rows).to_have_count(total)
    expect(page.get_by_role("button", name="Older")).to_have_count(0)
    page.select_option("#event-filters select[name=type]", "learner.created")
    page.fill("#event-filters input[name=school_id]", str(SCRIPT_SCHOOL_ID))
    page.click("#event-filters button[type=submit]")
    expect(rows).to_have_count(3)
    for text in rows.all_inner_texts():
        assert "learner.created" in text and str(SCRIPT_SCHOOL_ID) in text
    named = rows.filter(has=page.locator("td", has_text=re.compile(rf"\s{stack.script_learner}$")))
    named.get_by_role("button").click()
    body = page.locator("#event-detail pre.body")
    expect(body).to_contain_text(SCRIPT_LEARNER)
    expect(page.locator("#event-detail img")).to_have_count(0)
    expect(page.locator("#event-detail h3").first).to_have_text("Deliveries")
    flaky_id = next(
        s["id"] for s in stack.api("GET", "/v1/subscriptions")["data"] if s["url"] == stack.flaky_url
    )
    delivery = page.locator("#event-detail tr", has_text=flaky_id)
    expect(delivery.locator(".badge")).to_have_text("dead")
    expect(delivery).to_contain_text("HTTP 500")
    page.get_by_role("button", name="Redeliver").click()
    expect(page.locator("#flash")).to_have_text(re.compile(r"queued again for [1-9]\d* subscription"))
    shot(page, "events")


def test_dead_letters_retry_selected_then_all(page: Any, stack: Stack) -> None:
    expect = sync_api.expect
    wait_until(stack.settled, what="the redelivery to settle")
    sign_in(page)
    go(page, "dead-letters", "h1")
    dead = stack.api("GET", "/v1/dead-letters")["data"]
    heading = page.locator("#page h1")
    expect(heading).to_have_text(f"Dead letters ({len(dead)})")
    first = page.locator("tbody tr").first
    expect(first).to_contain_text("learner.created")
    expect(first).to_contain_text("HTTP 500")
    shot(page, "dead-letters")

    stack.failing["on"] = False  # the receiver is mended
    mended_at = time.time()
    first.locator("input[type=checkbox]").check()
    page.get_by_role("button", name="Retry selected").click()
    expect(page.locator("#flash")).to_have_text("Requeued 1 dead letter.")
    page.get_by_role("button", name="Retry all").click()
    expect(page.locator("#flash")).to_have_text(re.compile(r"^Requeued \d+ dead letters?\.$"))
    wait_until(lambda: not stack.api("GET", "/v1/dead-letters")["data"], what="the dead letters delivered")
    page.click("nav a[href='#overview']")
    go(page, "dead-letters", "h1")
    expect(heading).to_have_text("Dead letters (0)")
    expect(page.locator("#page")).to_contain_text("No dead letters.")
    delivered = {r.event_id for r in stack.flaky.received if r.at >= mended_at}
    assert {d["event_id"] for d in dead} <= delivered
