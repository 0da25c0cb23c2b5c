"""A command's outcome told as an event in its school's sequence: `command.succeeded` or `command.failed`
(docs/commands.md, docs/events.md)."""

from __future__ import annotations

import structlog
from redis.asyncio import Redis

from bridge import metrics
from bridge.catalogue import COMMAND, COMMAND_FAILED, COMMAND_SUCCEEDED
from bridge.commands.models import Command
from bridge.events.envelope import new_event, split_for_sequence
from bridge.events.outbox import Outbox
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts

log = structlog.get_logger(__name__)


class Teller:
    """Appends a finished command's event to its school's log and publishes it."""

    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts, outbox: Outbox) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        self.outbox = outbox

    async def tell(self, command: Command) -> None:
        event_type = COMMAND_SUCCEEDED if command.state == "succeeded" else COMMAND_FAILED
        answer = command.answer
        event = new_event(
            event_type,
            school_id=command.school_id,
            resource=COMMAND,
            resource_id=command.id,
            data={
                "command_id": command.id,
                "kind": command.kind,
                "idempotency_key": command.idempotency_key,
                "target_id": command.target,
                "note_id": command.note_id,
                "attempts": command.attempts,
                "d6_status": answer.status if answer else None,
                "d6_message": answer.message if answer else None,
                "remark": command.remark,
            },
        )
        head, tail = split_for_sequence(event)
        school = command.school_id
        await self.scripts.append_events(
            keys=[
                self.keys.school_meta(school),
                self.keys.school_events(school),
                self.keys.school_bodies(school),
            ],
            args=[event.id, event.type, head, tail],
        )
        await self.redis.sadd(self.keys.known_schools(), str(school))
        metrics.EVENTS_EMITTED.labels(type=event_type).inc()
        await self.outbox.publish(school)
