"""A minimal WebSocket probe client for testing fake exchanges (not arbd's feed client).

Deliberately independent of ``arbd.feed``: a plugin author checks that a fake speaks its
protocol with this, and arbd's own driver is then tested against the fake. Websockets Sans-I/O
``ClientProtocol`` over a trio TCP stream::

    async with open_probe(fake.ws_url("/ws")) as probe:
        probe.send_text('{"op":"ping","ts":1}')
        assert await probe.receive() == '{"op":"pong","ts":1}'

A refused handshake raises :class:`HandshakeRefused` carrying the status and headers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

RECEIVE_SIZE: Final = 64 * 1024


class HandshakeRefused(Exception):
    """The server answered the opening handshake with an HTTP status other than 101."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status
        self.headers = headers
        self.body = body


class ProbeClosed(Exception):
    """The connection ended; ``code`` is the server's close code (None: no close frame)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed (code {code})")
        self.code = code


class ProbeClient:
    """One open probe connection. Use from a single task."""

    def __init__(self, stream: trio.abc.Stream, protocol: ClientProtocol) -> None:
        self.stream = stream
        self.protocol = protocol
        self.pongs: list[bytes] = []
        self.pings = 0
        """Server pings seen (each answered automatically unless ``answer_pings`` is False)."""
        self.answer_pings = True
        self._frames: deque[Frame] = deque()
        self._eof = False

    @property
    def done(self) -> bool:
        """The stream ended or the closing handshake finished."""
        return self._eof or self.protocol.state is State.CLOSED

    def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())

    def send_ping(self, payload: bytes = b"") -> None:
        self.protocol.send_ping(payload)

    async def flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data and not self._eof:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._eof = True

    async def receive(self) -> str | bytes:
        """The next data message (flushing anything queued first). Raises ProbeClosed."""
        while True:
            frame = await self.receive_frame()
            if frame.opcode is Opcode.TEXT:
                return bytes(frame.data).decode()
            if frame.opcode is Opcode.BINARY:
                return bytes(frame.data)

    async def receive_frame(self) -> Frame:
        """The next frame of any kind, control frames included (the fakes never fragment)."""
        await self.flush()
        while not self._frames:
            await self._read()
        return self._frames.popleft()

    async def close(self, code: int = 1000) -> None:
        """Closing handshake, bounded: waits up to 2 s for the server's side of it."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code)
            await self.flush()
            with trio.move_on_after(2):
                while not self.done:
                    await self._read()

    async def _read(self) -> None:
        if self.done:
            rcvd = self.protocol.close_rcvd
            raise ProbeClosed(rcvd.code if rcvd is not None else None)
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            # The server closed its side: the client closes the TCP connection (RFC 6455 7.1.1).
            self._eof = True
            self.protocol.receive_eof()
            await trio.aclose_forcefully(self.stream)
        self._take_events()
        if self.answer_pings:
            await self.flush()
        else:
            self.protocol.data_to_send()  # discard the automatic pongs

    def _take_events(self) -> None:
        for event in self.protocol.events_received():
            if not isinstance(event, Frame):
                continue
            if event.opcode is Opcode.PONG:
                self.pongs.append(bytes(event.data))
            elif event.opcode is Opcode.PING:
                self.pings += 1
            self._frames.append(event)


@asynccontextmanager
async def open_probe(
    url: str, *, max_size: int | None = 64 * 1024 * 1024, handshake_timeout: float = 5.0
) -> AsyncIterator[ProbeClient]:
    """Connect to ``url`` (plain ``ws://`` only) and yield an open :class:`ProbeClient`."""
    uri = parse_uri(url)
    with trio.fail_after(handshake_timeout):
        stream = await trio.open_tcp_stream(uri.host, uri.port)
    try:
        protocol = ClientProtocol(uri, max_size=max_size)
        protocol.send_request(protocol.connect())
        client = ProbeClient(stream, protocol)
        await client.flush()
        with trio.fail_after(handshake_timeout):
            while protocol.state is State.CONNECTING:
                data = await stream.receive_some(RECEIVE_SIZE)
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                exc = protocol.handshake_exc
                if isinstance(exc, InvalidStatus):
                    response = exc.response
                    headers = dict(response.headers.raw_items())
                    raise HandshakeRefused(response.status_code, headers, bytes(response.body))
                if exc is not None:
                    raise exc
                if not data and protocol.state is State.CONNECTING:
                    raise ProbeClosed(None)
        client._take_events()  # frames that came in the same read as the 101
        yield client
    finally:
        await trio.aclose_forcefully(stream)
