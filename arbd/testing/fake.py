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
from typing import Final, Literal, TypeVar

import trio
from websockets.frames import Frame
from websockets.http11 import Request

from arbd.testing.connection import (
    BROKEN,
    RECEIVE_SIZE,
    ConnectionFaults,
    FakeConnection,
    WsProtocol,
    trim,
)
from arbd.testing.http import (
    MAX_HEAD_BYTES,
    BadRequestError,
    RequestHead,
    build_response,
    format_retry_after,
    parse_head,
    split_head,
)

__all__ = [
    "ConnectionFaults",
    "FakeConnection",
    "FakeExchangeFactory",
    "FakeExchangeServer",
    "Faults",
    "open_fake",
    "run_fakes",
]

MAX_HTTP_BODY: Final = 1024 * 1024

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

    ``conn.faults`` (:class:`ConnectionFaults`) overrides stall, ignore_pings and
    drop_after_messages for one connection.
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
    websocket_paths: tuple[str, ...] | None = None
    """Paths that accept WebSocket handshakes (others get 404); None accepts any path."""
    ws_path: str = "/ws"
    """The path the exchange adapter's ``ws_url`` points at (see :meth:`adapter_ws_url`)."""

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
                    partial(
                        trio.serve_listeners, self.handle_stream, listeners, handler_nursery=nursery
                    )
                )
                task_status.started(self.port)
        finally:
            self._nursery = None
            self.port = None
            for listener in listeners:  # serve_listeners closes them, unless never started
                await trio.aclose_forcefully(listener)

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://{self.host}:{self._port()}{path}"

    def adapter_ws_url(self) -> str:
        """The ``ws_url`` to configure this exchange's adapter with."""
        return self.ws_url(self.ws_path)

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self._port()}"

    def _port(self) -> int:
        if self.port is None:
            raise RuntimeError("the fake server is not serving; start it with open_fake()")
        return self.port

    demo_rate: float = 10.0
    """Rounds per second that :meth:`simulate` (``arbd demo``) emits."""

    def emit_round(self) -> None:
        """Queue one round of market data to the subscribed connections (synchronous).
        Fakes with market data implement it; :meth:`pump` and :meth:`run_feed` drive it."""
        raise NotImplementedError(f"{type(self).__name__} makes no market data")

    async def pump(self, n: int = 1) -> None:
        """Emit ``n`` rounds and wait until they are written to every connection."""
        for _ in range(n):
            self.emit_round()
            await self.flush()

    async def run_feed(self, rate_per_s: float, rounds: int | None = None) -> None:
        """Pump ``rate_per_s`` rounds per second (forever, or ``rounds`` times)."""
        interval = 1.0 / rate_per_s
        due = trio.current_time()
        done = 0
        while rounds is None or done < rounds:
            await self.pump(1)
            done += 1
            due += interval  # a steady schedule: time spent pumping is not added to it
            await trio.sleep_until(due)

    async def simulate(self) -> None:
        """Generate a live market until cancelled, for ``arbd demo``: ``demo_rate`` rounds per
        second for fakes with market data; nothing for the others."""
        if type(self).emit_round is FakeExchangeServer.emit_round:
            await trio.sleep_forever()
        await self.run_feed(self.demo_rate)

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
        trim(self.http_requests, self.max_history)
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
        protocol = WsProtocol(max_size=self.max_frame_bytes)
        protocol.receive_data(raw)
        events = protocol.events_received()
        request = next((e for e in events if isinstance(e, Request)), None)
        if request is None:  # not a parsable handshake: the protocol queued its answer
            await _answer_and_close(stream, b"".join(protocol.data_to_send()))
            return
        if self.websocket_paths is not None and head.path not in self.websocket_paths:
            await self._reject(stream, protocol, 404, {})
            return
        status = self._refusing("ws")
        if status is not None:
            self.handshake_refusals += 1
            self.notify()
            await self._reject(stream, protocol, status, self._refusal_headers())
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
        # Frames an eager client sent right behind its request were parsed with it.
        early = [e for e in events if isinstance(e, Frame)]
        await self._run_connection(conn, early)

    async def _reject(
        self, stream: trio.abc.Stream, protocol: WsProtocol, status: int, headers: dict[str, str]
    ) -> None:
        response = protocol.reject(status, f"{http.HTTPStatus(status).phrase}\n")
        for name, value in headers.items():
            response.headers[name] = value
        protocol.send_response(response)
        await _answer_and_close(stream, b"".join(protocol.data_to_send()))

    async def _run_connection(self, conn: FakeConnection, early: list[Frame]) -> None:
        self.connections.append(conn)
        try:
            with conn._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn._write_loop)
                    self.on_connect(conn)
                    for frame in early:
                        conn._on_frame(frame)
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
    except BROKEN:
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
            except BROKEN:
                return
        for _ in range(64):
            if not await _receive_quietly(stream):
                return


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> bool:
    try:
        await stream.send_all(data)
    except BROKEN:
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
