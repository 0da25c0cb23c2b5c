"""Every Prometheus series of the bridge (docs/operations.md#metrics), on one registry of its own.

The registry and its metric objects are the one deliberate exception to "nothing global but
constants": Prometheus metrics are process-wide by nature, and a module-level registry (not the
client library's default one) keeps them apart from anything else in the process and lets tests
read them. Each replica exposes its own counters; sum them in Prometheus. The Redis-backed gauges
(pending deliveries, dead letters, subscriptions) describe the shared store, so every replica shows
the same values: take `max` of them, not `sum`.

Every name starts with `d6_bridge_`, carries its unit, and every label takes values from a small,
fixed set (endpoint templates, status codes, catalogue event types, resource names, outcomes). The text
passes `promtool check metrics`: no name carries a metric type, and no `_created` series is exposed
(`disable_created_metrics` below: those series double the page and Prometheus does not use them).

Who moves what:
- the d6 client calls `observe_d6_response` after every attempt (its `on_response` hook);
- the poller and the integrations watcher move the poll series (`POLLS`, `POLL_DURATION`,
  `RECORDS_SCANNED`, `EVENTS_EMITTED`, `MASS_REMOVALS_HELD`, `ACTIVATIONS`, `D6_BAD_ANSWERS`,
  `DETECTION_LAG`) and set `SCHOOLS` and `POLL_LAG`; the poll scheduler sets `PLANNED_INTERVAL`;
- the dispatcher moves the delivery series; `bridge.delivery.stats.refresh_delivery_gauges` sets the
  gauges that need Redis, and `GET /metrics` calls it before rendering.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from bridge.sync.school_state import SCHOOL_STATES

# Process-wide in the client library (it has no per-registry switch); the bridge exposes no other registry.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY: Final = CollectorRegistry(auto_describe=True)
PREFIX: Final = "d6_bridge"

# Buckets, in seconds, for what each histogram measures.
D6_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
POLL_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
ATTEMPT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
# From "right away" to the end of the default retry schedule (about 26 hours).
LATENCY_BUCKETS: Final = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    43200.0,
    86400.0,
    172800.0,
)

# -- d6 ---------------------------------------------------------------------------------------------

D6_REQUESTS: Final = Counter(
    f"{PREFIX}_d6_requests",
    "Requests to d6, every attempt (retries included). endpoint: the logical endpoint, e.g. "
    "'GET /v2/finplus/debtmanagement/learners'; status: the HTTP code, or timeout, connect_error or "
    "transport_error when no answer came.",
    ["endpoint", "status"],
    registry=REGISTRY,
)
D6_REQUEST_DURATION: Final = Histogram(
    f"{PREFIX}_d6_request_duration_seconds",
    "Duration of one request to d6 (one attempt), whatever its outcome.",
    ["endpoint"],
    buckets=D6_BUCKETS,
    registry=REGISTRY,
)
D6_BAD_ANSWERS: Final = Counter(
    f"{PREFIX}_d6_bad_answers",
    "Answers from d6 that could not be used (not JSON, or not the documented shape); the scan that "
    "asked failed and changed nothing.",
    ["endpoint"],
    registry=REGISTRY,
)


def observe_d6_response(endpoint: str, status: int | str, seconds: float) -> None:
    """The d6 client's `on_response` hook (`bridge.d6.http.ResponseHook`): count and time one attempt."""
    D6_REQUESTS.labels(endpoint=endpoint, status=str(status)).inc()
    D6_REQUEST_DURATION.labels(endpoint=endpoint).observe(seconds)


# -- polling ----------------------------------------------------------------------------------------

POLLS: Final = Counter(
    f"{PREFIX}_polls",
    "Polls by outcome. resource: 'school' (one feed of a school: one watched resource) or 'integration' "
    "(the client integrations list). outcome: ok (scanned and diffed), failed (d6 error or bad answer: "
    "nothing diffed), skipped (not due yet), busy (another replica polls the school), denied (d6 refuses "
    "the school's data), lost_lease (another replica took over mid-poll), held (an integrations list "
    "held back until the next poll agrees), duplicates (a scan with an id twice: not trusted until the "
    "next scan agrees).",
    ["resource", "outcome"],
    registry=REGISTRY,
)
POLL_DURATION: Final = Histogram(
    f"{PREFIX}_poll_duration_seconds",
    "Duration of one complete scan (every page) of one resource: a watched resource's event prefix "
    "(debtor, learner, balance, promise, note, transaction) or integration.",
    ["resource"],
    buckets=POLL_BUCKETS,
    registry=REGISTRY,
)
RECORDS_SCANNED: Final = Counter(
    f"{PREFIX}_records_scanned",
    "Records read from d6 in complete scans, by resource (a watched resource's event prefix, or "
    "integration).",
    ["resource"],
    registry=REGISTRY,
)
EVENTS_EMITTED: Final = Counter(
    f"{PREFIX}_events_emitted",
    "Events appended to the event log, by catalogue type (e.g. learner.updated).",
    ["type"],
    registry=REGISTRY,
)
MASS_REMOVALS_HELD: Final = Counter(
    f"{PREFIX}_mass_removals_held",
    "Scans whose removals were held back (more than half of a resource of at least 20 records "
    "vanished) until the next complete scan agrees.",
    ["resource"],
    registry=REGISTRY,
)
INTEGRATIONS_HELD: Final = Counter(
    f"{PREFIX}_integrations_held",
    "Integrations lists that changed nothing until the next poll agrees: empty while pairs are known, "
    "or without more than half of at least 20 known (school, API type) pairs.",
    registry=REGISTRY,
)
STORE_RESETS: Final = Counter(
    f"{PREFIX}_store_resets",
    "Times this process found that Redis had lost the bridge's data (its store marker gone or replaced); "
    "every school then took a silent new baseline and its sequence started again at 1.",
    registry=REGISTRY,
)
ERASURES: Final = Counter(
    f"{PREFIX}_erasures",
    "Erasure requests carried out (POST /v1/erasure, docs/personal-data.md), by the event resource of "
    "the record (debtor, learner, balance, promise, note, transaction); a repeated request counts again.",
    ["resource"],
    registry=REGISTRY,
)
SNAPSHOTS_PURGED: Final = Counter(
    f"{PREFIX}_snapshots_purged",
    "Schools whose record snapshots were deleted after BRIDGE_REVOKED_PURGE_DAYS without authorisation.",
    registry=REGISTRY,
)
ACTIVATIONS: Final = Counter(
    f"{PREFIX}_activations",
    "Automatic activations of newly authorised integrations, by outcome (ok, failed).",
    ["outcome"],
    registry=REGISTRY,
)
SCHOOLS: Final = Gauge(
    f"{PREFIX}_schools",
    "Schools the bridge knows, by state: active (polled), failing (active, last poll failed), "
    "inactive (authorised, not activated), denied (listed, but d6 refuses its data), revoked (not listed).",
    ["state"],
    registry=REGISTRY,
)
POLL_LAG: Final = Gauge(
    f"{PREFIX}_poll_lag_seconds",
    "The longest time any school has been waiting beyond its due poll time, in this process; 0 "
    "when every school is polled on schedule. Growth means the d6 budget cannot cover the schools.",
    registry=REGISTRY,
)
PLANNED_INTERVAL: Final = Gauge(
    f"{PREFIX}_planned_poll_interval_seconds",
    "The planned seconds between polls of a resource's feeds in this process' poll plan "
    "(docs/operations.md), over its feeds: stat min, median or max. The target interval while the d6 "
    "budget covers every feed; under BRIDGE_POLL_PLANNING=adaptive, once it does not, the square-root "
    "plan. Set at each re-plan.",
    ["resource", "stat"],
    registry=REGISTRY,
)
DETECTION_LAG: Final = Histogram(
    f"{PREFIX}_detection_lag_seconds",
    "Estimated detection lag of each change a scan found, by resource: half the time since the feed's "
    "previous complete scan (a change falls anywhere in between, on average half way).",
    ["resource"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)


def observe_detection_lag(resource: str, since_previous_scan: float, changes: int) -> None:
    """One observation per change a scan found (`resource` is the event prefix)."""
    lag = DETECTION_LAG.labels(resource=resource)
    for _ in range(changes):
        lag.observe(since_previous_scan / 2)


# -- delivery ---------------------------------------------------------------------------------------

DELIVERY_OUTCOMES: Final = ("ok", "retry", "dead", "gone", "lease_lost", "erased", "expired")
DELIVERIES: Final = Counter(
    f"{PREFIX}_deliveries",
    "Delivery attempts from the queue, by outcome: ok (2xx), retry (failed, another attempt is "
    "scheduled), dead (failed, retries exhausted: now a dead letter), gone (410: the subscription "
    "was disabled, the delivery waits), lease_lost (the attempt outlived its lease; another worker "
    "owns the delivery now), erased, expired and skipped (claimed but dropped unsent: its event is being "
    "erased, is older than the retention, or the subscription, changed since, no longer wants it). Test "
    "sends are not counted.",
    ["outcome"],
    registry=REGISTRY,
)
DELIVERY_ATTEMPT_DURATION: Final = Histogram(
    f"{PREFIX}_delivery_attempt_duration_seconds",
    "Duration of one delivery attempt (address check, POST, reading up to 4 KB of the answer).",
    buckets=ATTEMPT_BUCKETS,
    registry=REGISTRY,
)
DELIVERY_LATENCY: Final = Histogram(
    f"{PREFIX}_delivery_latency_seconds",
    "From the event's detection (its timestamp) to its successful delivery, retries included. "
    "Replays, redeliveries and retried dead letters are left out: their events are old on purpose.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
PENDING_DELIVERIES: Final = Gauge(
    f"{PREFIX}_pending_deliveries",
    "Deliveries queued and not yet delivered or dead-lettered, over every subscription (shared store).",
    registry=REGISTRY,
)
DEAD_LETTERS: Final = Gauge(
    f"{PREFIX}_dead_letters",
    "Dead letters kept (listable and retryable), over every subscription (shared store).",
    registry=REGISTRY,
)
SUBSCRIPTION_STATES: Final = ("enabled", "disabled")
SUBSCRIPTIONS: Final = Gauge(
    f"{PREFIX}_subscriptions",
    "Subscriptions by state: enabled, disabled (by 410, continuous failure or by hand).",
    ["state"],
    registry=REGISTRY,
)
DELIVERIES_IN_FLIGHT: Final = Gauge(
    f"{PREFIX}_deliveries_in_flight",
    "Delivery attempts running in this process now (at most BRIDGE_DELIVERY_CONCURRENCY).",
    registry=REGISTRY,
)
# -- write-back ---------------------------------------------------------------------------------------

COMMAND_KINDS: Final = ("create_note", "update_note", "delete_note", "delete_promise")
COMMAND_OUTCOMES: Final = ("succeeded", "failed")
COMMANDS: Final = Counter(
    f"{PREFIX}_commands",
    "Write-back commands finished, by kind (create_note, update_note, delete_note, delete_promise) and "
    "outcome (succeeded, failed). Retried attempts are not counted; their log lines are.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
COMMANDS_WAITING: Final = Gauge(
    f"{PREFIX}_commands_waiting",
    "Write-back commands not finished yet (queued, waiting for a retry or being sent), over every school "
    "(shared store).",
    registry=REGISTRY,
)
SCRAPE_REFRESH_FAILURES: Final = Counter(
    f"{PREFIX}_scrape_refresh_failures",
    "Scrapes whose store-backed values (pending deliveries, dead letters, subscriptions, schools) could "
    "not be refreshed (Redis unreachable or slow); those series then show their last known values.",
    registry=REGISTRY,
)

# Fixed label values exist from the start, at 0, so rates and alerts work before the first event.
for _outcome in DELIVERY_OUTCOMES:
    DELIVERIES.labels(outcome=_outcome)
for _state in SUBSCRIPTION_STATES:
    SUBSCRIPTIONS.labels(state=_state)
for _kind in COMMAND_KINDS:
    for _done in COMMAND_OUTCOMES:
        COMMANDS.labels(kind=_kind, outcome=_done)
for _state in SCHOOL_STATES:
    SCHOOLS.labels(state=_state)
