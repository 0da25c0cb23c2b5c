"""Commands in Redis: stored durably before the API answers 202, queued per school in order, found by id or
by Idempotency-Key (docs/commands.md).

A command lives in its school's slot (`{s:N}:commands`, `{s:N}:commands:queue`), so its record and its
place in the school's queue change together. Which schools have work, the listing and the idempotency keys
live in the `{commands}` slot; each step that spans both slots is ordered so that a crash between them
leaves nothing lost: a key is claimed before its command is stored (a retry finds a key naming nothing
and takes it over), and a school is marked due after its command is queued.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Final

import msgspec
from redis.asyncio import Redis

from bridge.commands.models import FINISHED, Command, CommandState
from bridge.errors import Conflict, NotFound
from bridge.events.ids import event_id_ms, ulid
from bridge.store.codec import as_bytes, as_text
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts

KEY_SECONDS: Final = 24 * 3600
"""How long an Idempotency-Key names its first command."""
CLAIM_SECONDS: Final = 5.0
"""A key claimed this recently whose command is not stored yet belongs to a request under way, not a crash."""
CLAIM_WAITS: Final = 10

_encoder = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()
_decoder = msgspec.msgpack.Decoder(Command)


def new_command_id(school_id: int) -> str:
    """`cmd_<school>_<ULID>`: the id names its school, so a command is found in one read."""
    return f"cmd_{school_id}_{ulid()}"


def school_of(command_id: str) -> int | None:
    head, _, rest = command_id.partition("_")
    school, _, tail = rest.partition("_")
    return int(school) if head == "cmd" and school.isascii() and school.isdigit() and tail else None


def _claimed_at(claim: str) -> float:
    """When a key's claim was made: the time in its command id's ULID (0 when unreadable: taken over)."""
    _, command_id, _ = claim.split(":", 2)
    try:
        return event_id_ms("evt_" + command_id.rpartition("_")[2]) / 1000
    except ValueError:
        return 0.0


def digest(*parts: bytes | str) -> str:
    """A SHA-256 over the parts (a key is stored only so; a body is compared so)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _changed(command: Command) -> str | None:
    """What a succeeded command changed, as its origin entry names it: `note:<id>` or `promise:<id>`."""
    if command.kind == "delete_promise":
        return f"promise:{command.target}"
    note = command.note_id if command.kind == "create_note" else command.target
    return None if note is None else f"note:{note}"


LEASE_NAME: Final = "command"
"""The per-school lease whose holder sends the school's commands and alone writes them (runner.py)."""


class LeaseLost(Exception):
    """A command write refused: the school's `command` lease is no longer the writer's."""

    def __init__(self, school_id: int) -> None:
        super().__init__(f"the command lease of school {school_id} was lost")
        self.school_id = school_id


class UnknownCommand(NotFound):
    def __init__(self, command_id: str) -> None:
        super().__init__(f"no command with id {command_id!r}", command_id=command_id)


class CommandStore:
    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self._command_write = (scripts or Scripts(redis)).command_write

    async def submit(self, command: Command) -> tuple[Command, bool]:
        """Store and queue `command`; with an Idempotency-Key already used within 24 h, the first command
        instead (False), or 409 when that one was asked with another body."""
        key = command.idempotency_key
        if key is not None:
            body = digest(str(command.school_id), command.kind, command.target or "", command.body)
            claim = f"{command.school_id}:{command.id}:{body}"
            where = self.keys.command_key(digest(key))
            if not await self.redis.set(where, claim, nx=True, ex=KEY_SECONDS):
                first = await self._first(where, body) or await self._stored_meanwhile(where, body)
                if first is not None:
                    if first.state not in FINISHED:  # its request may have failed before marking it due
                        await self._mark_due(first)
                    return first, False
                await self.redis.set(where, claim, ex=KEY_SECONDS)  # it named nothing: a crash; take it over
        school = command.school_id
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.commands(school), command.id, _encoder.encode(command))
            pipe.rpush(self.keys.command_queue(school), command.id)
            await pipe.execute()
        await self._mark_due(command)
        return command, True

    async def _mark_due(self, command: Command) -> None:
        """Its school has work and the command is listed (both idempotent: a retried request repeats them)."""
        school, at = command.school_id, command.created_at
        await self.redis.zadd(self.keys.commands_due(), {str(school): at}, nx=True)
        await self.redis.zadd(self.keys.commands_index(), {f"{school}:{command.id}": at})

    async def _stored_meanwhile(self, where: str, body: str) -> Command | None:
        """The command of a key that names none yet: a key claimed less than `CLAIM_SECONDS` ago belongs to a
        request storing its command now (a client's retry, another replica): its command once stored, or a
        409 when it still is not. Older: a request that crashed before storing it (None: taken over)."""
        for _ in range(CLAIM_WAITS):
            raw = await self.redis.get(where)
            if raw is None or time.time() - _claimed_at(as_text(raw)) >= CLAIM_SECONDS:
                return None
            await asyncio.sleep(CLAIM_SECONDS / CLAIM_WAITS / 10)
            first = await self._first(where, body)
            if first is not None:
                return first
        raise Conflict("a request with this Idempotency-Key is being stored now; send it again in a moment")

    async def _first(self, where: str, body: str) -> Command | None:
        raw = await self.redis.get(where)
        if raw is None:
            return None
        school, command_id, first_body = as_text(raw).split(":", 2)
        found = await self.find(int(school), command_id)
        if found is None:
            return None
        if first_body != body:
            raise Conflict(
                "this Idempotency-Key was used within 24 h for another request (another school, target or "
                "body); use a new key for a new request",
                command_id=command_id,
            )
        return found

    async def find(self, school_id: int, command_id: str) -> Command | None:
        raw = await self.redis.hget(self.keys.commands(school_id), command_id)
        return None if raw is None else _decoder.decode(as_bytes(raw))

    async def get(self, command_id: str) -> Command:
        """A command by id alone (its id names its school); 404 when there is none."""
        school = school_of(command_id)
        found = None if school is None else await self.find(school, command_id)
        if found is None:
            raise UnknownCommand(command_id)
        return found

    async def page(
        self, *, before: float | None, limit: int, school_id: int | None, state: CommandState | None
    ) -> tuple[list[Command], float | None]:
        """Newest first, created strictly before `before`: up to `limit` matching commands, and the score
        to go on from (None when none is left). Reads the index 500 at a time."""
        found: list[Command] = []
        top: Any = "+inf" if before is None else f"({before!r}"
        while len(found) < limit:
            rows: Any = await self.redis.zrevrangebyscore(
                self.keys.commands_index(), top, "-inf", start=0, num=500, withscores=True
            )
            if not rows:
                return found, None
            wanted: list[tuple[int, str, float]] = []
            for member, score in rows:
                school, _, command_id = as_text(member).partition(":")
                if school_id is None or int(school) == school_id:
                    wanted.append((int(school), command_id, float(score)))
            async with self.redis.pipeline(transaction=False) as pipe:
                for school_of_row, command_id, _ in wanted:
                    pipe.hget(self.keys.commands(school_of_row), command_id)
                raws: list[Any] = await pipe.execute()
            for (_, _, score), raw in zip(wanted, raws, strict=True):
                command = None if raw is None else _decoder.decode(as_bytes(raw))
                if command is None or (state is not None and command.state != state):
                    continue
                found.append(command)
                if len(found) == limit:
                    return found, float(score)
            top = f"({float(rows[-1][1])!r}"
        return found, None

    async def head(self, school_id: int) -> Command | None:
        """The school's next command to send, if any."""
        first = await self.redis.lindex(self.keys.command_queue(school_id), 0)
        return None if first is None else await self.find(school_id, as_text(first))

    async def save(self, command: Command, *, token: int) -> Command:
        """Write the command as it stands, while `token` holds its school's `command` lease (`LeaseLost`
        otherwise: another replica took the school over, and its writes stand)."""
        command = msgspec.structs.replace(command, updated_at=time.time())
        await self._write(command, token, finished=False)
        return command

    async def finish(self, command: Command, *, token: int) -> Command:
        """Record its outcome and take it out of its school's queue (in one step, under the lease as `save`).
        The body goes: a note's text is personal data, needed only to send it (an Idempotency-Key is
        compared by its digest)."""
        now = time.time()
        command = msgspec.structs.replace(
            command, updated_at=now, finished_at=now, body=b"", known_before=None
        )
        await self._write(command, token, finished=True)
        return command

    async def _write(self, command: Command, token: int, *, finished: bool) -> None:
        school = command.school_id
        changed = _changed(command) if finished and command.state == "succeeded" else None
        origin = b""
        if changed is not None:  # the next scan tells the change with its origin (sync/poller.py)
            origin = _json.encode(
                {
                    "command_id": command.id,
                    "idempotency_key": command.idempotency_key,
                    "kind": command.kind,
                    "at": command.updated_at,
                }
            )
        written = await self._command_write(
            keys=[
                self.keys.lease(school, LEASE_NAME),
                self.keys.commands(school),
                self.keys.command_queue(school),
                self.keys.command_origins(school),
            ],
            args=[
                str(token),
                command.id,
                _encoder.encode(command),
                "1" if finished else "0",
                changed or "",
                origin,
            ],
        )
        if not written:
            raise LeaseLost(school)

    async def forget(self, before: float, *, batch: int = 500) -> int:
        """Forget the finished commands made before `before` (the event retention): their records and their
        place in the listing; returns how many. Unfinished ones stay (they are still to be sent)."""
        forgotten = 0
        while True:
            rows: Any = await self.redis.zrangebyscore(
                self.keys.commands_index(), "-inf", repr(before), start=0, num=batch
            )
            listed = [as_text(r) for r in rows]
            if not listed:
                return forgotten
            gone = []
            for member in listed:
                school, _, command_id = member.partition(":")
                found = await self.find(int(school), command_id)
                if found is not None and found.state not in FINISHED:
                    continue
                await self.redis.hdel(self.keys.commands(int(school)), command_id)
                gone.append(member)
            if gone:
                await self.redis.zrem(self.keys.commands_index(), *gone)
            forgotten += len(gone)
            if len(listed) < batch or not gone:
                return forgotten

    async def due(self, now: float, limit: int = 50) -> list[int]:
        rows: Any = await self.redis.zrangebyscore(
            self.keys.commands_due(), "-inf", repr(now), start=0, num=limit
        )
        return [int(as_text(r)) for r in rows]

    async def reschedule(self, school_id: int, at: float) -> None:
        await self.redis.zadd(self.keys.commands_due(), {str(school_id): at})

    async def idle(self, school_id: int) -> None:
        """The school's queue looked empty: no longer due, unless a command was queued meanwhile (a submit
        queues, then marks the school due: checked after the removal, nothing is stranded)."""
        await self.redis.zrem(self.keys.commands_due(), str(school_id))
        if await self.redis.llen(self.keys.command_queue(school_id)):
            await self.redis.zadd(self.keys.commands_due(), {str(school_id): time.time()})

    async def waiting(self) -> int:
        """Commands not finished yet, over every school (the queue depth gauge): every school with one is in
        `due` (a submit marks it, only an empty queue takes it out)."""
        schools: Any = await self.redis.zrange(self.keys.commands_due(), 0, -1)
        if not schools:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for school in schools:
                pipe.llen(self.keys.command_queue(int(as_text(school))))
            lengths: list[Any] = await pipe.execute()
        return sum(int(n) for n in lengths)
