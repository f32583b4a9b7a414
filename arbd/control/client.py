"""A small synchronous control-channel client. Standard library only (``socket`` and ``json``):
``arbctl`` imports it on every run, and neither trio nor msgspec is needed to ask one question.

::

    with connect(candidate_paths(...)) as client:
        status = client.call({"cmd": "status"})          # the reply's ``result``
        for event in client.stream({"cmd": "subscribe"}):  # dicts, until the daemon closes
            ...

Replies are plain dicts in the wire schema (camelCase keys) of ``docs/protocol.md``.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from arbd.control.paths import SocketLocation
from arbd.errors import ControlError, DaemonNotRunning

REPLY_TIMEOUT = 30.0
"""Seconds to wait for a reply (``symbols add`` may wait for an exchange's instrument list)."""

_NOT_THERE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR)


class ControlClient:
    """One connection. Use :func:`connect` to find the daemon; close it (or use ``with``)."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path
        self._buffer = b""
        self._next_id = 1

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, request: dict[str, Any]) -> Any:
        """Send one request (an ``id`` is added when missing); returns its id."""
        if "id" not in request:
            request = {**request, "id": self._next_id}
            self._next_id += 1
        try:
            self.sock.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        except OSError as exc:
            raise ControlError(f"lost the connection to arbd: {exc.strerror}") from None
        return request["id"]

    def read_line(self, timeout: float | None = REPLY_TIMEOUT) -> bytes | None:
        """The next line as sent (without its newline); ``None`` when ``timeout`` passed
        first. Raises ``ControlError`` when the daemon closes the connection."""
        while b"\n" not in self._buffer:
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as exc:
                raise ControlError(f"lost the connection to arbd: {exc.strerror}") from None
            if not data:
                raise ControlError("arbd closed the connection")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def has_line(self) -> bool:
        """Whether a complete line is already buffered (``read_line`` will not block)."""
        return b"\n" in self._buffer

    def read(self, timeout: float | None = REPLY_TIMEOUT) -> dict[str, Any] | None:
        """The next line decoded; ``None`` when ``timeout`` passed first."""
        line = self.read_line(timeout)
        if line is None:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            raise ControlError(f"arbd sent a line that is not JSON: {line[:80]!r}") from None
        if not isinstance(message, dict):
            raise ControlError(f"arbd sent a line that is not an object: {line[:80]!r}")
        return message

    def call(self, request: dict[str, Any], timeout: float | None = REPLY_TIMEOUT) -> Any:
        """Send ``request`` and return its reply's ``result``; an error reply raises
        ``ControlError`` with the reply's code and message."""
        self.send(request)
        reply = self.read(timeout)
        if reply is None:
            raise ControlError(f"arbd did not answer within {timeout:g} s", code="timeout")
        return result_of(reply)

    def stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Send a ``subscribe`` request and yield every event line after its reply."""
        self.call(request)
        while True:
            message = self.read(timeout=None)
            if message is not None:
                if message.get("ok") is False:
                    result_of(message)  # raises: e.g. the stream overflowed
                yield message


def result_of(reply: dict[str, Any]) -> Any:
    """A reply's ``result``, or ``ControlError(code, message)`` for an error reply."""
    if reply.get("ok") is True:
        return reply.get("result")
    error = reply.get("error")
    if reply.get("ok") is False and isinstance(error, dict):
        raise ControlError(str(error.get("message", "")), code=str(error.get("code", "")))
    raise ControlError(f"arbd sent something that is not a reply: {str(reply)[:80]}")


def connect(candidates: Sequence[SocketLocation], timeout: float = 5.0) -> ControlClient:
    """Connect to the first candidate a daemon answers on.

    Raises ``DaemonNotRunning`` (naming every path tried) when none answers, and
    ``ControlError`` when a socket exists but cannot be used (permissions).
    """
    tried: list[str] = []
    for location in candidates:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(location.path)
        except TimeoutError:
            sock.close()
            raise ControlError(
                f"arbd at {location.path} did not accept the connection within {timeout:g} s"
            ) from None
        except OSError as exc:
            sock.close()
            if exc.errno in _NOT_THERE:
                state = "refused: a stale socket" if exc.errno == errno.ECONNREFUSED else "missing"
                tried.append(f"{location.path} ({location.source}: {state})")
                continue
            raise ControlError(
                f"cannot connect to arbd at {location.path}: {exc.strerror or exc}"
            ) from None
        return ControlClient(sock, location.path)
    looked = "; ".join(tried)
    raise DaemonNotRunning(
        f"arbd is not running (looked for its control socket at {looked})",
        tuple(loc.path for loc in candidates),
    )
