"""One WebSocket connection of a fake exchange server: the handle tests and subclasses use.

Driven by :class:`arbd.testing.fake.FakeExchangeServer`; see that module for the life cycle.
Each connection runs two tasks: a reader (parse a socket read with the websockets Sans-I/O
``ServerProtocol``, hand frames to the server's hooks, flush the replies and automatic pongs)
and a writer (flush whatever other tasks queued with the synchronous send methods).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from arbd.testing.http import RequestHead

if TYPE_CHECKING:
    from arbd.testing.fake import FakeExchangeServer

RECEIVE_SIZE: Final = 64 * 1024
BROKEN: Final = (trio.BrokenResourceError, trio.ClosedResourceError)
"""What a trio stream raises once the peer or we closed it."""
_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_PING, _PONG, _CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE


@dataclass
class ConnectionFaults:
    """Per-connection overrides of :class:`Faults`; ``None`` means "as the server says"."""

    stall: bool | None = None
    ignore_pings: bool | None = None
    drop_after_messages: int | None = None


class WsProtocol(ServerProtocol):
    """ServerProtocol that can withhold its automatic pongs (the ``ignore_pings`` fault).

    The Sans-I/O protocol answers a ping by queueing a pong inside ``recv_frame``; ``send_frame``
    is the one place every outgoing frame passes, so that is where the pong is dropped. This
    server never sends unsolicited pongs, so every PONG seen here is an automatic answer.
    """

    def __init__(self, *, max_size: int) -> None:
        super().__init__(max_size=max_size)
        self.suppress_pongs: Callable[[], bool] = lambda: False

    def send_frame(self, frame: Frame) -> None:
        if frame.opcode is _PONG and self.suppress_pongs():
            return
        super().send_frame(frame)


class FakeConnection:
    """One accepted WebSocket connection, as the fake server sees it.

    Safe to call from any task of the same trio run: ``send_text``, ``send_bytes``,
    ``send_data``, ``send_ping``, ``close`` and ``drop`` are synchronous and never raise once
    the connection is gone (they return or do nothing); ``await flush()`` waits for the bytes.
    """

    def __init__(
        self,
        server: FakeExchangeServer,
        stream: trio.abc.Stream,
        protocol: WsProtocol,
        request: RequestHead,
        number: int,
    ) -> None:
        self.server = server
        self.stream = stream
        self.id = number
        self.path = request.path
        self.query = request.query
        self.headers = request.headers
        self.faults = ConnectionFaults()
        self.received: list[str | bytes] = []
        """Complete client messages, oldest first (the newest ``server.max_history``)."""
        self.subscriptions: set[str] = set()
        """Maintained by subclasses: whatever names their protocol subscribes to."""
        self.pongs_received = 0
        self.pings_received = 0
        self.pings_sent = 0
        self.data_frames_sent = 0
        self.frames_suppressed = 0
        """Data frames discarded while stalled."""
        self.close_code: int | None = None
        """The code of the client's close frame, if it sent one."""
        self.closed = False
        self.dropped = False
        self._protocol = protocol
        self._send_lock = trio.StrictFIFOLock()
        self._wake = trio.Event()
        self._scope = trio.CancelScope()
        self._drop_after_flush = False
        self._eof_sent = False
        self._pending = 0
        self._fragments: list[bytes] = []
        self._fragment_text = False
        protocol.suppress_pongs = lambda: self.ignoring_pings

    def __repr__(self) -> str:
        return f"<FakeConnection #{self.id} {self.path} subs={sorted(self.subscriptions)}>"

    # -- effective faults -----------------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        own = self.faults.stall
        return self.server.faults.stall if own is None else own

    @property
    def ignoring_pings(self) -> bool:
        own = self.faults.ignore_pings
        return self.server.faults.ignore_pings if own is None else own

    @property
    def drop_after_messages(self) -> int | None:
        own = self.faults.drop_after_messages
        return self.server.faults.drop_after_messages if own is None else own

    @property
    def open(self) -> bool:
        """True while frames can still be sent (not closing, closed or about to be dropped)."""
        return not self.closed and not self._drop_after_flush and self._protocol.state is State.OPEN

    # -- sending --------------------------------------------------------------------------------

    def send_text(self, text: str) -> bool:
        """Queue a text frame unconditionally (control frames: acks, pongs, errors)."""
        return self._send(text.encode(), text=True)

    def send_bytes(self, data: bytes) -> bool:
        """Queue a binary frame unconditionally."""
        return self._send(data, text=False)

    def send_data(self, frame: str | bytes) -> bool:
        """Queue a market-data frame, honouring stall / drop-after-N / garbage faults.

        Returns False when the frame was not queued (stalled or closed).
        """
        if not self.open:
            return False
        if self.stalled:
            self.frames_suppressed += 1
            return False
        every = self.server.faults.garbage_every
        if every and (self.data_frames_sent + 1) % every == 0:
            self.server.send_garbage(self)
        payload = frame.encode() if isinstance(frame, str) else frame
        self._send(payload, text=isinstance(frame, str))
        self.data_frames_sent += 1
        limit = self.drop_after_messages
        if limit is not None and self.data_frames_sent >= limit:
            # Deliver what is queued, then vanish without a close frame.
            self._drop_after_flush = True
            self._wake.set()
        return True

    def send_ping(self, payload: bytes = b"") -> bool:
        """Queue a WebSocket ping; its pong is counted in ``pongs_received``."""
        if not self.open:
            return False
        self._protocol.send_ping(payload)
        self.pings_sent += 1
        self._wake.set()
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the connection is dropped if the client does not
        complete it within ``server.close_timeout``."""
        if not self.open:
            return
        self._protocol.send_close(code, reason)
        self._set_deadline()
        self._wake.set()

    def drop(self) -> None:
        """Close the TCP stream abruptly: no close frame, queued bytes discarded."""
        if self.closed:
            return
        self.dropped = True
        self._scope.cancel()

    async def flush(self) -> None:
        """Wait until everything queued so far is handed to the stream (or the peer is gone)."""
        async with self._send_lock:
            while not self.closed:
                chunks = self._protocol.data_to_send()
                if not chunks:
                    return
                self._pending = 0
                data = b"".join(chunks)  # the EOF marker is b"": it joins to nothing
                eof = any(not chunk for chunk in chunks)
                try:
                    if data and not self._eof_sent:
                        await self.stream.send_all(data)
                    if eof and not self._eof_sent:
                        self._eof_sent = True
                        self._set_deadline()
                        if isinstance(self.stream, trio.abc.HalfCloseableStream):
                            await self.stream.send_eof()
                except BROKEN:
                    self.drop()
                    return

    # -- internals ------------------------------------------------------------------------------

    def _send(self, payload: bytes, *, text: bool) -> bool:
        if not self.open:
            return False
        if text:
            self._protocol.send_text(payload)
        else:
            self._protocol.send_binary(payload)
        self._pending += len(payload)
        if self._pending > self.server.max_pending_bytes:
            # A client that does not read: what a real exchange does to slow consumers.
            self.drop()
            return False
        self._wake.set()
        return True

    def _set_deadline(self) -> None:
        deadline = trio.current_time() + self.server.close_timeout
        self._scope.deadline = min(self._scope.deadline, deadline)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self.flush()
            if self._drop_after_flush:
                self.drop()
                return

    async def _read_loop(self) -> None:
        protocol = self._protocol
        while protocol.state is not State.CLOSED:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except BROKEN:
                data = b""
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            for event in protocol.events_received():
                if isinstance(event, Frame):
                    self._on_frame(event)
            await self.flush()
            if not data:
                return

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        server = self.server
        if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
            if opcode is not _CONT:
                self._fragments = []
                self._fragment_text = opcode is _TEXT
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                payload = b"".join(self._fragments)
                self._fragments = []
                message: str | bytes = payload
                if self._fragment_text:
                    try:
                        message = payload.decode()
                    except UnicodeDecodeError:
                        self._protocol.fail(1007, "invalid UTF-8")
                        return
                self.received.append(message)
                trim(self.received, server.max_history)
                server.on_message(self, message)
        elif opcode is _PING:
            self.pings_received += 1
        elif opcode is _PONG:
            self.pongs_received += 1
        elif opcode is _CLOSE and self._protocol.close_rcvd is not None:
            self.close_code = self._protocol.close_rcvd.code
        server.notify()


def trim(items: list[Any], limit: int) -> None:
    """Keep the newest ``limit`` entries of a book-keeping list."""
    if len(items) > limit:
        del items[: len(items) - limit]
