"""A scriptable fake exchange server on trio, for tests, benchmarks and ``arbd demo``.

Exchange plugins subclass :class:`FakeExchangeServer` to speak their exchange's protocol; arbd's
own driver tests use those fakes over real loopback sockets or in-memory streams. One listening
TCP port serves both the exchange's WebSocket endpoint and its REST endpoints (plain HTTP/1.1):
a request carrying ``Upgrade: websocket`` becomes a WebSocket connection, anything else is
answered by :meth:`FakeExchangeServer.handle_http`.

Start one with :func:`open_fake` (or ``port = await nursery.start(server.serve)``)::

    async with open_fake(SimplexFake()) as fake:
        url = fake.ws_url("/ws")              # ws://127.0.0.1:<port>/ws
        ...                                   # connect a client
        conn = await fake.wait_connected()
        await fake.wait_for(lambda: conn.subscriptions)
        fake.faults.stall = True              # data frames stop, pings still answered

Subclass hooks, all **synchronous** (they run inside the connection's reader task, so a reply
queued with ``conn.send_text`` goes out in the same write as the pong for that read):

``on_connect(conn)``            the handshake completed
``on_message(conn, message)``   one complete client message (``str`` text / ``bytes`` binary)
``on_disconnect(conn)``         the connection ended, for whatever reason
``handle_http(method, path, query) -> (status, headers, body)``  one REST request (default 404)

Sends are synchronous too: they queue bytes in the connection's websockets Sans-I/O
``ServerProtocol`` and wake that connection's writer task. ``await conn.flush()`` (or
``await server.flush()``) waits until queued bytes are handed to the socket; bulk senders use it
for backpressure. Market data must go through :meth:`FakeConnection.send_data` (or
``server.send_data``), which honours the data-frame faults (stall, drop-after-N, garbage);
control replies (acks, app-level pongs) use ``send_text`` and are never suppressed.

Everything is bounded: a peer that does not read gets dropped once ``max_pending_bytes`` are
queued for it, book-keeping lists keep their newest ``max_history`` entries, and leaving the
serving nursery closes every connection (cancellation, then a forceful stream close).
"""

from __future__ import annotations

import http
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal, TypeVar

import trio
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from arbd.testing.http import (
    MAX_HEAD_BYTES,
    BadRequestError,
    RequestHead,
    build_response,
    format_retry_after,
    parse_head,
    split_head,
)

RECEIVE_SIZE: Final = 64 * 1024
MAX_HTTP_BODY: Final = 1024 * 1024
_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_PING, _PONG, _CLOSE = Opcode.PING, Opcode.PONG, Opcode.CLOSE
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)

ServerT = TypeVar("ServerT", bound="FakeExchangeServer")
HttpAnswer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class FakeExchangeFactory:
    """What a plugin's ``arbd_fake_exchanges`` hook returns: the exchange id it fakes and a
    zero-argument callable building a fresh (not yet serving) server."""

    exchange: str
    create: Callable[[], FakeExchangeServer]


@dataclass
class Faults:
    """Server-wide fault switches; flip them at any time, they apply from the next frame.

    stall: data frames (``send_data``) are silently discarded, not buffered: the feed looks
        alive (WebSocket pings and app-level pings are still answered) but no data flows.
    ignore_pings: client WebSocket pings get no pong (the automatic pong is dropped).
    drop_after_messages: drop each connection abruptly once it has been sent this many data
        frames (the frames themselves are delivered first).
    garbage_every: before every Nth data frame, send a text frame that is not JSON.
    refuse_status: answer new requests with this HTTP status (e.g. 429) instead of serving
        them; ``refuse`` says which requests (WebSocket handshakes, REST, or both).
    retry_after: seconds for the Retry-After header of refusals (None: no header).
    refuse_times: refuse only this many more requests, then serve normally (None: no limit).
    hang_handshake: read WebSocket handshakes but never answer them (connect-timeout tests).
    http_delay: seconds to wait (trio time, so virtual clocks apply) before answering REST.
    """

    stall: bool = False
    ignore_pings: bool = False
    drop_after_messages: int | None = None
    garbage_every: int | None = None
    refuse_status: int | None = None
    retry_after: float | None = None
    refuse: Literal["ws", "http", "both"] = "ws"
    refuse_times: int | None = None
    hang_handshake: bool = False
    http_delay: float = 0.0


@dataclass
class ConnectionFaults:
    """Per-connection overrides of :class:`Faults`; ``None`` means "as the server says"."""

    stall: bool | None = None
    ignore_pings: bool | None = None
    drop_after_messages: int | None = None


class _Protocol(ServerProtocol):
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
        protocol: _Protocol,
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
        return (
            not self.closed
            and not self._drop_after_flush
            and self._protocol.state is State.OPEN
        )

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
                except _BROKEN:
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
            except _BROKEN:
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
                _trim(self.received, server.max_history)
                server.on_message(self, message)
        elif opcode is _PING:
            self.pings_received += 1
        elif opcode is _PONG:
            self.pongs_received += 1
        elif opcode is _CLOSE and self._protocol.close_rcvd is not None:
            self.close_code = self._protocol.close_rcvd.code
        server.notify()


def _trim(items: list[Any], limit: int) -> None:
    if len(items) > limit:
        del items[: len(items) - limit]


class FakeExchangeServer:
    """Base class of fake exchanges. See the module docstring for the hooks and the life cycle.

    Book-keeping read by tests: ``connections`` (live), ``connection_count`` (accepted
    WebSocket connections, ever), ``handshake_refusals``, ``http_refusals``,
    ``http_requests`` (``(path, query)`` of every REST request, refused ones included).
    """

    max_frame_bytes: int = 16 * 1024 * 1024
    """Largest client message accepted."""
    max_pending_bytes: int = 64 * 1024 * 1024
    """Unsent bytes per connection before the connection is dropped as a slow consumer."""
    max_history: int = 10_000
    close_timeout: float = 2.0
    """How long a closing handshake may take before the stream is closed regardless."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.host = ""
        self.port: int | None = None
        self.connections: list[FakeConnection] = []
        self.connection_count = 0
        self.handshake_refusals = 0
        self.http_refusals = 0
        self.http_requests: list[tuple[str, dict[str, str]]] = []
        self._changed = trio.lowlevel.ParkingLot()
        self._nursery: trio.Nursery | None = None

    # -- hooks for subclasses -------------------------------------------------------------------

    def on_connect(self, conn: FakeConnection) -> None:
        """A WebSocket connection is open. Default: nothing."""

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        """One complete client message. Default: nothing (it is in ``conn.received``)."""

    def on_disconnect(self, conn: FakeConnection) -> None:
        """The connection has ended (closed, dropped or broken). Default: nothing."""

    def handle_http(self, method: str, path: str, query: dict[str, str]) -> HttpAnswer:
        """Answer one REST request: ``(status, headers, body)``. Default: 404 JSON."""
        return 404, {}, b'{"error":"not found"}'

    # -- starting -------------------------------------------------------------------------------

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) until cancelled; reports the port."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.host = host
        self.port = int(listeners[0].socket.getsockname()[1])
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(
                    partial(trio.serve_listeners, self.handle_stream, listeners,
                            handler_nursery=nursery)
                )
                task_status.started(self.port)
        finally:
            self._nursery = None
            self.port = None

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://{self.host}:{self._port()}{path}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self._port()}"

    def _port(self) -> int:
        if self.port is None:
            raise RuntimeError("the fake server is not serving; start it with open_fake()")
        return self.port

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run a background task (e.g. a data feed) for as long as the server serves."""
        if self._nursery is None:
            raise RuntimeError("the fake server is not serving")
        self._nursery.start_soon(fn, *args)

    # -- waiting and book-keeping ---------------------------------------------------------------

    def notify(self) -> None:
        """Wake every ``wait_for``; call it after changing state a test may wait on."""
        self._changed.unpark_all()

    async def wait_for(self, predicate: Callable[[], object]) -> None:
        """Return once ``predicate()`` is true. Re-checked on every state change (connections,
        messages, pings, pongs, REST requests, ``notify()``); no polling. Wrap in
        ``trio.fail_after`` in tests."""
        while not predicate():
            await self._changed.park()

    async def wait_connected(self, count: int = 1) -> FakeConnection:
        """Wait until at least ``count`` connections are live; return the newest."""
        await self.wait_for(lambda: len(self.connections) >= count)
        return self.connections[-1]

    def send_data(self, conn: FakeConnection, frame: str | bytes) -> bool:
        """Send a market-data frame on ``conn``, honouring the data-frame faults."""
        return conn.send_data(frame)

    def send_garbage(self, conn: FakeConnection, text: str = "this is {not json") -> bool:
        """Send a text frame that no JSON parser accepts (ignores ``stall``)."""
        return conn.send_text(text)

    def send_oversized(self, conn: FakeConnection, n_bytes: int, *, text: bool = True) -> bool:
        """Send one frame of exactly ``n_bytes`` (a JSON string when ``text``; ignores stall)."""
        if text:
            return conn.send_text('"' + "x" * max(0, n_bytes - 2) + '"')
        return conn.send_bytes(b"\0" * n_bytes)

    async def flush(self) -> None:
        """Flush every live connection (backpressure for bulk senders)."""
        for conn in list(self.connections):
            await conn.flush()

    def drop_all(self) -> None:
        for conn in list(self.connections):
            conn.drop()

    async def close_all(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every connection politely and wait until they are gone (bounded by
        ``close_timeout``: stragglers are dropped)."""
        conns = list(self.connections)
        for conn in conns:
            conn.close(code, reason)
        await self.wait_for(lambda: all(c.closed for c in conns))

    # -- serving one stream ---------------------------------------------------------------------

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve HTTP requests and/or one WebSocket connection on ``stream``, then close it.

        Usable directly with an in-memory stream (``trio.testing.memory_stream_pair``).
        Peer misbehaviour never raises; exceptions from subclass hooks do (a fake's bug
        should fail the test).
        """
        try:
            await self._serve_stream(stream)
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_stream(self, stream: trio.abc.Stream) -> None:
        buffer = b""
        while True:  # one round per HTTP request on a kept-alive connection
            try:
                got = await _read_head(stream, buffer)
            except _HeadTooLargeError:
                await _answer_and_close(stream, build_response(431, {}, b"", keep_alive=False))
                return
            if got is None:
                return
            raw_head, buffer = got
            try:
                head = parse_head(raw_head)
                length = head.content_length
            except BadRequestError as exc:
                body = f'{{"error":"bad request: {exc}"}}'.encode()
                await _answer_and_close(stream, build_response(400, {}, body, keep_alive=False))
                return
            if head.is_websocket:
                await self._serve_websocket(stream, head, raw_head + buffer)
                return
            if length > MAX_HTTP_BODY:
                await _answer_and_close(stream, build_response(413, {}, b"", keep_alive=False))
                return
            while len(buffer) < length:  # a body: read it, the fakes ignore it
                data = await _receive_quietly(stream)
                if not data:
                    return
                buffer += data
            buffer = buffer[length:]
            if not await self._serve_http(stream, head):
                return

    def _refusing(self, kind: Literal["ws", "http"]) -> int | None:
        """The status to refuse this request with, or None (and count down ``refuse_times``)."""
        faults = self.faults
        if faults.refuse_status is None or faults.refuse not in (kind, "both"):
            return None
        if faults.refuse_times is not None:
            if faults.refuse_times <= 0:
                return None
            faults.refuse_times -= 1
        return faults.refuse_status

    def _refusal_headers(self) -> dict[str, str]:
        retry_after = self.faults.retry_after
        return {} if retry_after is None else {"Retry-After": format_retry_after(retry_after)}

    async def _serve_http(self, stream: trio.abc.Stream, head: RequestHead) -> bool:
        """Answer one request; True if the connection stays open for another."""
        path, query = head.path, head.query
        self.http_requests.append((path, query))
        _trim(self.http_requests, self.max_history)
        self.notify()
        status = self._refusing("http")
        if status is not None:
            self.http_refusals += 1
            headers = self._refusal_headers()
            body = b'{"error":"too many requests"}'
        else:
            if self.faults.http_delay > 0:
                await trio.sleep(self.faults.http_delay)
            status, headers, body = self.handle_http(head.method, path, query)
        keep_alive = head.keep_alive
        response = build_response(status, headers, body, keep_alive=keep_alive)
        if keep_alive:
            return await _send_quietly(stream, response)
        await _answer_and_close(stream, response)
        return False

    async def _serve_websocket(
        self, stream: trio.abc.Stream, head: RequestHead, raw: bytes
    ) -> None:
        protocol = _Protocol(max_size=self.max_frame_bytes)
        protocol.receive_data(raw)
        request = next((e for e in protocol.events_received() if isinstance(e, Request)), None)
        if request is None:  # not a parsable handshake: the protocol queued its answer
            await _answer_and_close(stream, b"".join(protocol.data_to_send()))
            return
        status = self._refusing("ws")
        if status is not None:
            self.handshake_refusals += 1
            self.notify()
            response = protocol.reject(status, f"{http.HTTPStatus(status).phrase}\n")
            for name, value in self._refusal_headers().items():
                response.headers[name] = value
            protocol.send_response(response)
            await _answer_and_close(stream, b"".join(protocol.data_to_send()))
            return
        if self.faults.hang_handshake:
            while await _receive_quietly(stream):  # until the client gives up
                pass
            return
        response = protocol.accept(request)
        protocol.send_response(response)
        if response.status_code != 101:  # a malformed handshake: 400 and close
            await _answer_and_close(stream, b"".join(protocol.data_to_send()))
            return
        self.connection_count += 1
        conn = FakeConnection(self, stream, protocol, head, self.connection_count)
        await self._run_connection(conn)

    async def _run_connection(self, conn: FakeConnection) -> None:
        self.connections.append(conn)
        try:
            with conn._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn._write_loop)
                    self.on_connect(conn)
                    conn._wake.set()  # the 101 response and whatever on_connect queued
                    self.notify()
                    await conn._read_loop()
                    nursery.cancel_scope.cancel()
        finally:
            conn.closed = True
            self.connections.remove(conn)
            self.notify()
            self.on_disconnect(conn)


class _HeadTooLargeError(Exception):
    pass


async def _read_head(stream: trio.abc.Stream, buffer: bytes) -> tuple[bytes, bytes] | None:
    """Read until ``buffer`` holds a whole request head; None on EOF."""
    while True:
        got = split_head(buffer)
        if got is not None:
            return got
        if len(buffer) > MAX_HEAD_BYTES:
            raise _HeadTooLargeError
        data = await _receive_quietly(stream)
        if not data:
            return None
        buffer += data


async def _receive_quietly(stream: trio.abc.Stream) -> bytes:
    try:
        return bytes(await stream.receive_some(RECEIVE_SIZE))
    except _BROKEN:
        return b""


async def _answer_and_close(stream: trio.abc.Stream, data: bytes) -> None:
    """Send a final answer, then close so the peer reads it: half-close and discard what the
    peer still sends (bounded), because closing a socket with unread input resets it and the
    peer may lose the answer."""
    if not await _send_quietly(stream, data):
        return
    with trio.move_on_after(1.0):
        if isinstance(stream, trio.abc.HalfCloseableStream):
            try:
                await stream.send_eof()
            except _BROKEN:
                return
        for _ in range(64):
            if not await _receive_quietly(stream):
                return


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> bool:
    try:
        await stream.send_all(data)
    except _BROKEN:
        return False
    return True


@asynccontextmanager
async def open_fake(
    server: ServerT, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[ServerT]:
    """Serve ``server`` on loopback for the duration of the block; yields it, serving."""
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(server.serve, host=host, port=port))
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


async def run_fakes(
    servers: Sequence[FakeExchangeServer],
    *,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve several fakes until cancelled (``arbd demo``); reports their ports, in order."""
    async with trio.open_nursery() as nursery:
        ports = [await nursery.start(partial(s.serve, host=host)) for s in servers]
        task_status.started(ports)
