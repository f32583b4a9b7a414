"""Per-exchange counters summed over every connection a feed had (pure)."""

from __future__ import annotations

from types import SimpleNamespace

from arbd.exchange.adapter import SessionStats
from arbd.feed.connection import ConnectionStats
from arbd.feed.counters import RATE_SAMPLES, FeedCounters


def connection(frames: int = 0, last_ns: int = 0, resyncs: int = 0) -> SimpleNamespace:
    """What the counters read of a connection: its stats and its session's stats."""
    stats = ConnectionStats()
    stats.frames = frames
    stats.bytes = frames * 100
    stats.last_frame_ns = last_ns
    return SimpleNamespace(
        stats=stats, session=SimpleNamespace(stats=SessionStats(book_resyncs=resyncs))
    )


def test_totals_survive_connections_ending():
    counters = FeedCounters()
    first = connection(frames=10, last_ns=5, resyncs=1)
    counters.attach(first)
    assert (counters.frames, counters.bytes, counters.last_frame_ns) == (10, 1_000, 5)
    first.stats.frames += 5  # the hot path writes the connection's own counter
    assert counters.frames == 15
    counters.detach(first)
    counters.detach(first)  # once only
    second = connection(frames=3, last_ns=4, resyncs=2)
    counters.attach(second)
    # Monotonic over reconnects: the ended connection's counts are kept.
    assert counters.frames == 18
    assert counters.last_frame_ns == 5
    assert counters.session_totals().book_resyncs == 3
    second.stats.last_frame_ns = 9
    assert counters.last_frame_ns == 9


def test_nothing_received_yet():
    counters = FeedCounters()
    assert (counters.frames, counters.last_frame_ns, counters.rate(10.0)) == (0, 0, 0.0)
    counters.reconnects["peer_closed"] = 2
    counters.reconnects["stale"] = 1
    assert counters.reconnects_total == 3


def test_rate_over_the_last_samples():
    counters = FeedCounters()
    conn = connection()
    counters.attach(conn)
    oldest = 10 - RATE_SAMPLES  # the first second whose sample is still kept at t = 10
    for second in range(10):
        counters.sample(float(second))
        conn.stats.frames += 1_000 if second < oldest else 10
    # Only the last few samples count: the busy first seconds are forgotten.
    assert counters.rate(10.0) == 10.0
    fresh = FeedCounters()
    fresh.sample(3.0)
    assert fresh.rate(3.0) == 0.0  # no time elapsed since the only sample
