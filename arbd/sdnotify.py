"""systemd's readiness protocol (sd_notify), written here: one datagram per state change.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a Unix datagram socket (a leading ``@``
means the abstract namespace). The daemon sends newline-separated ``KEY=value`` assignments:

``READY=1``                         start-up finished (feeds started, servers listening)
``STATUS=<one line>``               shown by ``systemctl status``
``WATCHDOG=1``                      the service is alive (``WatchdogSec=``); a missed deadline
                                    makes systemd kill and restart it
``RELOADING=1`` + ``MONOTONIC_USEC``  a reload started (``READY=1`` ends it)
``STOPPING=1``                      shutdown started

Without ``$NOTIFY_SOCKET`` (not under systemd, or ``NotifyAccess=none``) every call is a no-op.
A send that fails (systemd gone, socket full) is logged once and never raised: notification is
advisory and must not take the daemon down.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("arbd.sdnotify")


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address ``$NOTIFY_SOCKET`` names, ready for ``connect``; None when unset."""
    raw = environ.get("NOTIFY_SOCKET", "")
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]
    return raw


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, as systemd advises;
    None when no watchdog is set up for this process (``$WATCHDOG_PID`` names another one)."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify datagrams to ``address`` (see :func:`notify_address`)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        return cls(notify_address(os.environ if environ is None else environ))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when it was delivered."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "sd_notify to %r failed: %s (further failures not logged)", self.address, exc
                )
            return False
        return True

    def ready(self, status: str = "") -> bool:
        if status:
            return self.send(READY="1", STATUS=_one_line(status))
        return self.send(READY="1")

    def status(self, text: str) -> bool:
        return self.send(STATUS=_one_line(text))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def reloading(self) -> bool:
        # systemd (since v253, Type=notify-reload) wants the monotonic time with RELOADING=1
        # to tell one reload from the next; older versions ignore the extra field.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING="1", MONOTONIC_USEC=str(usec))

    def stopping(self) -> bool:
        return self.send(STOPPING="1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _one_line(text: str) -> str:
    return " ".join(text.split())
