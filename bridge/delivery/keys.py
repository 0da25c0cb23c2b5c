"""Redis key names of the delivery side (to be merged into `bridge.store.keys`).

Everything one subscription owns carries `{sub:<id>}` as a hash tag, so it lives on one Redis Cluster
slot and every Lua script of the dispatcher touches a single slot. Only the subscription index and its
change counter are global.
"""

from __future__ import annotations

import msgspec


class DeliveryKeys(msgspec.Struct, frozen=True):
    """Key names under one prefix (`BRIDGE_REDIS_PREFIX`)."""

    prefix: str = "d6b"

    def subscription_index(self) -> str:
        """Set of every subscription id."""
        return f"{self.prefix}:{{subs}}:index"

    def subscriptions_version(self) -> str:
        """Counter bumped on every subscription change, so processes know when to reload their cache."""
        return f"{self.prefix}:{{subs}}:version"

    def _sub(self, subscription_id: str, suffix: str) -> str:
        return f"{self.prefix}:{{sub:{subscription_id}}}:{suffix}"

    def subscription(self, subscription_id: str) -> str:
        """Hash: the subscription's fields, each JSON-encoded."""
        return self._sub(subscription_id, "record")

    def deliveries(self, subscription_id: str) -> str:
        """Hash: delivery id -> msgpack `Delivery` (pending and dead-lettered ones, body included)."""
        return self._sub(subscription_id, "deliveries")

    def due(self, subscription_id: str) -> str:
        """Sorted set: delivery id -> when it may be attempted (or, while leased, when the lease ends)."""
        return self._sub(subscription_id, "due")

    def leases(self, subscription_id: str) -> str:
        """Hash: delivery id -> token of the worker that holds it."""
        return self._sub(subscription_id, "leases")

    def lane(self, subscription_id: str, school_id: int) -> str:
        """List: the ordered lane of one school; only its head is ever in `due`."""
        return self._sub(subscription_id, f"lane:{school_id}")

    def lanes(self, subscription_id: str) -> str:
        """Set: school ids that have (or had) a lane, so a deletion finds every lane key."""
        return self._sub(subscription_id, "lanes")

    def fanned(self, subscription_id: str) -> str:
        """Sorted set: event ids queued here (fan-out idempotency, retention), by event time."""
        return self._sub(subscription_id, "fanned")

    def traces(self, subscription_id: str) -> str:
        """Hash: event id -> msgpack `DeliveryTrace` of its latest delivery here (`GET /v1/events/{id}`)."""
        return self._sub(subscription_id, "traces")

    def dead(self, subscription_id: str) -> str:
        """Sorted set: dead-lettered delivery ids by the time they died."""
        return self._sub(subscription_id, "dead")

    def attempts(self, subscription_id: str) -> str:
        """Sorted set: the attempt log (msgpack `Attempt`) by attempt time."""
        return self._sub(subscription_id, "attempts")

    def all_of(self, subscription_id: str) -> list[str]:
        """Every fixed key of a subscription (lanes come from `lanes`)."""
        return [
            self.subscription(subscription_id),
            self.deliveries(subscription_id),
            self.due(subscription_id),
            self.leases(subscription_id),
            self.lanes(subscription_id),
            self.fanned(subscription_id),
            self.traces(subscription_id),
            self.dead(subscription_id),
            self.attempts(subscription_id),
        ]
