"""A latency histogram cheap enough for the hot path: fixed buckets, plain integers.

prometheus-client's ``Histogram.observe`` takes a lock and walks its buckets in Python (~1 µs);
the feed observes once per socket read, so this one is a bisect and two integer additions, and
the metrics collector turns it into a ``HistogramMetricFamily`` at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

LATENCY_BUCKETS: Final = (
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
"""Upper bounds in seconds: 25 µs (a parse) to 1 s (a wedged loop)."""


class LatencyHistogram:
    """Counts of observations per bucket (``+Inf`` last) and their sum, in seconds."""

    __slots__ = ("_bounds_ns", "bounds", "counts", "sum_ns")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self._bounds_ns = [round(b * 1e9) for b in bounds]
        self.counts = [0] * (len(bounds) + 1)
        self.sum_ns = 0

    def observe_ns(self, ns: int) -> None:
        """One observation of ``ns`` nanoseconds (negative, from a clock step, counts as 0)."""
        ns = max(ns, 0)
        self.counts[bisect_left(self._bounds_ns, ns)] += 1
        self.sum_ns += ns

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs as Prometheus exposes them, ``+Inf`` last."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out
