"""Recording finished attempts in batches: one script call per subscription and batch, not per delivery.

An attempt that has its answer hands its `Completion` here. A success is handed in with a callback
(`submit`): its attempt ends there and the callback runs once the outcome is written, so the next
attempt need not wait for the write. Any other outcome waits for the write (`complete`): what follows
it (a subscription disabled, the outcome logged) needs the answer. Either way the delivery's lease stays
taken until the write, and the worker counts it against its claims until then, so every per-delivery
guarantee holds as before: an ordered lane's head moves on only once its delivery is recorded, and a
process killed before the write leaves the lease to run out, the delivery to be claimed again
(at-least-once).

A worker may also ask each write to claim more work for it (`claim`, `claimed`), leased to that worker in
the same script call: an ordered lane's next head, so one school's events follow each other without a
round of claims between them; for an unordered subscription, as many of its due deliveries as the worker
says (as many as the write finishes, at most: the worker's `_claim_next`). A write that made a lane's next
head due instead tells it so (`due`).

Each subscription has at most one write in flight. Completions that arrive while it runs wait for it
and then go together in the next one (at most `max_batch`), so a busy process writes in batches as
large as its traffic makes them, and a quiet one writes each completion at once (no timer, no added
latency). A write takes one Redis round trip, far inside the lease margin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from bridge.delivery.models import Delivery, Subscription
from bridge.delivery.queue import Claim, Completion, DeliveryQueue

log = structlog.get_logger(__name__)

MAX_BATCH = 256
Result = tuple[bool, float | None]
"""(lease still held, the subscription failing since)."""
Written = Callable[[Result | Exception], None]
"""Told, once the write is done, its result for one completion, or what the write raised."""


Claimer = Callable[[Subscription, int], Claim | None]
"""Asked before each write, with how many completions it writes: the claim it makes, or None."""
Claimed = Callable[[Subscription, list[Delivery], str], None]
"""Told the deliveries a write claimed, with the claim's token."""


class Completer:
    def __init__(
        self, queue: DeliveryQueue, log_cutoff: Callable[[], float], *, max_batch: int = MAX_BATCH
    ) -> None:
        self.queue = queue
        self.log_cutoff = log_cutoff  # attempts older than this leave the attempt log
        self.max_batch = max_batch
        self.claim: Claimer | None = None
        self.claimed: Claimed | None = None
        self.due: Callable[[], None] | None = None
        """Told when a write made a lane's next head due rather than claimed it."""
        self._waiting: dict[str, list[tuple[Completion, Written]]] = {}
        self._writing: dict[str, asyncio.Task[None]] = {}

    async def complete(self, completion: Completion) -> Result:
        """Record `completion` with whatever else of its subscription is ready; returns when written.

        Raises what the write raised (a Redis error: the lease runs out and the delivery is tried again)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()

        def written(result: Result | Exception) -> None:
            if future.done():  # its attempt was cancelled by `stop()` meanwhile
                return
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

        self.submit(completion, written)
        return await future

    def submit(self, completion: Completion, written: Written) -> None:
        """Record `completion` as `complete` does, without waiting: `written` is called when it is written
        (or with what the write raised). `drain` waits for it."""
        sid = completion.subscription.id
        waiting = self._waiting.get(sid)
        if waiting is None:
            self._waiting[sid] = [(completion, written)]
        else:
            waiting.append((completion, written))
        if sid not in self._writing:
            self._start(sid)

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

    async def _write(self, sid: str, batch: list[tuple[Completion, Written]]) -> None:
        # Yield once first: attempts that finish in the same turn of the loop join this batch.
        await asyncio.sleep(0)
        more = self._waiting.pop(sid, [])
        room = self.max_batch - len(batch)
        batch += more[:room]
        if more[room:]:
            self._waiting[sid] = more[room:]
        outcomes: list[Result | Exception]
        subscription = batch[0][0].subscription
        claim = self.claim(subscription, len(batch)) if self.claim is not None else None
        claimed: list[Delivery] = []
        try:
            completed = await self.queue.complete_batch(
                sid, [completion for completion, _ in batch], log_cutoff=self.log_cutoff(), claim=claim
            )
            outcomes, claimed = list(completed.results), completed.claimed
            if completed.made_due and self.due is not None:
                self.due()
        except Exception as error:
            outcomes = [error] * len(batch)
        if claimed and claim is not None and self.claimed is not None:
            self.claimed(subscription, claimed, claim.token)
        for (_, written), outcome in zip(batch, outcomes, strict=True):
            try:
                written(outcome)
            except Exception:  # one caller's failure must not keep the others from their answer
                log.exception("recording a delivery's outcome failed", subscription=sid)
