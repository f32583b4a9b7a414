"""Helpers for the local WebSocket server tests: a running server on a real Hub, and a small
WebSocket client (websockets Sans-I/O over a trio socket) that can send headers, shrink its
receive buffer and stop reading."""

from __future__ import annotations

import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from arbd.config import ServerConfig
from arbd.hub import Hub
from arbd.model import FeedStatus, Quote, Trade
from arbd.server.ws import WebSocketServer, serve_websocket
from arbd.testing.events import (
    sample_opportunity,
    sample_quote,
    sample_status,
    sample_trade,
)

MARKETS = {"binance": ["BTC/USDT", "ETH/USDT"], "kraken": ["BTC/USDT", "XRP/USD"]}


def quote(bid: str = "1.0", symbol: str = "BTC/USDT", exchange: str = "binance") -> Quote:
    return sample_quote(exchange, symbol, bid)


def trade(n: int, symbol: str = "BTC/USDT", exchange: str = "binance") -> Trade:
    return sample_trade(exchange, symbol, size="0.1", id=str(n), sequence=n)


def status(exchange: str = "binance", state: str = "live", symbol: str = "") -> FeedStatus:
    return sample_status(exchange, state, symbol)


opportunity = sample_opportunity


@asynccontextmanager
async def running_server(
    hub: Hub | None = None,
    markets: Callable[[], dict[str, list[str]]] = lambda: MARKETS,
    *,
    sndbuf: int | None = None,
    **config: Any,
) -> AsyncIterator[WebSocketServer]:
    """A server on 127.0.0.1, a free port, for the block. ``sndbuf`` shrinks the kernel send
    buffer of every accepted socket (they inherit it from the listener), so a client that stops
    reading blocks the server's writes after a few kilobytes instead of megabytes."""
    settings = msgspec.convert({"port": 0, **config}, ServerConfig)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    if sndbuf is not None:
        for listener in listeners:
            listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(serve_websocket, settings, hub or Hub(), markets, listeners=listeners)
        )
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


class Refused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"refused with HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class Closed(Exception):
    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed with {code} {reason}")
        self.code = code
        self.reason = reason


class WsClient:
    """One client connection. ``receive()`` returns the next message as a dict."""

    def __init__(self, stream: trio.SocketStream, protocol: ClientProtocol) -> None:
        self.stream = stream
        self.protocol = protocol
        self.frames: deque[Frame] = deque()
        self.pongs: list[bytes] = []
        self.eof = False

    @property
    def port(self) -> int:
        """Our local port: how a test finds this client among the server's connections."""
        return int(self.stream.socket.getsockname()[1])

    def send(self, message: object) -> None:
        if isinstance(message, bytes):
            self.protocol.send_text(message)
        elif isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_text(json.dumps(message).encode())

    async def flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data and not self.eof:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.eof = True

    async def request(self, message: object) -> dict[str, Any]:
        self.send(message)
        return await self.receive()

    async def receive(self) -> dict[str, Any]:
        """The next data message; raises Closed when the server closed the connection."""
        await self.flush()
        while True:
            while not self.frames:
                await self._read()
            frame = self.frames.popleft()
            if frame.opcode is Opcode.TEXT:
                value: dict[str, Any] = json.loads(frame.data)
                return value

    async def receive_all(self, n: int) -> list[dict[str, Any]]:
        return [await self.receive() for _ in range(n)]

    async def _read(self) -> None:
        if self.eof or self.protocol.state is State.CLOSED:
            rcvd = self.protocol.close_rcvd
            raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.eof = True
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.frames.append(event)
            elif isinstance(event, Frame) and event.opcode is Opcode.PONG:
                self.pongs.append(bytes(event.data))
        await self.flush()  # pongs and the answer to a close frame

    async def close(self) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
        await self.flush()
        with trio.move_on_after(2):
            while not self.eof and self.protocol.state is not State.CLOSED:
                await self._read()


@asynccontextmanager
async def open_client(
    url: str, *, headers: dict[str, str] | None = None, rcvbuf: int | None = None
) -> AsyncIterator[WsClient]:
    """Connect and finish the handshake; raises Refused for an HTTP answer other than 101."""
    parts = urlsplit(url)
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connecting, so the advertised window is small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    with trio.fail_after(5):
        await sock.connect((parts.hostname, parts.port))
    stream = trio.SocketStream(sock)
    try:
        protocol = ClientProtocol(parse_uri(url), max_size=None)
        request = protocol.connect()
        for name, value in (headers or {}).items():
            request.headers[name] = value
        protocol.send_request(request)
        client = WsClient(stream, protocol)
        await client.flush()
        with trio.fail_after(5):
            while protocol.state is State.CONNECTING:
                data = await stream.receive_some(65536)
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                if isinstance(protocol.handshake_exc, InvalidStatus):
                    response = protocol.handshake_exc.response
                    raise Refused(response.status_code, bytes(response.body))
                if protocol.handshake_exc is not None:
                    raise protocol.handshake_exc
                if not data and protocol.state is State.CONNECTING:
                    raise Closed(None)
        for event in protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                client.frames.append(event)
        yield client
    finally:
        await trio.aclose_forcefully(stream)


async def subscribed(client: WsClient, **request: Any) -> dict[str, Any]:
    """Send a subscribe and return the ``subscribed`` reply (the snapshot follows it)."""
    reply = await client.request({"action": "subscribe", **request})
    assert reply["type"] == "subscribed", reply
    return reply


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``predicate`` (server-side state has no events to wait on), bounded in time."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


async def until_closed(
    client: WsClient, timeout: float = 10.0
) -> tuple[list[dict[str, Any]], int | None]:
    """Read until the server closes; the messages before that and the close code."""
    received = []
    with trio.fail_after(timeout):
        while True:
            try:
                received.append(await client.receive())
            except Closed as closed:
                return received, closed.code
