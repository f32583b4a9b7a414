"""The daemon's side of systemd's service protocol: readiness, status line, watchdog, stopping.

:func:`run_service_notifications` is one task in the daemon's nursery, started once every
component is up. It sends ``READY=1`` with a status line, keeps ``STATUS=`` current, and pings
``WATCHDOG=1`` every half ``WatchdogSec`` while

* the event loop turns (a wedged loop never reaches the ping: systemd restarts the service), and
* at least one exchange feed is live or recovering (every feed failed or stopped: the daemon
  serves nothing, and a restart is the best systemd can do for it).

It sends ``STOPPING=1`` as it is cancelled, which is the first thing shutdown does.
``RELOADING=1`` / ``READY=1`` around a reload are sent by :meth:`arbd.daemon.Daemon.reload`.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import trio

from arbd.sdnotify import Notifier, watchdog_interval
from arbd.status import DaemonStatus

if TYPE_CHECKING:
    from arbd.daemon import Daemon

STATUS_EVERY = 5.0
"""Seconds between checks of the status line (sent only when it changed)."""


def status_line(status: DaemonStatus) -> str:
    """One line for ``systemctl status``: each exchange's state, books, opportunities, clients."""
    exchanges = ", ".join(f"{ex.exchange} {ex.state}" for ex in status.exchanges) or "none"
    valid = sum(ex.books_valid for ex in status.exchanges)
    invalid = sum(ex.books_invalid for ex in status.exchanges)
    books = f"{valid} books valid" + (f", {invalid} not" if invalid else "")
    return (
        f"exchanges: {exchanges}; {books}; {status.opportunities_open} opportunities open; "
        f"{status.clients} local clients"
    )


def serving(status: DaemonStatus) -> bool:
    """True while at least one exchange feed is live or recovering (or none is configured: an
    idle daemon is still a healthy one)."""
    if not status.exchanges:
        return True
    return any(ex.state not in ("failed", "stopped") for ex in status.exchanges)


async def run_service_notifications(
    daemon: Daemon,
    notifier: Notifier,
    *,
    watchdog_every: float | None = None,
    status_every: float = STATUS_EVERY,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send READY now, then STATUS and WATCHDOG until cancelled, then STOPPING.
    ``watchdog_every`` defaults to half of ``$WATCHDOG_USEC`` (none: no pings)."""
    if watchdog_every is None:
        watchdog_every = watchdog_interval(os.environ, os.getpid())
    last_line = status_line(daemon.status())
    notifier.ready(last_line)
    task_status.started()
    tick = min(status_every, watchdog_every or math.inf)
    next_status = trio.current_time() + status_every
    try:
        while True:
            await trio.sleep(tick)
            status = daemon.status()
            if watchdog_every is not None and serving(status):
                notifier.watchdog()
            if trio.current_time() >= next_status:
                next_status = trio.current_time() + status_every
                line = status_line(status)
                if line != last_line:
                    last_line = line
                    notifier.status(line)
    finally:
        notifier.stopping()
