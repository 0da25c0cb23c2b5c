"""Schools: what the bridge knows of each (`GET /v1/schools`) and polling one now (`POST .../poll`).

Each watched resource of a school is a feed with its own schedule, status and counts (`feeds`); the
school-level fields sum them up (`last_successful_poll`: the oldest of its feeds' last successes).
A school's `state` (bridge/sync/school_state.py): `active` (polled), `inactive` (authorised, not
activated), `denied` (still in the client integrations list, but d6 refuses its data: retried at the
integrations interval; `denied_since`), `revoked` (no pair left in the list; `revoked_since`).
`snapshots_purged_at` is set once a school without authorisation for `BRIDGE_REVOKED_PURGE_DAYS` had its
record snapshots deleted. `lag_seconds` is how long the school has been overdue: the time since its last
due time plus one interval and the jitter (0 when on time). It is read from Redis, so it is the same
whichever replica answers. Each feed also shows its poll plan (docs/operations.md#the-d6-request-budget):
`planned_interval_seconds` (the interval its lag is measured against), `change_rate_per_hour` and
`last_changes`; the plan is derived in each replica from the same shared status, so it too is the same
whichever replica answers, give or take one re-plan.

Handlers receive `schools`: the parts that know the schools (the integrations watcher, the poll status,
the snapshot flags) and the scheduler that polls them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.status_codes import HTTP_202_ACCEPTED

from bridge.api.auth import admin_guard
from bridge.api.common import Cursor, Injected, Limit, PageMeta, int_cursor, keyset_page, page_meta, rfc3339
from bridge.api.contract import SECURITY, error_responses
from bridge.events.envelope import Timestamp
from bridge.settings import Settings
from bridge.sync.events import is_active
from bridge.sync.scheduler import PollScheduler
from bridge.sync.school_state import school_state
from bridge.sync.snapshot import SnapshotStore
from bridge.sync.status import PollStatusStore
from bridge.sync.watcher import IntegrationsWatcher


@dataclass(frozen=True, kw_only=True)
class Schools:
    """What `/v1/schools` reads and asks of the sync side."""

    settings: Settings
    watcher: IntegrationsWatcher
    status: PollStatusStore
    snapshots: SnapshotStore
    scheduler: PollScheduler


class IntegrationView(msgspec.Struct, kw_only=True):
    api_type_id: int | None
    activated: bool
    record: dict[str, Any]


class FeedView(msgspec.Struct, kw_only=True):
    """One watched resource of the school: its own schedule, status and counts."""

    resource: str
    interval_seconds: float
    last_poll_started: Timestamp | None
    last_successful_poll: Timestamp | None
    last_error: str | None
    last_error_at: Timestamp | None
    consecutive_failures: int
    records: int | None
    """Records in its last complete scan."""
    pages: int | None
    """Requests its last complete scan cost."""
    lag_seconds: float
    planned_interval_seconds: float
    """Seconds between its polls in the poll plan: `interval_seconds` unless the d6 budget binds
    (docs/operations.md#the-d6-request-budget)."""
    change_rate_per_hour: float | None
    """Its estimated changes an hour: the rate the poll plan uses (from its own scans, decayed, leaning on
    its school's and its resource's while it has few); None before a scan follows another."""
    last_changes: int | None
    """Changes (events) its last complete scan found."""


class SchoolView(msgspec.Struct, kw_only=True):
    school_id: int
    name: str | None
    state: str
    denied_since: Timestamp | None = None
    revoked_since: Timestamp | None = None
    snapshots_purged_at: Timestamp | None = None
    integrations: list[IntegrationView]
    last_poll_started: Timestamp | None
    last_successful_poll: Timestamp | None
    last_error: str | None
    last_error_at: Timestamp | None
    consecutive_failures: int
    lag_seconds: float
    learners: int | None
    debtors: int | None
    feeds: list[FeedView]


class SchoolPage(msgspec.Struct, kw_only=True):
    data: list[SchoolView]
    meta: PageMeta


class PollAccepted(msgspec.Struct, kw_only=True):
    school_id: int
    status: str


def per_hour(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 3600, 4)


def lag_seconds(last_started: float | None, interval: float, jitter: float, now: float) -> float:
    """How long a school has been overdue: 0 while its next poll is not yet due (jitter included)."""
    if last_started is None:
        return 0.0
    return round(max(0.0, now - (last_started + interval + jitter)), 3)


async def school_view(schools: Schools, school_id: int, active: set[int], now: float) -> SchoolView:
    pairs = await schools.watcher.integrations(school_id)
    status = await schools.status.get(school_id)
    flags = await schools.snapshots.flags(school_id)
    settings = schools.settings
    state = school_state(active=school_id in active, listed=bool(pairs), denied=flags.denied is not None)
    name = next((p.get("school_name") for p in pairs if isinstance(p.get("school_name"), str)), None)
    scheduler = schools.scheduler
    planned = {name: scheduler.planned_interval(school_id, name) for name in status.feeds}
    feeds = [
        FeedView(
            resource=feed.resource,
            interval_seconds=settings.feed_interval(feed.resource),
            last_poll_started=rfc3339(feed.last_started),
            last_successful_poll=rfc3339(feed.last_success),
            last_error=feed.last_error,
            last_error_at=rfc3339(feed.last_error_at),
            consecutive_failures=feed.consecutive_failures,
            records=feed.count,
            pages=feed.pages,
            lag_seconds=lag_seconds(
                (feed.last_due or feed.last_started) if state == "active" else None,
                planned[feed.resource],
                settings.feed_jitter(feed.resource),
                now,
            ),
            planned_interval_seconds=round(planned[feed.resource], 1),
            change_rate_per_hour=per_hour(scheduler.change_rate(school_id, feed)),
            last_changes=feed.changes,
        )
        for feed in status.feeds.values()
    ]
    return SchoolView(
        school_id=school_id,
        name=name,
        state=state,
        denied_since=rfc3339(flags.denied),
        revoked_since=rfc3339(flags.revoked) if state == "revoked" else None,
        snapshots_purged_at=rfc3339(flags.purged),
        integrations=[
            IntegrationView(api_type_id=p.get("api_type_id"), activated=is_active(p), record=p) for p in pairs
        ],
        last_poll_started=rfc3339(status.last_started),
        last_successful_poll=rfc3339(status.last_success),
        last_error=status.last_error,
        last_error_at=rfc3339(status.last_error_at),
        consecutive_failures=status.consecutive_failures,
        lag_seconds=max((f.lag_seconds for f in feeds), default=0.0),
        learners=status.learners,
        debtors=status.debtors,
        feeds=feeds,
    )


class SchoolsController(Controller):
    path = "/v1/schools"
    tags = ["schools"]
    guards = [admin_guard]
    security = SECURITY

    @get(
        "/",
        summary="Every school the bridge knows, by id, with its integration and polling state",
        responses=error_responses(),
    )
    async def list_schools(
        self, schools: Injected[Schools], limit: Limit = 50, cursor: Cursor = None
    ) -> SchoolPage:
        active = await schools.watcher.active_schools()
        known = sorted(set(await schools.snapshots.known_schools()) | active)
        page, next_cursor = keyset_page(known, lambda school_id: school_id, int_cursor(cursor), limit)
        now = time.time()
        views = await asyncio.gather(*(school_view(schools, s, active, now) for s in page))
        return SchoolPage(data=list(views), meta=page_meta(limit, next_cursor))

    @post(
        "/{school_id:int}/poll",
        summary="Poll this school now",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(403, 404),
    )
    async def poll_school(
        self, schools: Injected[Schools], school_id: FromPath[int]
    ) -> Response[PollAccepted]:
        if school_id not in await schools.watcher.active_schools():
            raise NotFoundException(
                detail=f"school {school_id} is not an active school (see GET /v1/schools for the known ones)"
            )
        schools.scheduler.request_poll(school_id)
        return Response(PollAccepted(school_id=school_id, status="queued"), status_code=HTTP_202_ACCEPTED)
