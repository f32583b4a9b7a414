"""Time as the feed layer sees it: trio's (possibly virtual) monotonic clock plus a wall clock
derived from it, so tests with ``trio.testing.MockClock`` move both together."""

from __future__ import annotations

import time

import trio


class TrioClock:
    """``now()`` is ``trio.current_time()``; ``wall_ns()`` is the epoch time that corresponds.

    Create inside ``trio.run``. The offset is fixed at creation, so wall time never jumps
    backwards with NTP adjustments during a run; it follows the run's clock instead.
    """

    def __init__(self, epoch_ns: int | None = None) -> None:
        start = trio.current_time()
        base = time.time_ns() if epoch_ns is None else epoch_ns
        self._offset_ns = base - int(start * 1e9)

    def now(self) -> float:
        return trio.current_time()

    def wall_ns(self) -> int:
        # Microsecond resolution: what the capture format stores, so a replay reproduces every
        # receive time exactly; finer digits would be noise from the float clock anyway.
        return (self._offset_ns + int(trio.current_time() * 1e9)) // 1_000 * 1_000
