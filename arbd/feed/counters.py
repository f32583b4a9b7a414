"""Cumulative counters of one exchange feed, over every connection it ever had.

Connections are recreated on every reconnect, rotation and runtime change, and each counts into
its own :class:`arbd.feed.connection.ConnectionStats` and session ``SessionStats`` (plain ints
written on the hot path). :class:`FeedCounters` adds nothing to that path: it keeps the
connections running now and the totals of those that ended, and sums them when read. That is
what ``Daemon.status()`` shows and what a Prometheus collector reads at scrape time; both must
be monotonic across reconnects, so a connection's counts are folded into the totals when it
ends instead of being lost with it.

Pure: no trio, no clock. Whoever samples passes the time in.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import msgspec

from arbd.exchange.adapter import SessionStats
from arbd.histogram import LatencyHistogram

if TYPE_CHECKING:
    from arbd.feed.connection import Connection

RATE_SAMPLES = 6
"""Samples kept for the message rate: with one sample a second, a rate over the last ~5 s."""

_CONNECTION_FIELDS = ("frames", "bytes", "decode_errors", "resubscribes")
_SESSION_FIELDS = tuple(f.name for f in msgspec.structs.fields(SessionStats))


class FeedCounters:
    """One exchange's counters. The supervisors :meth:`attach` each connection while it runs
    and :meth:`detach` it when it ends; readers use the properties."""

    def __init__(self) -> None:
        self.reconnects: dict[str, int] = {}
        """Failed connections by reason (``peer_closed``, ``heartbeat_timeout``, ...)."""
        self.connections_opened = 0
        self._running: list[Connection] = []
        self._ended = dict.fromkeys(_CONNECTION_FIELDS, 0)
        self._ended_session = SessionStats()
        self._ended_last_frame_ns = 0
        self._samples: deque[tuple[float, int]] = deque(maxlen=RATE_SAMPLES)
        # Written by the connections directly (they outlive none of these):
        self.events_by_type: dict[type, int] = {}
        """Normalized events made, by event type (``Quote``, ``Trade``, ...)."""
        self.ingest_latency = LatencyHistogram()
        """Per socket read: frame receipt to its events normalized."""
        self.publish_latency = LatencyHistogram()
        """Per socket read: frame receipt to its events handed to every local subscriber."""

    # -- bookkeeping (the feed layer) ---------------------------------------------------------

    def attach(self, connection: Connection) -> None:
        self._running.append(connection)

    def detach(self, connection: Connection) -> None:
        """Fold an ended connection's counts into the totals (once; later calls do nothing)."""
        if connection not in self._running:
            return
        self._running.remove(connection)
        stats = connection.stats
        for name in _CONNECTION_FIELDS:
            self._ended[name] += getattr(stats, name)
        self._ended_last_frame_ns = max(self._ended_last_frame_ns, stats.last_frame_ns)
        session = connection.session.stats
        ended = self._ended_session
        for name in _SESSION_FIELDS:
            setattr(ended, name, getattr(ended, name) + getattr(session, name))

    # -- reading ------------------------------------------------------------------------------

    def _total(self, name: str) -> int:
        return self._ended[name] + sum(int(getattr(c.stats, name)) for c in self._running)

    @property
    def frames(self) -> int:
        """WebSocket messages received since the feed started, reconnects included."""
        return self._total("frames")

    @property
    def bytes(self) -> int:
        return self._total("bytes")

    @property
    def decode_errors(self) -> int:
        return self._total("decode_errors")

    @property
    def resubscribes(self) -> int:
        return self._total("resubscribes")

    @property
    def last_frame_ns(self) -> int:
        """Wall-clock ns of the newest frame on any connection; 0 before the first."""
        running = (c.stats.last_frame_ns for c in self._running)
        return max(self._ended_last_frame_ns, *running, 0)

    @property
    def reconnects_total(self) -> int:
        return sum(self.reconnects.values())

    def session_totals(self) -> SessionStats:
        """The adapters' own counters (book resyncs, checksum failures, ...) summed."""
        total = msgspec.structs.replace(self._ended_session)
        for connection in self._running:
            stats = connection.session.stats
            for name in _SESSION_FIELDS:
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        return total

    # -- message rate -------------------------------------------------------------------------

    def sample(self, now: float) -> None:
        """Record the frame count at monotonic time ``now`` (about once a second)."""
        self._samples.append((now, self.frames))

    def rate(self, now: float) -> float:
        """Frames per second between the oldest kept sample and ``now`` (0.0 without one)."""
        if not self._samples:
            return 0.0
        then, frames = self._samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return 0.0
        return (self.frames - frames) / elapsed
