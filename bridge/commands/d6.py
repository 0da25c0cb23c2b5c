"""The runner's d6: each command sent through the d6 client's write calls (bridge/d6/writes.py), its
outcome turned into a `Sent`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.commands.models import Command
from bridge.commands.runner import Sent
from bridge.d6.client import D6Client
from bridge.d6.writes import D6WriteError, WriteDenied, WriteRefused, WriteRetryable, WriteUnknown

OUTCOMES: dict[type[D6WriteError], Any] = {
    WriteRefused: "refused",
    WriteDenied: "denied",
    WriteRetryable: "retry",
    WriteUnknown: "unknown",
}


class D6Writer:
    def __init__(self, d6: D6Client) -> None:
        self.d6 = d6

    async def send(self, command: Command) -> Sent:
        school, target = command.school_id, int(command.target) if command.target else 0
        try:
            if command.kind == "create_note":
                note_id = await self.d6.create_note(school, command.body)
                return Sent(outcome="ok", status=201, note_id=note_id)
            if command.kind == "update_note":
                await self.d6.update_note(school, target, command.body)
            elif command.kind == "delete_note":
                await self.d6.delete_note(school, target)
            else:
                await self.d6.delete_promise(school, target)
            return Sent(outcome="ok", status=200)
        except D6WriteError as error:
            return Sent(
                outcome=OUTCOMES[type(error)],
                status=error.status_code,
                message=error.message,
                errors=error.validation_errors or None,
                retry_after=error.retry_after if isinstance(error, WriteRetryable) else None,
                not_authorised=isinstance(error, WriteDenied) and error.not_authorised,
            )

    async def notes_of(self, school_id: int, accountable_person_id: int) -> Sequence[dict[str, Any]]:
        return await self.d6.notes_of(school_id, accountable_person_id)
