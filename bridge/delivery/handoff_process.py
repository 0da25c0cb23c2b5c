"""The hand-off in a process of its own, beside the serve process (docs/operations.md#the-hand-off-process).

Fanning published events out to the delivery queues costs about 20 µs of CPU an event (bench/RESULTS.md
section 12). In the serve process that time is taken from the delivery worker, whose process is the
bottleneck of delivery; in a process of its own it runs on another core. `BRIDGE_HANDOFF_PROCESS` (on by
default) chooses this; with the embedded store (`memory://`) the hand-off always runs in the serve process.

`HandoffProcess` is the serve process's side: it starts `python -m bridge.delivery.handoff_process`,
gives it the settings on its stdin, starts it once it says it is ready, and starts it again if it ends.
The child runs the same `Handoff` as the serve process would, with two differences:

- it has no poller beside it to wake it, so an idle holder of the lock waits on the delivery stream itself
  (a blocking read after the cursor);
- no delivery worker runs beside it, so its intake tells every replica that webhooks were queued through
  the notices stream (feed.py `Notices`), whose listener in each serve process wakes the worker.

It also runs the resync loop (resync.py), the other part that turns stored events and records into queued
deliveries: building a resync's chunks costs about a millisecond of CPU a snapshot event, which in the serve
process delayed the live events sent beside it (bench/RESULTS.md section 10).

The child ends when its stdin closes: when the serve process stops it, or dies, even by SIGKILL. It then
stops as the serve process's hand-off stops (a batch finishes, the lock is given back). The lock, the cursor
and the idempotent fan-out are the same in either place, so replicas of both kinds can run side by side.

The protocol on the pipes: the parent writes the settings as one line of JSON; the child answers `ready`
on its stdout once its parts are built, and starts when it reads `go`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Final

import msgspec
import structlog

from bridge import collector
from bridge.delivery.feed import Notices
from bridge.delivery.handoff import Handoff
from bridge.delivery.intake import Intake
from bridge.delivery.queue import DeliveryQueue
from bridge.delivery.resync import Resyncs
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.urls import UrlGuard
from bridge.logs import configure_logging
from bridge.settings import Settings, secrets_of
from bridge.store.keys import Keys
from bridge.store.redis import connect
from bridge.store.scripts import Scripts
from bridge.sync.snapshot import SnapshotStore

log = structlog.get_logger(__name__)

READY: Final = b"ready\n"
GO: Final = b"go\n"
READY_SECONDS: Final = 60.0
"""How long the parent waits for `ready` (imports and one Redis client) before it starts another."""
STOP_SECONDS: Final = 10.0
"""How long the parent waits for the child to finish its batch and give the lock back before killing it."""
RESTART_SECONDS: Final = 1.0


class HandoffProcess:
    """The serve process's handle on the hand-off process: `start`, `stop`, `running`, as `Handoff` has."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.starts = 0
        """Child processes started so far (one, unless one ended and was started again)."""

    @property
    def running(self) -> bool:
        return self._task is not None and self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The child's process id while it is alive (started, or only prepared)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def wake(self) -> None:
        """Nothing to do: the child waits on the delivery stream, which every publish writes to."""

    async def prepare(self) -> None:
        """Start the child and wait until it is ready, not yet handing off (`start` lets it go)."""
        if self._process is not None and self._process.returncode is None:
            return
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.delivery.handoff_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C is the serve process's to handle, not the child's
        )
        self._process = process
        self.starts += 1
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(msgspec.json.encode(self._settings) + b"\n")
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), READY_SECONDS)
        if line != READY:
            raise RuntimeError(f"the hand-off process did not start (exit status {await process.wait()})")

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._supervise(), name="event-handoff-process")

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()  # the child stops as the serve process's hand-off stops
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                log.warning("hand-off process did not stop in time; killed", pid=process.pid)
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _supervise(self) -> None:
        """Start the child (if `prepare` has not), let it go, and start another whenever it ends."""
        while not self._stopping:
            try:
                await self.prepare()
                process = self._process
                assert process is not None and process.stdin is not None
                process.stdin.write(GO)
                await process.stdin.drain()
                status = await process.wait()
            except (OSError, RuntimeError, TimeoutError) as error:
                log.warning(
                    "hand-off process failed to start; retrying", error=f"{type(error).__name__}: {error}"
                )
                if self._process is not None and self._process.returncode is None:
                    self._process.kill()
                    await self._process.wait()
            else:
                if self._stopping:
                    return
                log.warning("hand-off process ended; starting another", exit_status=status)
            await asyncio.sleep(RESTART_SECONDS)


def build(settings: Settings) -> tuple[Handoff, Resyncs]:
    """The child's parts: what the hand-off and the resync loop need of `Services.build`'s, and nothing
    else."""
    redis = connect(settings)
    keys = Keys(settings.redis_prefix)
    scripts = Scripts(redis)
    subscriptions = SubscriptionStore(
        redis, keys, UrlGuard(allow_private=settings.allow_private_urls), scripts=scripts
    )
    queue = DeliveryQueue(redis, keys, scripts)
    notices = Notices(redis, keys, announce_pushed=True)  # no worker here: every replica's is told
    intake = Intake(redis, queue, subscriptions, on_queued=lambda: None, notices=notices)
    resyncs = Resyncs(
        redis,
        keys,
        SnapshotStore(redis, keys, scripts),
        queue,
        subscriptions,
        settings,
        on_queued=lambda: None,
        notices=notices,
    )
    return Handoff(redis, keys, intake, queue, subscriptions, scripts, watch_stream=True), resyncs


async def serve_handoff() -> None:
    """The child's life: read the settings, build, say `ready`, wait for `go`, hand off until stdin closes
    (the serve process stopped or died) or a signal comes."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    settings = msgspec.json.decode(await stdin.readline(), type=Settings)
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=secrets_of(settings))
    handoff, resyncs = build(settings)
    collector.settle()  # as serve does (serve.py): what is built now lives as long as the process
    ended = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # sent to this process itself: stop as at EOF
        loop.add_signal_handler(signum, ended.set)
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    if await stdin.readline() == GO:
        handoff.start()
        resyncs.start_loop()
        log.info("hand-off process started")
        eof = asyncio.create_task(stdin.read())  # returns at EOF
        signalled = asyncio.create_task(ended.wait())
        await asyncio.wait({eof, signalled}, return_when=asyncio.FIRST_COMPLETED)
        eof.cancel()
        signalled.cancel()
        await resyncs.stop_loop()
        await handoff.stop()
        log.info("hand-off process stopped")
    await handoff.redis.aclose()


if __name__ == "__main__":
    asyncio.run(serve_handoff())
