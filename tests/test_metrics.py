"""`GET /metrics`: the series docs/operations.md#metrics lists exist, and the delivery ones move with real
deliveries.

The registry is process-wide, so the tests compare scrapes taken before and after what they do.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable

import httpx
import pytest
import redis.asyncio as aioredis
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families

from bridge import metrics
from bridge.api.metrics import Gauges, metrics_endpoint
from bridge.api.wiring import build_api, parts
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.urls import UrlGuard
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.testing.events import make_events
from bridge.testing.receivers import Answer, Receiver
from bridge.testing.servers import free_port
from bridge.testing.settings import fast_settings
from bridge.testing.waiting import wait_for
from tests.delivery.parts import DeliveryParts

DOCUMENTED_SERIES = {
    "d6_bridge_d6_requests_total",
    "d6_bridge_d6_request_duration_seconds",
    "d6_bridge_d6_bad_answers_total",
    "d6_bridge_polls_total",
    "d6_bridge_poll_duration_seconds",
    "d6_bridge_records_scanned_total",
    "d6_bridge_events_emitted_total",
    "d6_bridge_mass_removals_held_total",
    "d6_bridge_schools",
    "d6_bridge_poll_lag_seconds",
    "d6_bridge_deliveries_total",
    "d6_bridge_delivery_latency_seconds",
    "d6_bridge_delivery_attempt_duration_seconds",
    "d6_bridge_pending_deliveries",
    "d6_bridge_dead_letters",
    "d6_bridge_subscriptions",
    "d6_bridge_commands_total",
    "d6_bridge_commands_waiting",
}


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` with exactly these labels (0 when absent, as Prometheus would treat it)."""
        for family in self.families:
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def sample_names(self) -> set[str]:
        return {s.name for f in self.families for s in f.samples} | {
            f"{f.name}_total" if f.type == "counter" else f.name for f in self.families
        }


def build_app(dispatcher: DeliveryParts) -> Litestar:
    """`GET /metrics` refreshing the gauges of the dispatcher's store, built as `create_app` builds it."""
    gauges = Gauges(subscriptions=dispatcher.store, worker=dispatcher.worker)
    return build_api(dispatcher.settings, [metrics_endpoint], parts(gauges=gauges))


async def scrape(app: Litestar) -> Scrape:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return Scrape(response.text)


@pytest.fixture
def dispatcher(dispatcher_factory: Callable[..., DeliveryParts]) -> DeliveryParts:
    return dispatcher_factory()


async def test_every_series_of_the_spec_is_exposed_with_the_prefix(dispatcher: DeliveryParts) -> None:
    page = await scrape(build_app(dispatcher))
    names = page.sample_names()
    assert names >= DOCUMENTED_SERIES, DOCUMENTED_SERIES - names
    assert all(f.name.startswith("d6_bridge_") for f in page.families)
    assert page.value("d6_bridge_deliveries_total", outcome="dead") >= 0  # exists before any delivery


async def test_promtool_accepts_the_live_page_without_a_warning(
    dispatcher: DeliveryParts, receiver_factory: Callable[..., tuple[Receiver, str]]
) -> None:
    """`promtool check metrics` (Debian's `prometheus` package; `make test` installs it) on `/metrics`
    after deliveries and d6 answers have filled in label values: silent, exit 0, no `_created` series."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: apt-get install prometheus (make test does it when root)")
    app = build_app(dispatcher)
    _, url = receiver_factory()
    await dispatcher.store.create(url=url)
    metrics.observe_d6_response("GET /v2/finplus/debtmanagement/learners", 200, 0.1)
    metrics.EVENTS_EMITTED.labels(type="learner.created").inc()
    metrics.POLLS.labels(resource="school", outcome="ok").inc()
    await dispatcher.fan_out(make_events(1, 1))
    page = await scrape(app)
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=page.text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    assert "_created" not in page.text
    assert page.value("d6_bridge_schools", state="denied") == 0  # every state the HELP names exists


async def test_delivery_series_move_after_deliveries(
    dispatcher: DeliveryParts, receiver_factory: Callable[..., tuple[Receiver, str]]
) -> None:
    app = build_app(dispatcher)
    ok_receiver, ok_url = receiver_factory()
    _, failing_url = receiver_factory(lambda _r, _n: Answer(status=500))
    ok = await dispatcher.store.create(url=ok_url)
    failing = await dispatcher.store.create(url=failing_url)
    before = await scrape(app)

    await dispatcher.fan_out(make_events(1, 2))
    queued = await scrape(app)
    assert queued.value("d6_bridge_pending_deliveries") == 4
    assert queued.value("d6_bridge_subscriptions", state="enabled") == 2

    await dispatcher.start()
    await wait_for(lambda: len(ok_receiver.received) == 2, what="2 deliveries")

    async def settled() -> bool:
        return await dispatcher.store.counts(ok.id) == (0, 0) and await dispatcher.store.counts(
            failing.id
        ) == (0, 2)

    await wait_for(settled, what="the failing subscription's dead letters")
    after = await scrape(app)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # The failing subscription: 1 attempt + 2 retries per event (retry schedule of two), then dead.
    assert moved("d6_bridge_deliveries_total", outcome="ok") == 2
    assert moved("d6_bridge_deliveries_total", outcome="retry") == 4
    assert moved("d6_bridge_deliveries_total", outcome="dead") == 2
    assert moved("d6_bridge_delivery_attempt_duration_seconds_count") == 8
    assert moved("d6_bridge_delivery_latency_seconds_count") == 2
    assert 0 < moved("d6_bridge_delivery_latency_seconds_sum") < 10
    assert after.value("d6_bridge_pending_deliveries") == 0
    assert after.value("d6_bridge_dead_letters") == 2
    assert after.value("d6_bridge_subscriptions", state="enabled") == 2
    assert after.value("d6_bridge_subscriptions", state="disabled") == 0

    await dispatcher.store.update(failing.id, {"enabled": False})
    disabled = await scrape(app)
    assert disabled.value("d6_bridge_subscriptions", state="enabled") == 1
    assert disabled.value("d6_bridge_subscriptions", state="disabled") == 1


async def test_a_410_counts_as_gone(
    dispatcher: DeliveryParts, receiver_factory: Callable[..., tuple[Receiver, str]]
) -> None:
    app = build_app(dispatcher)
    _, url = receiver_factory(lambda _r, _n: Answer(status=410))
    subscription = await dispatcher.store.create(url=url)
    before = await scrape(app)
    await dispatcher.fan_out(make_events(1, 1))
    await dispatcher.start()

    async def disabled() -> bool:
        return not (await dispatcher.store.get(subscription.id)).enabled

    await wait_for(disabled, what="the subscription disabled by 410")
    after = await scrape(app)
    gone = "d6_bridge_deliveries_total"
    assert after.value(gone, outcome="gone") - before.value(gone, outcome="gone") == 1
    assert after.value("d6_bridge_subscriptions", state="disabled") == 1
    assert after.value("d6_bridge_pending_deliveries") == 1  # kept for when it is enabled again


async def test_d6_responses_are_counted_by_endpoint_and_status(dispatcher: DeliveryParts) -> None:
    endpoint = "GET /v2/finplus/debtmanagement/learners"
    app = build_app(dispatcher)
    before = await scrape(app)
    metrics.observe_d6_response(endpoint, 200, 0.2)
    metrics.observe_d6_response(endpoint, 200, 0.3)
    metrics.observe_d6_response(endpoint, "timeout", 30.0)
    after = await scrape(app)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("d6_bridge_d6_requests_total", endpoint=endpoint, status="200") == 2
    assert moved("d6_bridge_d6_requests_total", endpoint=endpoint, status="timeout") == 1
    assert moved("d6_bridge_d6_request_duration_seconds_count", endpoint=endpoint) == 3
    assert moved("d6_bridge_d6_request_duration_seconds_sum", endpoint=endpoint) == pytest.approx(30.5)


async def test_metrics_render_when_redis_is_down() -> None:
    settings = fast_settings()
    down = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    try:
        store = SubscriptionStore(
            down, Keys(settings.redis_prefix), UrlGuard(allow_private=True), scripts=Scripts(down)
        )
        dispatcher = DeliveryParts(down, settings, store)
        app = build_app(dispatcher)
        failures = "d6_bridge_scrape_refresh_failures_total"
        before = await scrape(app)
        after = await scrape(app)
        assert after.value(failures) - before.value(failures) == 1
        assert after.sample_names() >= DOCUMENTED_SERIES
        await dispatcher.stop(grace=0.1)
    finally:
        await down.aclose()
