"""What the I/O layer reports to a capture recorder (see ``arbd.capture`` for the file format).

The driver holds an optional ``Recorder``; with none set, recording costs one ``is None`` check
per socket read. Times are local wall-clock ns; the capture writer converts them to seconds.
"""

from __future__ import annotations

from typing import Protocol


class Recorder(Protocol):
    def connect(self, conn: str, ts_ns: int, url: str, subscriptions: list[list[str]]) -> None:
        """A connection was opened to ``url`` carrying ``[[channel, symbol], ...]``."""

    def send(self, conn: str, ts_ns: int, data: str | bytes) -> None:
        """A frame was sent (``str`` = text frame, ``bytes`` = binary frame)."""

    def recv(self, conn: str, ts_ns: int, data: bytes, is_text: bool) -> None:
        """A whole message was received."""

    def http(self, conn: str, ts_ns: int, url: str, status: int, body: bytes) -> None:
        """A REST response arrived (``conn`` is "" for requests not tied to a connection)."""

    def disconnect(self, conn: str, ts_ns: int, reason: str) -> None:
        """The connection ended (by us or by the peer)."""
