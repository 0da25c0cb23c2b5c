"""Subscriptions in Redis: one hash per subscription (one JSON value per field) plus an index set.

Fields are written one by one (HSET of only what changed), so an admin's PATCH and the worker's
bookkeeping (`failing_since`, disabling) never overwrite each other. Every change bumps a counter
that workers watch to reload their cached copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis

from bridge.delivery.ids import new_subscription_id
from bridge.delivery.models import (
    DELIVERY_KINDS,
    INITIALS,
    SECRET_OVERLAP_SECONDS,
    DeliveryKind,
    ErasureEntry,
    Initial,
    Subscription,
    UnknownSubscription,
    snapshot_types,
    unknown_event_types,
)
from bridge.delivery.projection import PAYLOADS, RESOURCES, Payload
from bridge.delivery.signing import new_secret
from bridge.delivery.urls import UrlGuard, UrlRefused
from bridge.errors import InvalidRequest
from bridge.store.codec import as_text
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts

MAX_DESCRIPTION = 1000
MAX_FILTER_ITEMS = 1000
MAX_FIELD_NAMES = 500
MAX_FIELD_NAME = 200
SHAPING = frozenset({"event_types", "school_ids", "fields", "redact", "payload"})
"""The options that choose and cut a subscription's bodies: a change to one moves its `reshaped_at`."""
_json = msgspec.json.Encoder()
_journal = msgspec.json.Decoder(ErasureEntry)


class InvalidSubscription(InvalidRequest):
    """A field of a subscription (its URL, filters, shape, description) has a value we can't use (400).

    Only for a subscription's own fields: any other bad request (a cursor, an erasure's ids) is an
    `InvalidRequest`."""


def validate_event_types(event_types: list[str] | None) -> list[str] | None:
    if event_types is None:
        return None
    if not event_types:
        raise InvalidSubscription("event_types", "must not be empty; leave it out (or null) for every type")
    if len(event_types) > MAX_FILTER_ITEMS:
        raise InvalidSubscription("event_types", f"at most {MAX_FILTER_ITEMS} entries")
    unknown = unknown_event_types(event_types)
    if unknown:
        raise InvalidSubscription(
            "event_types",
            f"unknown event types: {', '.join(unknown)} (use catalogue types like learner.updated, "
            "or wildcards like debtor.*)",
            unknown=unknown,
        )
    return sorted(set(event_types))


def validate_school_ids(school_ids: list[int] | None) -> list[int] | None:
    if school_ids is None:
        return None
    if not school_ids:
        raise InvalidSubscription("school_ids", "must not be empty; leave it out (or null) for every school")
    if len(school_ids) > MAX_FILTER_ITEMS * 10:
        raise InvalidSubscription("school_ids", f"at most {MAX_FILTER_ITEMS * 10} entries")
    bad = [s for s in school_ids if s <= 0]
    if bad:
        raise InvalidSubscription(
            "school_ids", f"school ids must be positive; got {bad[:10]}", invalid=bad[:10]
        )
    return sorted(set(school_ids))


def validate_fields(fields: Any) -> dict[str, list[str]] | None:
    """`{"debtor": ["debtor_code", ...], ...}`: known event resources, each a list of field names."""
    if fields is None:
        return None
    if not isinstance(fields, dict):
        raise InvalidSubscription("fields", "must be an object: event resource -> list of field names")
    if not fields:
        raise InvalidSubscription("fields", "must name at least one resource; leave it out (or null) for all")
    unknown = sorted(str(name) for name in fields if name not in RESOURCES)
    if unknown:
        raise InvalidSubscription(
            "fields",
            f"unknown resource {unknown[0]!r}: one of {', '.join(RESOURCES)} (the event `resource`)",
            unknown=unknown,
        )
    return {name: _field_names(f"fields.{name}", names) for name, names in sorted(fields.items())}


def validate_redact(redact: Any) -> list[str] | None:
    if redact is None:
        return None
    names = _field_names("redact", redact)
    return names or None


def validate_payload(payload: Any) -> Payload:
    if payload not in PAYLOADS:
        raise InvalidSubscription(
            "payload", f"unknown payload mode {payload!r}: one of {', '.join(PAYLOADS)}"
        )
    return "thin" if payload == "thin" else "full"


def _field_names(field: str, names: Any) -> list[str]:
    if not isinstance(names, list):
        raise InvalidSubscription(field, "must be a list of field names")
    if len(names) > MAX_FIELD_NAMES:
        raise InvalidSubscription(field, f"at most {MAX_FIELD_NAMES} field names")
    bad = [n for n in names if not isinstance(n, str) or not n.strip() or len(n) > MAX_FIELD_NAME]
    if bad:
        raise InvalidSubscription(
            field,
            f"field names are non-empty strings of at most {MAX_FIELD_NAME} characters; got {bad[:3]!r}",
        )
    return sorted(set(names))


def validate_initial(initial: Any, event_types: list[str] | None) -> Initial:
    """`snapshot` needs a `*.snapshot` type among `event_types` (docs/api.md#automatic-snapshots)."""
    if initial not in INITIALS:
        raise InvalidSubscription(
            "initial", f"unknown initial mode {initial!r}: one of {', '.join(INITIALS)}"
        )
    if initial == "none":
        return "none"
    if not snapshot_types(event_types):
        raise InvalidSubscription(
            "initial",
            "snapshot needs event_types that take a snapshot type (debtor.snapshot, or a family such as "
            "learner.*, or every type); these take none, so there would be nothing to send",
        )
    return "snapshot"


def validate_delivery(delivery: Any, url: str | None) -> DeliveryKind:
    """`webhook` needs a `url`; `pull` takes none (docs/pull.md)."""
    if delivery not in DELIVERY_KINDS:
        raise InvalidSubscription(
            "delivery", f"unknown delivery kind {delivery!r}: one of {', '.join(DELIVERY_KINDS)}"
        )
    if delivery == "pull" and url is not None:
        raise InvalidSubscription(
            "url", "a pull subscription has no url: its events are read from its feed; leave url out"
        )
    if delivery == "webhook" and url is None:
        raise InvalidSubscription(
            "url", 'required for a webhook subscription (or create one with "delivery": "pull")'
        )
    return "pull" if delivery == "pull" else "webhook"


def validate_description(description: str | None) -> str | None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidSubscription("description", f"at most {MAX_DESCRIPTION} characters")
    return description


def erasing_record(school_id: int, prefix: str, record_id: str) -> str:
    """How `Current.erasing` names a record being erased (beside its events' ids): a resync's snapshot
    of it is in no event log, and is not sent either."""
    return f"record:{school_id}:{prefix}:{record_id}"


class Current(msgspec.Struct, frozen=True, kw_only=True):
    """What `SubscriptionStore.current` loaded: every subscription, and the ids of the events an erasure is
    removing with the records it erases (`erasing_record`; the erasure journal, docs/personal-data.md),
    reloaded together whenever the subscriptions version moves. Those events, and those records' snapshot
    deliveries, are neither queued nor sent."""

    subscriptions: list[Subscription]
    erasing: frozenset[str]


class SubscriptionStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        guard: UrlGuard,
        *,
        scripts: Scripts,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.guard = guard
        self.scripts = scripts
        """The one registration `Services.build` makes (bridge/app.py), shared with every other part."""
        self._clock = clock
        self._cache: Current | None = None
        self._cache_version: bytes | None = None
        self._suspects: set[str] = set()
        """Index entries without a record at the last `sweep` (dropped if the next one finds them so too)."""

    async def _check_url(self, url: str) -> str:
        try:
            return await self.guard.check(url)
        except UrlRefused as error:
            raise InvalidSubscription("url", str(error)) from None

    async def create(
        self,
        *,
        url: str | None,
        event_types: list[str] | None = None,
        school_ids: list[int] | None = None,
        description: str | None = None,
        ordered: bool = True,
        fields: dict[str, list[str]] | None = None,
        redact: list[str] | None = None,
        payload: str = "full",
        initial: str = "none",
        delivery: str = "webhook",
    ) -> Subscription:
        now = self._clock()
        kind = validate_delivery(delivery, url)
        checked = "" if url is None else await self._check_url(url)
        event_types = validate_event_types(event_types)
        subscription = Subscription(
            id=new_subscription_id(),
            url=checked,
            secret=new_secret(),
            event_types=event_types,
            school_ids=validate_school_ids(school_ids),
            description=validate_description(description),
            ordered=ordered or kind == "pull",  # a feed keeps each school's order by itself
            created_at=now,
            updated_at=now,
            reshaped_at=now,
            fields=validate_fields(fields),
            redact=validate_redact(redact),
            payload=validate_payload(payload),
            initial=validate_initial(initial, event_types),
            delivery=kind,
        )
        fields = msgspec.structs.asdict(subscription)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.subscription(subscription.id), mapping=_encode_fields(fields))
            pipe.sadd(self.keys.subscription_index(), subscription.id)
            await pipe.execute()
        # Only after the write: on a Redis Cluster a pipeline's commands on different nodes may land in
        # any order, and a cache reloaded at the new version must already see the subscription.
        await self.redis.incr(self.keys.subscriptions_version())
        return subscription

    async def find(self, subscription_id: str) -> Subscription | None:
        raw = await self.redis.hgetall(self.keys.subscription(subscription_id))
        return _decode(raw) if raw else None

    async def get(self, subscription_id: str) -> Subscription:
        subscription = await self.find(subscription_id)
        if subscription is None:
            raise UnknownSubscription(subscription_id)
        return subscription

    async def list_all(self) -> list[Subscription]:
        ids = sorted(as_text(m) for m in await self.redis.smembers(self.keys.subscription_index()))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for subscription_id in ids:
                pipe.hgetall(self.keys.subscription(subscription_id))
            rows = await pipe.execute()
        return [_decode(raw) for raw in rows if raw]

    async def current(self) -> Current:
        """Every subscription and the events being erased, from a per-process cache reloaded whenever
        anything changed (a subscription or the erasure journal: both bump the version)."""
        raw = await self.redis.get(self.keys.subscriptions_version())
        version = None if raw is None else as_text(raw).encode()
        if self._cache is None or version != self._cache_version:
            subscriptions = await self.list_all()
            entries = await self.erasures()
            erasing = frozenset(
                [e for entry in entries for e in entry.event_ids]
                + [erasing_record(entry.school_id, entry.resource, entry.record_id) for entry in entries]
            )
            self._cache = Current(subscriptions=subscriptions, erasing=erasing)
            self._cache_version = version
        return self._cache

    async def erasures(self) -> list[ErasureEntry]:
        """The erasure journal: every erasure under way, or finished a short while ago."""
        raw = await self.redis.hvals(self.keys.erasures())
        return [_journal.decode(value) for value in raw]

    async def journal(self, key: str, entry: ErasureEntry | None) -> None:
        """Write (or, with None, remove) one journal entry and make every process reload it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if entry is None:
                pipe.hdel(self.keys.erasures(), key)
            else:
                pipe.hset(self.keys.erasures(), key, _json.encode(entry))
            pipe.incr(self.keys.subscriptions_version())
            await pipe.execute()

    async def _set(self, subscription_id: str, fields: Mapping[str, Any]) -> None:
        encoded = _encode_fields(fields)
        args: list[str | bytes] = []
        for name, value in encoded.items():
            args.extend((name, value))
        done = await self.scripts.subscription_update(
            keys=[self.keys.subscription(subscription_id)], args=args
        )
        if not done:
            raise UnknownSubscription(subscription_id)
        await self.redis.incr(self.keys.subscriptions_version())

    async def update(self, subscription_id: str, changes: Mapping[str, Any]) -> Subscription:
        """Apply a PATCH: any of url, event_types, school_ids, description, fields, redact, payload and
        enabled."""
        current = await self.get(subscription_id)
        fields: dict[str, Any] = {}
        if "url" in changes:
            if current.pulled:
                raise InvalidSubscription(
                    "url", "a pull subscription has no url (its delivery is set at creation)"
                )
            fields["url"] = await self._check_url(changes["url"])
        if "event_types" in changes:
            fields["event_types"] = validate_event_types(changes["event_types"])
        if "school_ids" in changes:
            fields["school_ids"] = validate_school_ids(changes["school_ids"])
        if "description" in changes:
            fields["description"] = validate_description(changes["description"])
        if "fields" in changes:
            fields["fields"] = validate_fields(changes["fields"])
        if "redact" in changes:
            fields["redact"] = validate_redact(changes["redact"])
        if "payload" in changes:
            fields["payload"] = validate_payload(changes["payload"])
        resume = False
        if "enabled" in changes:
            enabled = bool(changes["enabled"])
            fields["enabled"] = enabled
            if enabled and not current.enabled:
                fields["disabled_reason"] = None
                fields["failing_since"] = None
                resume = True
            elif not enabled and current.enabled:
                fields["disabled_reason"] = "disabled by an administrator"
        fields["updated_at"] = self._clock()
        if SHAPING.intersection(fields):
            fields["reshaped_at"] = fields["updated_at"]  # its queued deliveries are cut again when sent
        await self._set(subscription_id, fields)
        if resume:
            await self.scripts.subscription_resume(
                keys=[self.keys.due(subscription_id), self.keys.leases(subscription_id)],
                args=[repr(self._clock())],
            )
        return await self.get(subscription_id)

    async def disable(self, subscription_id: str, reason: str) -> None:
        """Stop deliveries (the queue is kept): after 410 Gone or continuous failure."""
        try:
            await self._set(
                subscription_id, {"enabled": False, "disabled_reason": reason, "updated_at": self._clock()}
            )
        except UnknownSubscription:
            return

    async def rotate_secret(self, subscription_id: str) -> Subscription:
        """A new secret; the one it replaces keeps signing alongside for 24 hours."""
        current = await self.get(subscription_id)
        now = self._clock()
        await self._set(
            subscription_id,
            {
                "secret": new_secret(),
                "previous_secret": current.secret,
                "previous_secret_expires_at": now + SECRET_OVERLAP_SECONDS,
                "updated_at": now,
            },
        )
        return await self.get(subscription_id)

    async def delete(self, subscription_id: str) -> None:
        """Remove the subscription with its queue, dead letters and attempt log.

        The record goes first: from then on the delivery scripts queue nothing for it (DELIVERY_ENQUEUE
        checks it, in the same slot), so a fan-out on another replica that read the subscription list just
        before cannot add keys after these are gone. A crash part-way leaves keys without a record, which
        `sweep` removes.
        """
        await self.get(subscription_id)
        await self.redis.delete(self.keys.subscription(subscription_id))
        await self._remove_keys(subscription_id)
        await self.redis.incr(self.keys.subscriptions_version())  # after the write, as in `create`

    async def _remove_keys(self, subscription_id: str) -> None:
        """Every key of a subscription whose record is gone, then its index entry (last: until then a
        sweep still finds it)."""
        schools = await self.redis.smembers(self.keys.lanes(subscription_id))
        keys = self.keys.all_of(subscription_id)
        keys += [self.keys.lane(subscription_id, int(s)) for s in schools]
        await self.redis.delete(*keys)
        await self.redis.srem(self.keys.subscription_index(), subscription_id)

    async def sweep(self, *, batch: int = 1000) -> list[str]:
        """Remove the keys of subscriptions whose record is gone; returns their ids.

        What it finds: a delete that died part-way, and queues that a fan-out wrote into a subscription
        deleted under it before DELIVERY_ENQUEUE checked the record. It SCANs for every `{sub:*}` key (on
        Redis Cluster redis-py scans each primary), which walks the whole keyspace: the worker runs it
        at start and then hourly, not on every maintenance pass. An index entry with no record and no key
        is dropped only when the previous sweep saw it so too: on Redis Cluster a subscription being
        created may be in the index a moment before its record is written.
        """
        found: set[str] = set()
        async for key in self.redis.scan_iter(match=self.keys.subscription_key_pattern(), count=batch):
            subscription_id = self.keys.subscription_of(as_text(key))
            if subscription_id is not None:
                found.add(subscription_id)
        indexed = {as_text(m) for m in await self.redis.smembers(self.keys.subscription_index())}
        candidates = sorted(found | indexed)
        if not candidates:
            self._suspects = set()
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for subscription_id in candidates:
                pipe.exists(self.keys.subscription(subscription_id))
            exists = await pipe.execute()
        missing = {sid for sid, there in zip(candidates, exists, strict=True) if not there}
        index_only = missing - found
        swept = sorted((missing & found) | (index_only & self._suspects))
        self._suspects = index_only - self._suspects
        for subscription_id in swept:
            await self._remove_keys(subscription_id)
        return swept

    async def counts(self, subscription_id: str) -> tuple[int, int]:
        """(pending deliveries, dead letters)."""
        return (await self.counts_of([subscription_id]))[0]

    async def counts_of(self, subscription_ids: Sequence[str]) -> list[tuple[int, int]]:
        """(pending deliveries, dead letters) of each subscription, in one round trip (HLEN, ZCARD each)."""
        if not subscription_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for subscription_id in subscription_ids:
                pipe.hlen(self.keys.deliveries(subscription_id))
                pipe.zcard(self.keys.dead(subscription_id))
            replies = await pipe.execute()
        return [
            (int(stored) - int(dead), int(dead))
            for stored, dead in zip(replies[::2], replies[1::2], strict=True)
        ]


def _encode_fields(fields: Mapping[str, Any]) -> dict[Any, Any]:
    return {name: _json.encode(value) for name, value in fields.items()}


def _decode(raw: Mapping[bytes | str, bytes | str]) -> Subscription:
    fields = {as_text(k): msgspec.json.decode(v) for k, v in raw.items()}
    return msgspec.convert(fields, Subscription)
