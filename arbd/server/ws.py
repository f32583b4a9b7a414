"""The local WebSocket server's I/O shell: listen, judge handshakes, run one connection per client.

Start it with ``server = await nursery.start(serve_websocket, config, hub, markets)``; it reports
the running :class:`WebSocketServer` (``server.port``, ``server.url``) once it listens. Cancel
the nursery to stop: every client is closed with code 1001 within ``CLOSE_TIMEOUT``.

Each accepted TCP stream is served by one task: the opening handshake (parsed by the websockets
Sans-I/O ``ServerProtocol``, bounded by ``HANDSHAKE_TIMEOUT``) is judged by
:func:`arbd.server.access.check_handshake` (path 404, token 401, Origin 403) and the client limit
(503), then :class:`~arbd.server.connection.ClientConnection` takes over.
"""

from __future__ import annotations

import errno
import http
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

import trio
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.server import ServerProtocol

from arbd.config import ServerConfig, check_server
from arbd.errors import ConfigError
from arbd.hub import Hub
from arbd.server.access import check_handshake
from arbd.server.connection import BROKEN, RECEIVE_SIZE, ClientConnection, Flusher
from arbd.server.frames import text_frame
from arbd.server.protocol import ClientSession, Markets

log = logging.getLogger("arbd.server")

HANDSHAKE_TIMEOUT: Final = 10.0
"""Seconds a new connection has to complete its opening handshake."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class WebSocketServer:
    """The running server: where it listens, its clients, and counters (plain ints)."""

    def __init__(
        self, config: ServerConfig, hub: Hub, markets: Markets, wall_ms: Callable[[], int]
    ) -> None:
        self.config = config
        self.hub = hub
        self.markets = markets
        self.wall_ms = wall_ms
        self.host = config.host
        self.port = 0
        self.clients: set[ClientConnection] = set()
        self.flusher = Flusher()
        self.accepted = 0
        self.refused = 0
        self.closed_slow = 0
        """Clients closed for falling behind or abuse (code 1008)."""
        self.internal_errors = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{self.config.path}"

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one accepted TCP stream until it closes; never raises for a peer's doing."""
        peer = _peer(stream)
        try:
            opened = None
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                opened = await self._handshake(stream, peer)
            if opened is not None:
                await self._serve(stream, peer, *opened)
        except Exception:  # one client's failure must not stop the others
            # A bug, not a peer's doing (those never raise): counted, logged with its
            # traceback, and the connection dropped.
            self.internal_errors += 1
            log.exception("client %s: internal error; connection dropped", peer)
        finally:
            await trio.aclose_forcefully(stream)

    async def _handshake(
        self, stream: trio.abc.Stream, peer: str
    ) -> tuple[ServerProtocol, list[Frame]] | None:
        """Read and judge the opening handshake; the protocol of an accepted client (its 101
        response queued) and any frames that came right behind the request, else None."""
        protocol = ServerProtocol(max_size=self.config.max_message_bytes)
        request: Request | None = None
        frames: list[Frame] = []
        while request is None:
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except BROKEN:
                return None
            if not data:
                return None
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Request):
                    request = event
                elif isinstance(event, Frame):
                    frames.append(event)
            if request is None and protocol.handshake_exc is not None:
                # Not HTTP, or headers too large: the protocol queued its answer (or EOF).
                await _send_final(stream, protocol)
                return None
        refusal = check_handshake(self.config, request.path, partial(_header, request))
        if refusal is None and len(self.clients) >= self.config.max_clients:
            refusal_status, reason = 503, f"too many clients (limit {self.config.max_clients})"
        elif refusal is not None:
            refusal_status, reason = refusal
        else:
            response = protocol.accept(request)
            protocol.send_response(response)
            if response.status_code == 101:
                return protocol, frames
            refusal_status, reason = response.status_code, "not a valid WebSocket handshake"
        self.refused += 1
        log.debug("refused %s: %d %s", peer, refusal_status, reason)
        if protocol.handshake_exc is None:  # accept() already queued its own rejection
            phrase = http.HTTPStatus(refusal_status).phrase
            protocol.send_response(protocol.reject(refusal_status, f"{phrase}: {reason}\n"))
        await _send_final(stream, protocol)
        return None

    async def _serve(
        self, stream: trio.SocketStream, peer: str, protocol: ServerProtocol, early: list[Frame]
    ) -> None:
        session = ClientSession(self.config, self.markets, trio.current_time())
        client = ClientConnection(
            config=self.config,
            hub=self.hub,
            stream=stream,
            protocol=protocol,
            session=session,
            flusher=self.flusher,
            wall_ms=self.wall_ms,
            peer=peer,
        )
        client.output.queue(
            [chunk for chunk in protocol.data_to_send() if chunk]
            + [text_frame(session.hello(self.wall_ms()))]
        )
        for frame in early:
            client.on_frame(frame)
        self.accepted += 1
        self.clients.add(client)
        log.debug("client %s connected (%d open)", peer, len(self.clients))
        try:
            await client.run()
        finally:
            self.clients.discard(client)
            if client.closing is not None and client.closing[0] == 1008:
                self.closed_slow += 1
            log.debug("client %s closed with %s", peer, client.close_code)


def _header(request: Request, name: str) -> str | None:
    """A request header; repeated ones joined with ", " as HTTP allows (so a doubled token or
    Origin never matches)."""
    values = request.headers.get_all(name)
    return ", ".join(values) if values else None


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"


async def _send_final(stream: trio.abc.Stream, protocol: ServerProtocol) -> None:
    """Send a refusal and half-close, so the client reads it before the connection closes."""
    data = b"".join(protocol.data_to_send())
    try:
        if data:
            await stream.send_all(data)
        if isinstance(stream, trio.SocketStream):
            await stream.send_eof()
    except BROKEN:
        return  # the client left; nothing to tell it


async def open_listeners(
    config: ServerConfig, *, any_port_if_busy: bool = False
) -> list[trio.SocketListener]:
    """Listen on ``server.host:server.port``. A port in use or an address this machine does not
    have is a ConfigError naming ``server.port`` / ``server.host``; with ``any_port_if_busy``
    (``arbd demo``) a port in use is replaced by a free one."""
    host = config.host or None
    try:
        return await trio.open_tcp_listeners(config.port, host=host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE and any_port_if_busy:
            return await trio.open_tcp_listeners(0, host=host)
        key = "server.port" if exc.errno == errno.EADDRINUSE else "server.host"
        where = f"{config.host or '*'}:{config.port}"
        raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}", key=key) from None


async def serve_websocket(
    config: ServerConfig,
    hub: Hub,
    markets: Markets,
    *,
    listeners: Sequence[trio.SocketListener] | None = None,
    wall_ms: Callable[[], int] = _wall_ms,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve local clients until cancelled; reports the :class:`WebSocketServer` when listening.

    ``listeners`` replaces listening on ``config.host:config.port`` (tests, ``arbd demo``);
    ``wall_ms`` is the clock for ``serverTime``. Raises ConfigError before listening when the
    config is unsafe (a non-loopback host without ``server.token``) or the port is taken.
    """
    check_server(config)
    server = WebSocketServer(config, hub, markets, wall_ms)
    if listeners is None:
        listeners = await open_listeners(config)
    sockname = listeners[0].socket.getsockname()
    server.host, server.port = str(sockname[0]), int(sockname[1])
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.flusher.run)
            await nursery.start(
                partial(
                    trio.serve_listeners, server.handle, list(listeners), handler_nursery=nursery
                )
            )
            log.info("local WebSocket server on %s", server.url)
            task_status.started(server)
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
