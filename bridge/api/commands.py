"""Write-back: `POST /v1/schools/{school_id}/notes`, `PATCH`/`DELETE .../notes/{note_id}`,
`DELETE .../promises/{promise_id}`, and `GET /v1/commands(/{command_id})` (docs/commands.md).

Each write is checked as d6 would check its shape (bridge/d6/note_rules.py: a 400 naming the field, and
nothing is sent), stored durably (bridge/commands/store.py) and answered 202 with the command; the runner
sends it (bridge/commands/runner.py). `Idempotency-Key` names a request: the same key within 24 h answers
the first command, with another body 409. Only active schools take commands (404 otherwise). The read-only
token may look at commands, not make them (403). A command's view never shows its body: a note's text is
personal data.

Handlers receive `commands` (`Commands`: the store, the watcher for which schools are active, and the
runner to wake).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from bridge.api.auth import admin_guard
from bridge.api.common import Cursor, Injected, Limit, PageMeta, page_meta, rfc3339, score_cursor
from bridge.api.contract import BODY_ERRORS, SECURITY, error_responses, json_body
from bridge.commands.models import Command, CommandKind, CommandState, D6Answer
from bridge.commands.runner import CommandRunner
from bridge.commands.store import CommandStore, new_command_id
from bridge.d6.note_rules import NoteCreate, NoteUpdate, validate_create, validate_update
from bridge.errors import InvalidRequest, NotFound
from bridge.events.envelope import Timestamp
from bridge.sync.watcher import IntegrationsWatcher

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="names this request: the same key within 24 h answers its first command (else 409)",
    ),
]
MAX_KEY = 255


@dataclass(frozen=True, kw_only=True)
class Commands:
    store: CommandStore
    watcher: IntegrationsWatcher
    runner: CommandRunner | None = None


class CommandResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    note_id: int | None = None
    """The note a create made."""


class CommandView(msgspec.Struct, kw_only=True):
    command_id: str
    kind: CommandKind
    school_id: int
    target_id: str | None
    """The note (update, delete) or promise (delete_promise) it acts on; None for a create."""
    state: CommandState
    """`queued` (waiting, also between retries), `sending`, `succeeded` or `failed`."""
    attempts: int
    idempotency_key: str | None
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None
    next_attempt_at: Timestamp | None
    d6: D6Answer | None
    """What d6 answered the last attempt: status, message, validation errors (verbatim)."""
    result: CommandResult
    remark: str | None
    """What the bridge noted: a note found after an unknown outcome, a delete of a note already deleted."""


class CommandPage(msgspec.Struct, kw_only=True):
    data: list[CommandView]
    meta: PageMeta


def view(command: Command) -> CommandView:
    waiting = command.state == "queued" and command.next_at > time.time()
    return CommandView(
        command_id=command.id,
        kind=command.kind,
        school_id=command.school_id,
        target_id=command.target,
        state=command.state,
        attempts=command.attempts,
        idempotency_key=command.idempotency_key,
        created_at=rfc3339(command.created_at) or "",
        updated_at=rfc3339(command.updated_at) or "",
        finished_at=rfc3339(command.finished_at),
        next_attempt_at=rfc3339(command.next_at) if waiting else None,
        d6=command.answer,
        result=CommandResult(note_id=command.note_id),
        remark=command.remark,
    )


_json = msgspec.json.Encoder()


class CommandController(Controller):
    tags = ["commands"]
    guards = [admin_guard]
    security = SECURITY
    before_request = staticmethod(json_body)

    async def _submit(
        self,
        commands: Commands,
        kind: CommandKind,
        school_id: int,
        *,
        target: str | None = None,
        body: bytes = b"",
        key: str | None = None,
    ) -> CommandView:
        if school_id not in await commands.watcher.active_schools():
            raise NotFound(
                f"school {school_id} is not active here: commands go to schools the bridge polls",
                school_id=school_id,
            )
        if key is not None and not 0 < len(key) <= MAX_KEY:
            raise InvalidRequest("Idempotency-Key", f"must be 1 to {MAX_KEY} characters")
        now = time.time()
        command = Command(
            id=new_command_id(school_id),
            kind=kind,
            school_id=school_id,
            target=target,
            body=body,
            idempotency_key=key,
            created_at=now,
            updated_at=now,
            next_at=now,
        )
        stored, _new = await commands.store.submit(command)
        if commands.runner is not None:
            commands.runner.wake()
        return view(stored)

    @post(
        "/v1/schools/{school_id:int}/notes",
        summary="Create a debtor note (with promises to pay) in d6, once",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(403, 404, 409, *BODY_ERRORS),
    )
    async def create_note(
        self,
        commands: Injected[Commands],
        school_id: FromPath[int],
        data: JSONBody[NoteCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> CommandView:
        validate_create(data)
        return await self._submit(
            commands, "create_note", school_id, body=_json.encode(data), key=idempotency_key
        )

    @patch(
        "/v1/schools/{school_id:int}/notes/{note_id:int}",
        summary="Change a debtor note in d6 (or restore a deleted one)",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(403, 404, 409, *BODY_ERRORS),
    )
    async def update_note(
        self,
        commands: Injected[Commands],
        school_id: FromPath[int],
        note_id: FromPath[int],
        data: JSONBody[NoteUpdate],
        idempotency_key: IdempotencyKey = None,
    ) -> CommandView:
        validate_update(data)
        return await self._submit(
            commands,
            "update_note",
            school_id,
            target=str(note_id),
            body=_json.encode(data),
            key=idempotency_key,
        )

    @delete(
        "/v1/schools/{school_id:int}/notes/{note_id:int}",
        summary="Delete a debtor note in d6",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(403, 404, 409),
    )
    async def delete_note(
        self,
        commands: Injected[Commands],
        school_id: FromPath[int],
        note_id: FromPath[int],
        idempotency_key: IdempotencyKey = None,
    ) -> CommandView:
        return await self._submit(
            commands, "delete_note", school_id, target=str(note_id), key=idempotency_key
        )

    @delete(
        "/v1/schools/{school_id:int}/promises/{promise_id:int}",
        summary="Delete a promise to pay in d6",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(403, 404, 409),
    )
    async def delete_promise(
        self,
        commands: Injected[Commands],
        school_id: FromPath[int],
        promise_id: FromPath[int],
        idempotency_key: IdempotencyKey = None,
    ) -> CommandView:
        return await self._submit(
            commands, "delete_promise", school_id, target=str(promise_id), key=idempotency_key
        )

    @get(
        "/v1/commands/{command_id:str}",
        summary="One write-back command and how it stands",
        responses=error_responses(404),
    )
    async def get_command(self, commands: Injected[Commands], command_id: FromPath[str]) -> CommandView:
        return view(await commands.store.get(command_id))

    @get("/v1/commands", summary="Write-back commands, newest first", responses=error_responses())
    async def list_commands(
        self,
        commands: Injected[Commands],
        school_id: Annotated[int | None, QueryParameter(description="only this school's")] = None,
        in_state: Annotated[
            CommandState | None, QueryParameter(name="state", description="only those in this state")
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> CommandPage:
        found, after = await commands.store.page(
            before=score_cursor(cursor), limit=limit, school_id=school_id, state=in_state
        )
        return CommandPage(
            data=[view(c) for c in found], meta=page_meta(limit, None if after is None else repr(after))
        )
