"""Recording finished attempts in batches: one script call per subscription and batch, not per delivery.

An attempt that has its answer hands its `Completion` here and waits for it to be written; its slot in
the worker (and its lease) stays taken until then, so every per-delivery guarantee holds as before:
an ordered lane's head moves on only once its delivery is recorded, and a process killed before the
write leaves the lease to run out, the delivery to be claimed again (at-least-once).

Each subscription has at most one write in flight. Completions that arrive while it runs wait for it
and then go together in the next one (at most `max_batch`), so a busy process writes in batches as
large as its traffic makes them, and a quiet one writes each completion at once (no timer, no added
latency). A write takes one Redis round trip, far inside the lease margin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bridge.delivery.queue import Completion, DeliveryQueue

MAX_BATCH = 256
Result = tuple[bool, float | None]
"""(lease still held, the subscription failing since)."""


class Completer:
    def __init__(
        self, queue: DeliveryQueue, log_cutoff: Callable[[], float], *, max_batch: int = MAX_BATCH
    ) -> None:
        self.queue = queue
        self.log_cutoff = log_cutoff  # attempts older than this leave the attempt log
        self.max_batch = max_batch
        self._waiting: dict[str, list[tuple[Completion, asyncio.Future[Result]]]] = {}
        self._writing: dict[str, asyncio.Task[None]] = {}

    async def complete(self, completion: Completion) -> Result:
        """Record `completion` with whatever else of its subscription is ready; returns when written.

        Raises what the write raised (a Redis error: the lease runs out and the delivery is tried again)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        sid = completion.subscription.id
        self._waiting.setdefault(sid, []).append((completion, future))
        if sid not in self._writing:
            self._start(sid)
        return await future

    async def drain(self) -> None:
        """Wait until every completion handed in so far is written."""
        while self._writing:
            await asyncio.gather(*self._writing.values(), return_exceptions=True)

    def _start(self, sid: str) -> None:
        waiting = self._waiting.pop(sid, [])
        if len(waiting) > self.max_batch:
            self._waiting[sid] = waiting[self.max_batch :]
            waiting = waiting[: self.max_batch]
        task = asyncio.create_task(self._write(sid, waiting), name=f"delivery-complete:{sid}")
        self._writing[sid] = task
        task.add_done_callback(lambda _: self._next(sid))

    def _next(self, sid: str) -> None:
        del self._writing[sid]
        if self._waiting.get(sid):
            self._start(sid)

    async def _write(self, sid: str, batch: list[tuple[Completion, asyncio.Future[Result]]]) -> None:
        # Yield once first: attempts that finish in the same turn of the loop join this batch.
        await asyncio.sleep(0)
        more = self._waiting.pop(sid, [])
        room = self.max_batch - len(batch)
        batch += more[:room]
        if more[room:]:
            self._waiting[sid] = more[room:]
        try:
            results = await self.queue.complete_batch(
                sid, [completion for completion, _ in batch], log_cutoff=self.log_cutoff()
            )
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its attempt may have been cancelled by `stop()` meanwhile
                future.set_result(result)
