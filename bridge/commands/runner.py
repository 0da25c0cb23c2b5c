"""The command runner: sends each school's commands to d6 in order, one replica per school at a time, and
records how each ended (docs/commands.md).

Every serve process runs one loop. A step takes the schools whose head command is due and, for each whose
`command` lease it gets (the per-school fencing lease the polls use, under another name), sends its
commands one after another until the queue is empty or the head must wait. An attempt:

- a create first reads that person's notes from d6 (once, before its first send): what was there before;
- after an attempt whose outcome is unknown (a timeout or a connection lost after sending), a create reads
  them again and, when a note matching it (person, date, type, text, promises) is there that was not before,
  takes that note as its result instead of sending again: exactly once over d6's non-idempotent create. The
  blind spot: an identical note made by someone else in d6 between the two reads is taken as ours. A read
  that fails leaves the outcome unknown (the next attempt reads again), and a create whose schedule is used up
  after an unknown outcome only reads: it fails only once d6 shows no note of it;
- d6's answer is classified (`Sent.outcome`): `ok` succeeds; `refused` (400, 404) fails at once with d6's
  message and validation errors, except a delete d6 finds already deleted (or a promise's delete d6 no
  longer finds after an unknown outcome), which succeeds with a remark; `denied` (401/403) fails, and when
  d6 says the school withdrew its authorisation the school is handled as denied (`on_denied`); `retry` (429,
  5xx) and `unknown` wait `BRIDGE_COMMAND_RETRY_SCHEDULE` and try again, and fail once it is used up.

Each finished command is told as an event in its school's sequence, `command.succeeded` or `command.failed`
(told.py), before it leaves the queue: a crash between the two tells it twice, never not at all. After a
success the school's notes (and promises) are polled at once (`on_written`), so the change arrives as its
own event soon after. A replica killed mid-attempt leaves the command `sending` with its lease
running out (two d6 timeouts and a margin: it is renewed before each d6 call of an attempt); the next holder
tries it again, as an unknown outcome.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Literal, Protocol

import msgspec
import structlog

from bridge import metrics
from bridge.commands.models import FINISHED, Command, D6Answer
from bridge.commands.store import CommandStore, LeaseLost
from bridge.loops import Background, poll
from bridge.sync.lease import Lease

log = structlog.get_logger(__name__)

LEASE_MARGIN_SECONDS: Final = 5.0
IDLE_SECONDS: Final = 0.5
FORGET_EVERY_SECONDS: Final = 3600.0
ALREADY_DELETED: Final = "already been deleted"
"""How d6's 404 for a delete of a note deleted before reads (delete-note.md)."""
DELETED_BEFORE: Final = "d6 says the note was already deleted"


class Sent(msgspec.Struct, kw_only=True, frozen=True):
    """How one attempt went, as the runner acts on it."""

    outcome: Literal["ok", "refused", "denied", "retry", "unknown"]
    status: int | None = None
    message: str | None = None
    errors: dict[str, Any] | None = None
    note_id: int | None = None
    retry_after: float | None = None
    reached: bool = True
    """Whether this attempt sent the command to d6 (False: it ended before, in the look that comes first)."""
    not_authorised: bool = False
    """A 401/403 that says the school withdrew its authorisation (`denied` only then marks it denied)."""


class Writer(Protocol):
    """d6's write calls, as the runner uses them (bridge/commands/d6.py over bridge/d6/writes.py)."""

    async def send(self, command: Command) -> Sent: ...

    async def notes_of(self, school_id: int, accountable_person_id: int) -> Sequence[dict[str, Any]]: ...


class CommandRunner:
    def __init__(
        self,
        store: CommandStore,
        lease: Lease,
        writer: Writer,
        *,
        retry_schedule: Sequence[float],
        lease_seconds: float,
        on_written: Callable[[int, Command], None],
        on_denied: Callable[[int], Awaitable[None]],
        tell: Callable[[Command], Awaitable[None]] | None = None,
        knows_note: Callable[[int, int], Awaitable[bool]] | None = None,
        keep_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.lease = lease
        self.writer = writer
        self.retry_schedule = tuple(retry_schedule)
        self.lease_seconds = lease_seconds
        """Outlives one step of an attempt (a d6 call); renewed before each step."""
        self._on_written = on_written
        self._on_denied = on_denied
        self._tell = tell
        self._knows_note = knows_note
        """Whether the bridge's snapshot knows a note (a delete d6 finds gone then succeeds); None: notes are
        not watched, and d6's "already been deleted" is taken at its word."""
        """Appends the command's event (`command.succeeded`/`failed`) to its school's log (told.py)."""
        self._keep_seconds = keep_seconds
        """How long finished commands stay listed (the event retention; None: for ever)."""
        self._next_forget = 0.0
        self._owner = secrets.token_hex(8)
        self._token = 0
        """The fencing token of the school lease held now."""
        self._loop = Background("command-runner", self._run)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def wake(self) -> None:
        """A command was queued: look at once rather than at the next tick."""
        self._loop.wake()

    async def _run(self) -> None:
        await poll(
            self.step,
            lambda _: self._loop.idle(IDLE_SECONDS),
            failed="command runner failed; retrying",
            crashed="command runner crashed; retrying",
            running=self._loop.go_on,
        )

    async def step(self) -> int:
        """Each due school whose lease this replica gets: its commands, in order. Returns how many ended.
        Hourly, the finished commands older than the retention are forgotten."""
        ended = 0
        if self._keep_seconds is not None and time.time() >= self._next_forget:
            self._next_forget = time.time() + FORGET_EVERY_SECONDS
            forgotten = await self.store.forget(time.time() - self._keep_seconds)
            if forgotten:
                log.info("finished commands forgotten", count=forgotten)
        for school_id in await self.store.due(time.time()):
            token = await self.lease.acquire(school_id, self._owner, self.lease_seconds)
            if token is None:
                continue  # another replica sends this school's commands now
            self._token = token
            try:
                ended += await self._school(school_id, token)
            except LeaseLost:  # another replica holds the school now: its writes stand, it goes on
                log.warning("command lease lost", school_id=school_id)
            finally:
                await self.lease.release(school_id, token)
        return ended

    async def _school(self, school_id: int, token: int) -> int:
        ended = 0
        while self._loop.go_on():
            command = await self.store.head(school_id)
            if command is None:
                await self.store.idle(school_id)
                return ended
            if command.state in FINISHED:  # finished by a replica that died before it left the queue
                await self.store.finish(command, token=token)
                continue
            if command.next_at > time.time():
                await self.store.reschedule(school_id, command.next_at)
                return ended
            if not await self.lease.renew(school_id, token, self.lease_seconds):
                return ended
            command = await self._attempt(command)
            if command.state not in FINISHED:
                await self.store.reschedule(school_id, command.next_at)
                return ended
            ended += 1
        return ended

    async def _attempt(self, command: Command) -> Command:
        if command.state == "sending":  # an attempt that never recorded its end (a replica killed mid-send)
            command = msgspec.structs.replace(command, unknown=True)
        command = await self.store.save(
            msgspec.structs.replace(command, state="sending", attempts=command.attempts + 1),
            token=self._token,
        )
        if command.kind == "create_note":
            before = await self._before_create(command)
            if isinstance(before, Sent):
                return await self._ended(command, before)
            command = before
            if self._used_up(command):  # only looked: no note of the last, unknown attempt is in d6
                gave_up = msgspec.structs.replace(
                    command,
                    state="failed",
                    unknown=False,
                    remark="retries used up; the last attempt's outcome was unknown and no note made by it "
                    "was found in d6",
                )
                return await self._finished(gave_up, "failed")
            if not await self.lease.renew(command.school_id, self._token, self.lease_seconds):
                return command  # another replica holds the school now: it takes the command up
        sent = await self.writer.send(command)
        return await self._ended(command, sent)

    async def _before_create(self, command: Command) -> Command | Sent:
        """What a create does before it sends: note what the person has (first attempt), or find its own
        note after an unknown outcome (then the `Sent` that ends it)."""
        person = int(msgspec.json.decode(command.body)["accountable_person_id"])
        if command.known_before is not None and not command.unknown:
            return command
        try:
            notes = await self.writer.notes_of(command.school_id, person)
        except Exception as error:  # d6 unreachable: the same schedule as a failed send
            return Sent(
                outcome="retry",
                message=f"reading the person's notes first failed: {type(error).__name__}",
                reached=False,
            )
        ids = [int(n["note_id"]) for n in notes if n.get("note_id") is not None]
        if command.known_before is None:
            return await self.store.save(
                msgspec.structs.replace(command, known_before=ids), token=self._token
            )
        wanted = msgspec.json.decode(command.body)
        known = set(command.known_before)
        for note in notes:
            if note.get("note_id") is not None and int(note["note_id"]) not in known and _same(note, wanted):
                return Sent(outcome="ok", note_id=int(note["note_id"]), message="adopted")
        return command

    async def _ended(self, command: Command, sent: Sent) -> Command:
        now = time.time()
        answer = D6Answer(status=sent.status, message=sent.message, errors=sent.errors)
        school = command.school_id
        if sent.outcome == "ok":
            remark = (
                "the outcome of an earlier attempt was unknown; this note, made by it, was found in d6"
                if sent.message == "adopted"
                else None
            )
            done = msgspec.structs.replace(
                command,
                state="succeeded",
                answer=answer,
                note_id=sent.note_id or command.note_id,
                remark=remark,
            )
            return await self._finished(done, "succeeded")
        done_already = await self._done_already(command, sent) if sent.outcome == "refused" else None
        if done_already is not None:
            done = msgspec.structs.replace(command, state="succeeded", answer=answer, remark=done_already)
            return await self._finished(done, "succeeded")
        if sent.outcome in ("refused", "denied"):
            if sent.outcome == "denied" and sent.not_authorised:
                await self._on_denied(school)  # first: whoever reads the failure finds the school denied
            failed = msgspec.structs.replace(command, state="failed", answer=answer)
            return await self._finished(failed, "failed")
        # A look that failed leaves an unknown outcome unknown: the next attempt looks again.
        unknown = sent.outcome == "unknown" or (command.unknown and not sent.reached)
        if command.attempts > len(self.retry_schedule) and not (unknown and command.kind == "create_note"):
            gave_up = msgspec.structs.replace(
                command, state="failed", answer=answer, remark="retries used up"
            )
            return await self._finished(gave_up, "failed")
        # A create whose last attempt's outcome is unknown is not failed blind: once more, it only looks.
        delay = self.retry_schedule[min(command.attempts, len(self.retry_schedule)) - 1]
        if sent.retry_after is not None:
            delay = max(delay, sent.retry_after)
        waiting = msgspec.structs.replace(
            command, state="queued", answer=answer, next_at=now + delay, unknown=unknown
        )
        log.info(
            "command to retry", command_id=command.id, school_id=school, outcome=sent.outcome, delay=delay
        )
        return await self.store.save(waiting, token=self._token)

    def _used_up(self, command: Command) -> bool:
        """Whether this attempt comes after the schedule: it may only look for an unknown create's note."""
        return command.attempts > len(self.retry_schedule) + 1

    async def _done_already(self, command: Command, sent: Sent) -> str | None:
        """Why a delete d6 refused as not found succeeded all the same (its remark), if it did.

        A note d6 finds already deleted: when the bridge knew the note (it was deleted before: deleting is
        idempotent for the user); one neither d6 nor the snapshot knows fails. A promise to pay d6 no
        longer finds after an attempt whose outcome was unknown: that attempt deleted it."""
        if command.kind == "delete_promise" and command.unknown and sent.status == 404:
            return (
                "the outcome of an earlier attempt was unknown; d6 now says the promise to pay does not "
                "exist: that attempt deleted it"
            )
        if command.kind != "delete_note" or ALREADY_DELETED not in (sent.message or ""):
            return None
        if self._knows_note is None or command.target is None:
            return DELETED_BEFORE
        return DELETED_BEFORE if await self._knows_note(command.school_id, int(command.target)) else None

    async def _finished(self, command: Command, outcome: str) -> Command:
        if not await self.lease.renew(command.school_id, self._token, self.lease_seconds):
            raise LeaseLost(command.school_id)  # told and finished by the next holder, not twice
        if self._tell is not None:  # first: a crash before the finish tells it again, never not at all
            await self._tell(command)
        done = await self.store.finish(command, token=self._token)
        metrics.COMMANDS.labels(kind=command.kind, outcome=outcome).inc()
        log.info(
            "command finished",
            command_id=command.id,
            school_id=command.school_id,
            kind=command.kind,
            state=outcome,
            status=command.answer.status if command.answer else None,
            attempts=command.attempts,
        )
        if outcome == "succeeded":
            self._on_written(command.school_id, done)
        return done


def _same(note: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a note read from d6 is the one a create asked for: person, date, type, communication
    type, text and promises (dates and amounts) alike."""
    fields = ("accountable_person_id", "date", "note_type_id", "communication_type_id")
    if any(_plain(note.get(f)) != _plain(wanted.get(f)) for f in fields if f in wanted):
        return False
    if (note.get("note") or "") != (wanted.get("note") or ""):
        return False
    asked = sorted(
        (_plain(p.get("date_promised")), _amount(p.get("amount_promised")))
        for p in wanted.get("promise_to_pays") or []
    )
    if not asked:
        return True
    found = sorted(
        (_plain(p.get("date_promised")), _amount(p.get("amount_promised")))
        for p in note.get("promise_to_pays") or []
    )
    return found == asked


def _plain(value: Any) -> str:
    """A field as compared: text to its first 10 characters, so a date matches d6's answer with a time of day
    (`2026-12-06` and `2026-12-06T00:00:00`), ids as text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()[:10]
    return str(value)


def _amount(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return str(value)
