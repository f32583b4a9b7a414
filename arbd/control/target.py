"""What the control server needs from the daemon: :class:`ControlTarget`.

:class:`arbd.daemon.Daemon` implements it; tests use a small fake with a real :class:`Hub`.
Every method is called from the daemon's trio run (the control server is a task in it), so
implementations need no locking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from arbd.hub import Hub
from arbd.model import Arbitrage
from arbd.status import DaemonStatus


class ControlTarget(Protocol):
    hub: Hub
    """Subscribe streams attach here (``hub.subscribe`` with a snapshot)."""

    def status(self) -> DaemonStatus:
        """The whole daemon now."""
        ...

    def markets(self) -> dict[str, list[str]]:
        """Exchange id -> the symbols subscribed now."""
        ...

    def opportunities(self, include_closed: bool = False) -> list[Arbitrage]:
        """Open opportunities (the latest ``open``/``update`` event of each); with
        ``include_closed`` also the recently closed ones (their ``close`` events, from a bounded
        history), newest last."""
        ...

    async def add_symbols(self, exchange: str, symbols: Sequence[str]) -> list[str]:
        """Subscribe ``symbols`` on ``exchange`` now; returns those newly subscribed (already
        subscribed ones are skipped). Raises ``ConfigError`` for an unknown exchange or symbol."""
        ...

    async def remove_symbols(self, exchange: str, symbols: Sequence[str]) -> list[str]:
        """Unsubscribe ``symbols``; returns those removed. Raises ``ConfigError`` for an unknown
        exchange or a symbol that is not subscribed."""
        ...

    async def reload(self) -> list[str]:
        """Re-read the config file and apply the difference; one line per change made. Raises
        ``ConfigError`` (the running config is kept) when the file is invalid or the daemon was
        started without one."""
        ...

    def request_stop(self) -> None:
        """Begin a graceful shutdown of the whole daemon."""
        ...
