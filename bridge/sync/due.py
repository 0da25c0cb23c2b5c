"""Whether a feed is due for a poll: the one rule the poller's due check, the poll plan and the benchmarks
read (docs/operations.md#the-d6-request-budget).

Every replica has a job for every feed, so a feed is due once a whole interval, less a tolerance, has
passed since its last poll by any replica (the poll status in Redis). APScheduler's jitter only delays a
job, by at most the feed's jitter, so a tolerance of that much (plus 5% of the interval, at most a second)
keeps the replica that polled last on time while the others skip.

The fixed rule counts from the due time the last poll recorded (a feed that waited in the queue is not
pushed back an interval); while the poll plan binds, from its last start (the plan hands out turns, and a
feed polled less than its target interval ago by any replica is refused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.settings import Settings
    from bridge.sync.status import FeedStatus


def soonest(settings: Settings, resource: str) -> float:
    """The least time between two polls of a feed: its target interval less the tolerance."""
    interval = settings.feed_interval(resource)
    return interval - settings.feed_jitter(resource) - min(1.0, interval / 20)


def is_due(settings: Settings, resource: str, status: FeedStatus, now: float, *, planned: bool) -> bool:
    """Whether the feed is due at `now`: never polled, or `soonest` past its last poll (its due time, or
    with `planned`, its start)."""
    if planned:
        last = status.last_started if status.last_started is not None else status.last_due
    else:
        last = status.last_due if status.last_due is not None else status.last_started
    return last is None or now >= last + soonest(settings, resource)
