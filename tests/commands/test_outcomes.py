"""The command runner's outcomes on the paths d6 cannot be made to take on demand: a write applied whose
answer was lost, the look after it failing, a 403 that is not a withdrawal of consent. d6 is a scripted
stand-in (each send and each read of a person's notes does what the test says); Redis is real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from bridge.commands.models import Command, CommandKind
from bridge.commands.runner import CommandRunner, Sent
from bridge.commands.store import LEASE_NAME, CommandStore, new_command_id, school_of
from bridge.events.envelope import Event
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.lease import Lease
from bridge.sync.poller import with_origins

SCHOOL = 1000
NOTE = {"accountable_person_id": 7, "date": "2026-03-01", "note_type_id": 1, "note": "called about fees"}


class ScriptedD6:
    """d6's notes, and what each send and each read does: `applied_lost` (made, answer lost), `ok`, `retry`
    (503, nothing done), `forbidden` (403, not a withdrawal), `gone` (404); reads `ok` or `fail`."""

    def __init__(self, sends: list[str], reads: list[str] | None = None) -> None:
        self.sends, self.reads = sends, reads or []
        self.notes: list[dict[str, Any]] = []
        self.made = 0

    async def send(self, command: Command) -> Sent:
        what = self.sends.pop(0)
        if what in ("ok", "applied_lost") and command.kind == "create_note":
            self.made += 1
            self.notes.append({"note_id": 100 + self.made, **msgspec.json.decode(command.body)})
            if what == "ok":
                return Sent(outcome="ok", status=201, note_id=100 + self.made)
        if what == "applied_lost":
            return Sent(outcome="unknown", message="no answer: timed out")
        if what == "ok":
            return Sent(outcome="ok", status=200)
        if what == "retry":
            return Sent(outcome="retry", status=503, message="HTTP 503")
        if what == "forbidden":
            return Sent(outcome="denied", status=403, message="Forbidden")
        if what == "withdrawn":
            return Sent(outcome="denied", status=401, message="not authorised", not_authorised=True)
        assert what == "gone", what
        return Sent(outcome="refused", status=404, message="The Promise To Pay does not exist")

    async def notes_of(self, school_id: int, accountable_person_id: int) -> Sequence[dict[str, Any]]:
        if self.reads and self.reads.pop(0) == "fail":
            raise ConnectionError("d6 unreachable")
        return [dict(n) for n in self.notes]


def _asked(kind: CommandKind, *, target: str | None = None, key: str | None = None) -> Command:
    """A command as the API stores it: a create carries `NOTE`, the others their target."""
    now = time.time()
    create = kind == "create_note"
    return Command(
        id=new_command_id(SCHOOL),
        kind=kind,
        school_id=SCHOOL,
        target=None if create else target,
        body=msgspec.json.encode(NOTE) if create else b"",
        idempotency_key=key,
        created_at=now,
        updated_at=now,
    )


async def _run(
    redis: aioredis.Redis,
    d6: ScriptedD6,
    *,
    kind: CommandKind = "create_note",
    schedule: tuple[float, ...] = (0, 0, 0),
) -> tuple[Command, list[int], list[str]]:
    """One command through the runner until it ends: (the command, schools denied, states told)."""
    keys = Keys()
    store, denied, told = CommandStore(redis, keys), [], []

    async def deny(school_id: int) -> None:
        denied.append(school_id)

    async def tell(command: Command) -> None:
        told.append(command.state)

    runner = CommandRunner(
        store,
        Lease(redis, keys, Scripts(redis), name=LEASE_NAME),
        d6,
        retry_schedule=schedule,
        lease_seconds=30,
        on_written=lambda *_: None,
        on_denied=deny,
        tell=tell,
    )
    command = _asked(kind, target="55")
    await store.submit(command)
    for _ in range(20):
        await runner.step()
        found = await store.get(command.id)
        if found.state in ("succeeded", "failed"):
            return found, denied, told
        await asyncio.sleep(0.01)
    raise AssertionError(f"the command did not end: {found.state}")


async def test_a_failed_look_after_an_unknown_outcome_looks_again_rather_than_sending(
    redis: aioredis.Redis,
) -> None:
    d6 = ScriptedD6(sends=["applied_lost", "ok"], reads=["ok", "fail", "ok"])
    command, _, told = await _run(redis, d6)
    assert d6.made == 1, "the create was sent again without a look"
    assert command.state == "succeeded" and command.note_id == 101
    assert told == ["succeeded"]


async def test_a_create_whose_last_attempt_is_unknown_looks_once_more_before_failing(
    redis: aioredis.Redis,
) -> None:
    d6 = ScriptedD6(sends=["retry", "applied_lost"])
    command, _, _ = await _run(redis, d6, schedule=(0,))
    assert d6.made == 1
    assert command.state == "succeeded" and command.note_id == 101, "its note in d6 was not found"


async def test_a_create_used_up_whose_note_is_not_in_d6_fails_without_sending_again(
    redis: aioredis.Redis,
) -> None:
    class LostForGood(ScriptedD6):
        async def send(self, command: Command) -> Sent:
            self.sends.pop(0)
            return Sent(outcome="unknown", message="no answer: timed out")  # and nothing was made

    d6 = LostForGood(sends=["x", "x"])
    command, _, told = await _run(redis, d6, schedule=(0,))
    assert d6.sends == [], "two sends: the first and the one retry"
    assert command.state == "failed" and "no note made by it was found" in (command.remark or "")
    assert told == ["failed"]


async def test_only_a_withdrawal_of_consent_marks_the_school_denied(redis: aioredis.Redis) -> None:
    command, denied, _ = await _run(redis, ScriptedD6(sends=["forbidden"]), kind="delete_note")
    assert command.state == "failed" and command.answer is not None and command.answer.status == 403
    assert denied == []
    await redis.flushdb()
    command, denied, _ = await _run(redis, ScriptedD6(sends=["withdrawn"]), kind="delete_note")
    assert command.state == "failed" and denied == [SCHOOL]


async def test_a_promise_deleted_by_an_attempt_whose_answer_was_lost_succeeds(redis: aioredis.Redis) -> None:
    command, _, told = await _run(redis, ScriptedD6(sends=["applied_lost", "gone"]), kind="delete_promise")
    assert command.state == "succeeded" and "that attempt deleted it" in (command.remark or "")
    assert told == ["succeeded"]
    await redis.flushdb()
    command, _, _ = await _run(redis, ScriptedD6(sends=["gone"]), kind="delete_promise")
    assert command.state == "failed", "a promise d6 never had is not deleted"


async def test_a_finished_command_keeps_no_body(redis: aioredis.Redis) -> None:
    command, _, _ = await _run(redis, ScriptedD6(sends=["ok"]))
    assert command.state == "succeeded"
    assert command.body == b"" and command.known_before is None
    stored = b"".join((await redis.hgetall(Keys().commands(SCHOOL))).values())
    assert b"called about fees" not in stored


async def test_a_retried_request_marks_its_school_due_when_the_first_did_not(redis: aioredis.Redis) -> None:
    store, keys = CommandStore(redis, Keys()), Keys()
    first = _asked("delete_note", target="5", key="k-1")
    await store.submit(first)
    await redis.delete(keys.commands_due())  # the first request failed before marking its school
    again = msgspec.structs.replace(first, id=new_command_id(SCHOOL))
    answered, new = await store.submit(again)
    assert not new and answered.id == first.id
    assert await store.due(time.time()) == [SCHOOL]


async def test_a_request_whose_key_is_claimed_by_one_under_way_answers_that_one(
    redis: aioredis.Redis,
) -> None:
    store = CommandStore(redis, Keys())
    first = _asked("delete_note", target="5", key="k-2")
    slow = CommandStore(redis, Keys())

    async def storing_slowly() -> None:
        await asyncio.sleep(0.1)  # the first request claimed its key and is not done storing

    real_pipeline = redis.pipeline

    def delayed_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        execute = pipe.execute

        async def later(*a: Any, **k: Any) -> Any:
            await storing_slowly()
            return await execute(*a, **k)

        pipe.execute = later
        return pipe

    redis.pipeline = delayed_pipeline  # type: ignore[method-assign]
    try:
        under_way = asyncio.create_task(slow.submit(first))
        await asyncio.sleep(0.02)
        redis.pipeline = real_pipeline  # type: ignore[method-assign]
        answered, new = await store.submit(_asked("delete_note", target="5", key="k-2"))
        await under_way
    finally:
        redis.pipeline = real_pipeline  # type: ignore[method-assign]
    assert not new and answered.id == first.id, "a second command was made for one key"
    assert await redis.llen(Keys().command_queue(SCHOOL)) == 1


def test_a_command_id_with_other_digits_names_no_school() -> None:
    assert school_of("cmd_\u00b2_x") is None
    assert school_of("cmd_1000_01J") == 1000


def test_only_the_events_a_command_s_kind_makes_carry_its_origin() -> None:
    origins = {"note:5": {"command_id": "cmd_1000_A", "idempotency_key": "k", "kind": "create_note"}}

    def event(type_: str, resource: str, rid: str, **data: Any) -> Event:
        return Event(
            id="evt_x",
            type=type_,
            timestamp=0.0,
            school_id=SCHOOL,
            sequence=1,
            resource=resource,
            resource_id=rid,
            data=data,
        )

    made = with_origins(
        [
            event("note.created", "note", "5"),
            event("promise.created", "promise", "9", note_id=5),
            event("promise.updated", "promise", "9", note_id=5, amount_paid="100.00"),
            event("note.updated", "note", "5"),
        ],
        origins,
    )
    assert [e.origin for e in made] == [
        {"command_id": "cmd_1000_A", "idempotency_key": "k"},
        {"command_id": "cmd_1000_A", "idempotency_key": "k"},
        None,  # the school recorded a payment: not the command's change
        None,
    ]


async def test_a_replica_that_lost_the_school_writes_nothing_over_the_next_one(redis: aioredis.Redis) -> None:
    """Replica A's first look outlives its lease; B takes the school over, sends the note and finishes the
    command; when A's look returns, its write is refused: the command stays as B left it, one note in d6."""
    keys = Keys()
    store = CommandStore(redis, keys)
    d6 = ScriptedD6(sends=["ok"])
    slow_first = [True]

    class SlowLook(ScriptedD6):
        async def notes_of(self, school_id: int, accountable_person_id: int) -> Sequence[dict[str, Any]]:
            if slow_first.pop() if slow_first else False:
                await asyncio.sleep(1.0)
            return await d6.notes_of(school_id, accountable_person_id)

        async def send(self, command: Command) -> Sent:
            return await d6.send(command)

    async def nothing(_: int) -> None:
        return None

    def runner(lease_seconds: float) -> CommandRunner:
        return CommandRunner(
            store,
            Lease(redis, keys, Scripts(redis), name=LEASE_NAME),
            SlowLook(sends=[]),
            retry_schedule=(0,),
            lease_seconds=lease_seconds,
            on_written=lambda *_: None,
            on_denied=nothing,
        )

    command = _asked("create_note")
    await store.submit(command)
    a = asyncio.create_task(runner(0.3).step())
    await asyncio.sleep(0.5)  # A's lease ran out during its look
    assert await runner(30).step() == 1
    finished = await store.get(command.id)
    assert finished.state == "succeeded" and finished.note_id == 101
    assert await a == 0
    assert await store.get(command.id) == finished
    assert d6.made == 1


async def test_finished_commands_are_forgotten_after_the_retention_unfinished_ones_stay(
    redis: aioredis.Redis,
) -> None:
    done, _, _ = await _run(redis, ScriptedD6(sends=["ok"]), kind="delete_note")
    store, keys = CommandStore(redis, Keys()), Keys()
    waiting = _asked("delete_note", target="6")
    await store.submit(waiting)
    assert await store.forget(time.time() - 3600) == 0  # both made within the hour
    assert await store.forget(time.time() + 1) == 1
    assert await store.find(SCHOOL, done.id) is None and await store.find(SCHOOL, waiting.id) is not None
    listed, _ = await store.page(before=None, limit=10, school_id=None, state=None)
    assert [c.id for c in listed] == [waiting.id]
    assert await redis.zcard(keys.commands_index()) == 1
