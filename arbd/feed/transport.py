"""WebSocket client transport: websockets' Sans-I/O ``ClientProtocol`` over a trio stream.

This is the only module that imports ``websockets`` for the client side, so the library can be
swapped in one place. It does no per-message awaiting: ``feed(data)`` turns one socket read into
the list of complete messages it contained, synchronously; the caller awaits the next read.

Library exceptions are translated here into ``arbd.errors`` (``ConnectFailed``, ``RateLimited``,
``PeerClosed``) so callers handle one tree.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Final

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState, InvalidStatus, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

from arbd.errors import ConnectFailed, PeerClosed, RateLimited

Opener = Callable[[str, int, bool], Awaitable[trio.abc.Stream]]
"""open(host, port, tls) -> stream. Injected so tests can hand in memory streams or test CAs."""

RECEIVE_SIZE: Final = 256 * 1024
_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_PING, _PONG, _CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE
USER_AGENT: Final = "arbd"


def make_tcp_opener(ssl_context: ssl.SSLContext | None = None) -> Opener:
    """Opener for real networks: TCP, plus TLS verified against the system trust store."""

    async def open_stream(host: str, port: int, tls: bool) -> trio.abc.Stream:
        if tls:
            context = ssl_context or ssl.create_default_context()
            return await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context)
        return await trio.open_tcp_stream(host, port)

    return open_stream


def describe(exc: BaseException) -> str:
    """A one-line reason for a stream error; trio wraps TLS failures (certificate problems)
    in an empty BrokenResourceError whose cause says what happened."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if not text and cause is not None:
        return describe(cause)
    return text or type(exc).__name__


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time  # noqa: PLC0415 - only for the rare HTTP-date form

    return max(0.0, when.timestamp() - time.time())


def _rejection(response: Response, url: str) -> Exception:
    status = response.status_code
    if status in (418, 429):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(f"{url}: HTTP {status} on handshake", retry_after)
    return ConnectFailed(f"{url}: handshake rejected with HTTP {status}")


class WebSocketClient:
    """One open client connection. Create with :func:`connect`.

    Usage, from exactly one reader task and one sender task::

        messages = client.feed(await client.stream.receive_some(RECEIVE_SIZE))
        client.send_text(frame); await client.flush()
    """

    def __init__(self, stream: trio.abc.Stream, protocol: ClientProtocol, url: str) -> None:
        self.stream = stream
        self.protocol = protocol
        self.url = url
        self.pongs: list[bytes] = []
        """Payloads of pong frames received since the caller last cleared this list."""
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._pending: list[Frame] = []
        self._peer_closed = False
        self._close_reason = ""
        self.needs_flush = False
        """Set when a received ping or close left a reply waiting in the protocol's output."""

    # -- receiving ------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray) -> list[tuple[bytes, bool]]:
        """Parse one socket read; return complete messages as (payload, is_text).

        Pings are answered by the protocol (the pong waits in ``protocol.data_to_send()``);
        pongs are collected in ``self.pongs``. An empty ``data`` means EOF.
        Raises ``PeerClosed`` when the peer closed or broke the protocol; messages that arrived
        before the close in the same read are returned first by the previous call.
        """
        protocol = self.protocol
        if self._peer_closed:
            raise PeerClosed(self._close_text())
        if data:
            protocol.receive_data(data)
        elif protocol.state is not State.CLOSED:
            protocol.receive_eof()
        frames = (
            self._pending + protocol.events_received()
            if self._pending
            else protocol.events_received()
        )
        self._pending = []
        messages: list[tuple[bytes, bool]] = []
        append = messages.append
        for frame in frames:
            if not isinstance(frame, Frame):  # pragma: no cover - only a Response, before OPEN
                continue
            opcode = frame.opcode
            if frame.fin and not self._fragments:
                if opcode is _TEXT:
                    append((frame.data, True))  # type: ignore[arg-type]
                    continue
                if opcode is _BINARY:
                    append((frame.data, False))  # type: ignore[arg-type]
                    continue
            if opcode is _PONG:
                self.pongs.append(bytes(frame.data))
            elif opcode is _PING or opcode is _CLOSE:
                self.needs_flush = True
            elif opcode is _TEXT or opcode is _BINARY:
                self._fragments = [bytes(frame.data)]
                self._fragment_text = opcode is _TEXT
            elif opcode is _CONT:
                self._fragments.append(bytes(frame.data))
                if frame.fin:
                    append((b"".join(self._fragments), self._fragment_text))
                    self._fragments = []
        if protocol.parser_exc is not None:
            self._peer_closed = True
            self._close_reason = f"{self.url}: protocol error: {protocol.parser_exc}"
        elif protocol.state is State.CLOSED or protocol.close_rcvd is not None or not data:
            self._peer_closed = True
        if self._peer_closed and not messages:
            raise PeerClosed(self._close_text())
        # Messages that arrived before a close are delivered; the next call reports the close.
        return messages

    def _close_text(self) -> str:
        if self._close_reason:
            return self._close_reason
        rcvd = self.protocol.close_rcvd
        if rcvd is not None:
            reason = f" {rcvd.reason}" if rcvd.reason else ""
            return f"{self.url}: closed by peer with code {rcvd.code}{reason}"
        return f"{self.url}: connection lost"

    @property
    def closed(self) -> bool:
        return self.protocol.state is State.CLOSED or self.protocol.close_rcvd is not None

    # -- sending ------------------------------------------------------------------------------

    def send_text(self, frame: str | bytes) -> None:
        """Queue a frame: ``str`` as a text frame, ``bytes`` as a binary frame.

        Raises ``PeerClosed`` once the connection is closing (the peer's close frame may be
        parsed while the session still has frames to send: found by the soak, where the
        library's ``InvalidState`` escaped the sender and ended the whole daemon)."""
        try:
            if isinstance(frame, str):
                self.protocol.send_text(frame.encode())
            else:
                self.protocol.send_binary(frame)
        except InvalidState:
            raise PeerClosed(self._close_text()) from None

    def send_ping(self, payload: bytes) -> None:
        """Queue a ping (allowed while closing). Raises ``PeerClosed`` once closed."""
        try:
            self.protocol.send_ping(payload)
        except InvalidState:
            raise PeerClosed(self._close_text()) from None

    def pending_output(self) -> bytes:
        """Everything the protocol wants written (pongs, queued frames, close), as one buffer."""
        chunks = self.protocol.data_to_send()
        return b"".join(chunks) if chunks else b""

    async def flush(self) -> None:
        data = self.pending_output()
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise PeerClosed(f"{self.url}: send failed: {describe(exc)}") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely (close frame, then the stream); never raises."""
        try:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(code, reason)
            # Also flushes a close frame the protocol queued itself when it failed the
            # connection (1009 message too big, 1002 protocol error), so the peer learns why.
            with trio.move_on_after(1.0):
                await self.flush()
        except PeerClosed:
            pass
        finally:
            await trio.aclose_forcefully(self.stream)


async def connect(
    url: str,
    opener: Opener,
    *,
    max_size: int | None,
    connect_timeout: float,
    headers: dict[str, str] | None = None,
) -> WebSocketClient:
    """Open the stream, do the WebSocket handshake, return an open client.

    Raises ``ConnectFailed`` (bad URL, network, timeout, rejected handshake) or ``RateLimited``
    (HTTP 429/418, with the Retry-After delay when the server gave one).
    """
    try:
        uri: WebSocketURI = parse_uri(url)
    except InvalidURI as exc:
        raise ConnectFailed(f"{url}: invalid WebSocket URL: {exc}") from None
    with trio.move_on_after(connect_timeout) as scope:
        try:
            stream = await opener(uri.host, uri.port, uri.secure)
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise ConnectFailed(f"{url}: cannot connect: {describe(exc)}") from None
        try:
            return await _handshake(stream, uri, url, max_size, headers or {})
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    assert scope.cancelled_caught
    raise ConnectFailed(f"{url}: connect timed out after {connect_timeout:g} s")


async def _handshake(
    stream: trio.abc.Stream,
    uri: WebSocketURI,
    url: str,
    max_size: int | None,
    headers: dict[str, str],
) -> WebSocketClient:
    protocol = ClientProtocol(uri, max_size=max_size)
    request = protocol.connect()
    request.headers["User-Agent"] = USER_AGENT
    for name, value in headers.items():
        request.headers[name] = value
    protocol.send_request(request)
    client = WebSocketClient(stream, protocol, url)
    try:
        await client.flush()
    except PeerClosed as exc:
        raise ConnectFailed(str(exc)) from None
    while protocol.state is State.CONNECTING:
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"{url}: handshake failed: {describe(exc)}") from None
        if not data:
            protocol.receive_eof()
        else:
            protocol.receive_data(data)
        events = protocol.events_received()
        if protocol.handshake_exc is not None:
            failure = protocol.handshake_exc
            if isinstance(failure, InvalidStatus):
                raise _rejection(failure.response, url) from None
            raise ConnectFailed(f"{url}: handshake failed: {failure}") from None
        if not data and protocol.state is State.CONNECTING:
            raise ConnectFailed(f"{url}: connection closed during handshake")
        # Frames that arrived in the same read as the response are kept for the first feed().
        client._pending = [e for e in events if isinstance(e, Frame)]
    return client
