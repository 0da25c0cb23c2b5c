"""The garbage collector of a long-lived bridge process (`serve`, the hand-off process).

Most of what a delivery or a poll allocates dies young, freed by its reference count; the collector only
has to find cycles. Its default (a young-generation pass every 700 allocations of tracked objects) ran
every ten or so deliveries and took about 15 µs of each; at 10,000 it runs a hundred times less often
and takes about 1 µs (bench/RESULTS.md, section 12). Cyclic garbage then waits a little longer for its
pass: tens of kilobytes, not a growth.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Call once the process is built: what exists by then (modules, the app, its clients) lives as long
    as the process, so it is frozen out of the full passes; young passes come every `YOUNG_THRESHOLD`
    allocations."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
