"""The little HTTP/1.1 the fake exchange servers speak: parse a request head, build a response.

Pure and synchronous. Only what a fake needs: request line and headers (no request bodies beyond
a ``Content-Length`` the caller reads and discards, no chunked uploads), and responses with a
``Content-Length`` so clients can keep the connection alive.
"""

from __future__ import annotations

import http
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlsplit

MAX_HEAD_BYTES: Final = 64 * 1024
"""A request head larger than this is refused with 431 and the connection closed."""

HEAD_END: Final = b"\r\n\r\n"


class BadRequestError(ValueError):
    """The bytes are not an HTTP/1.x request head this server understands."""


@dataclass
class RequestHead:
    """One parsed request line plus headers (names lower-cased; the last value wins)."""

    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; a repeated name keeps its first value."""
        query: dict[str, str] = {}
        for name, value in parse_qsl(urlsplit(self.target).query, keep_blank_values=True):
            query.setdefault(name, value)
        return query

    @property
    def is_websocket(self) -> bool:
        """True for an ``Upgrade: websocket`` request (the WebSocket opening handshake)."""
        upgrade = self.headers.get("upgrade", "")
        return any(p.strip().lower() == "websocket" for p in upgrade.split(","))

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def content_length(self) -> int:
        raw = self.headers.get("content-length", "0").strip() or "0"
        if not raw.isdigit():
            raise BadRequestError(f"invalid Content-Length {raw!r}")
        return int(raw)


def split_head(buffer: bytes | bytearray) -> tuple[bytes, bytes] | None:
    """``(head, rest)`` once ``buffer`` holds a whole head (``head`` includes the blank line)."""
    end = buffer.find(HEAD_END)
    if end < 0:
        return None
    end += len(HEAD_END)
    return bytes(buffer[:end]), bytes(buffer[end:])


def parse_head(head: bytes) -> RequestHead:
    """Parse a request head as returned by :func:`split_head`. Raises :class:`BadRequestError`."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequestError(str(exc)) from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequestError(f"invalid request line {lines[0]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequestError(f"invalid header line {line!r}")
        headers[name.lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequestError("chunked request bodies are not supported")
    return RequestHead(method=method, target=target, version=version, headers=headers)


def build_response(status: int, headers: dict[str, str], body: bytes, *, keep_alive: bool) -> bytes:
    """Serialize a response with Content-Length (and a JSON Content-Type unless given)."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    names = {name.lower() for name in headers}
    if "content-type" not in names:
        lines.append("Content-Type: application/json")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: " + ("keep-alive" if keep_alive else "close"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def format_retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds when integral, else decimal (fakes use fractions so
    tests with virtual clocks stay short; arbd's client accepts both)."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
