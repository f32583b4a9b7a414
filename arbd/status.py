"""What ``arbctl status`` (and the control channel's ``status`` request) reports about a daemon.

Plain msgspec structs so the control channel sends them as JSON and ``arbctl`` decodes them back
into the same types. :meth:`arbd.daemon.Daemon.status` builds a :class:`DaemonStatus` from the
feeds' counters, the hub's market state and the arbitrage engine; nothing here does I/O.
"""

from __future__ import annotations

from typing import Literal

import msgspec

ExchangeState = Literal["starting", "live", "degraded", "down", "failed", "stopped"]
"""``live``: every connection live; ``degraded``: some connections live, or a subscription or
book is not; ``down``: no connection live (connecting, backing off); ``failed``: gave up
(bad config, attempts exhausted); ``stopped``: removed at runtime or shutting down."""


class ExchangeStatus(msgspec.Struct, kw_only=True, rename="camel"):
    """One exchange's feed, as ``arbctl status`` shows it in one table row."""

    exchange: str
    state: ExchangeState
    connections: int
    """Connections this exchange's feed currently supervises."""
    connections_live: int
    symbols: list[str]
    """The normalized symbols subscribed now (after runtime ``symbols add|remove``)."""
    messages: int
    """Frames received since start, over every connection (reconnects included)."""
    messages_per_s: float
    """Frames per second over the last few seconds."""
    last_message_age: float | None
    """Seconds since the last frame on any connection; ``None`` before the first."""
    reconnects: int
    books_valid: int
    books_invalid: int
    """Books not valid right now (invalid or resyncing)."""
    error: str = ""
    """Why the exchange is ``failed``, else empty."""


class DaemonStatus(msgspec.Struct, kw_only=True, rename="camel"):
    """The whole daemon at one instant."""

    version: str
    pid: int
    started_at: float
    """Wall-clock start time, seconds since the epoch."""
    uptime: float
    """Seconds since start (monotonic)."""
    exchanges: list[ExchangeStatus]
    clients: int
    """Local consumers attached to the hub: WebSocket clients and ``arbctl subscribe`` streams."""
    opportunities_open: int
    config_path: str = ""
    """The config file ``reload`` re-reads; empty when started without one."""
