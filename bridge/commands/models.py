"""What a command is, as stored and as the API shows it."""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

CommandKind = Literal["create_note", "update_note", "delete_note", "delete_promise"]
CommandState = Literal["queued", "sending", "succeeded", "failed"]
STATES: Final = ("queued", "sending", "succeeded", "failed")
FINISHED: Final = frozenset({"succeeded", "failed"})


class D6Answer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What d6 said to the last attempt (or why there was no answer)."""

    status: int | None = None
    message: str | None = None
    errors: dict[str, Any] | None = None
    """d6's validation errors by field, verbatim."""


class Command(msgspec.Struct, kw_only=True):
    """One write to d6, from its request to its outcome."""

    id: str
    kind: CommandKind
    school_id: int
    target: str | None = None
    """The note id (update, delete) or promise id (delete_promise); None for a create."""
    body: bytes = b""
    """The request body as validated (JSON), for a create or an update; no body is ever logged."""
    idempotency_key: str | None = None
    state: CommandState = "queued"
    attempts: int = 0
    created_at: float
    updated_at: float
    next_at: float = 0.0
    """When it may be tried (again)."""
    answer: D6Answer | None = None
    note_id: int | None = None
    """The note a create made (or the one it found it had made, docs/commands.md#exactly-once)."""
    known_before: list[int] | None = None
    """A create's person's note ids read from d6 before its first send (for an unknown outcome)."""
    unknown: bool = False
    """The last attempt's outcome is unknown (no answer after sending): look before sending again."""
    remark: str | None = None
    """What the bridge noted: a delete of a note already deleted, a note adopted after an unknown outcome."""
    finished_at: float | None = None
