"""One local WebSocket client after its handshake: a reader task and a writer task.

The reader parses socket reads with the websockets Sans-I/O ``ServerProtocol``, hands each
complete message to the pure :class:`~arbd.server.protocol.ClientSession` and carries out the
outcome synchronously: replies go to the connection's outbox, a changed subscription re-registers
the hub subscriber. The writer is the only task that writes to the socket. Each time it is woken
it writes, in one ``send_all``: the outbox (handshake response, replies, pongs, events of a
replaced subscriber), a ``lag`` notice, and everything the hub subscriber buffered (already
framed by the hub, the same bytes objects for every client).

Order: a reply comes after every event published before its request was read. After
``subscribe`` a client sees: events of its old subscriptions published before the request, the
``subscribed`` reply, the current state the request names (latest prices, books, status, open
opportunities), then live events. Nothing published in between is lost or duplicated: all of it
runs synchronously between two awaits of one trio run.

Bounds, per client: the hub buffer (``server.buffer`` events, under ``server.slow_policy``), the
bytes of one write in progress, the outbox (a client that does not read but keeps changing
subscriptions is closed with 1008 once it holds more than twice ``server.buffer`` frames) and
the kernel's socket buffer. The publisher never waits for a client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

import trio
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from arbd.hub import Hub, HubSubscriber
from arbd.server.frames import text_frame
from arbd.server.protocol import ClientSession, Outcome, lag

if TYPE_CHECKING:
    from arbd.config import ServerConfig

log = logging.getLogger("arbd.server")

RECEIVE_SIZE: Final = 64 * 1024
CLOSE_TIMEOUT: Final = 1.0
"""Seconds a closing handshake may take before the TCP connection is closed regardless."""
LAG_INTERVAL: Final = 1.0
"""At most one ``lag`` notice per second per client (conflation happens on every burst)."""
BROKEN: Final = (trio.BrokenResourceError, trio.ClosedResourceError)

_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE


class ClientConnection:
    """One open client. The server creates it after accepting the handshake and awaits
    :meth:`run`; everything else is for tests and status (``sub``, ``lost``, ``close_code``)."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        hub: Hub,
        stream: trio.abc.Stream,
        protocol: ServerProtocol,
        session: ClientSession,
        wall_ms: Callable[[], int],
        peer: str,
    ) -> None:
        self.config = config
        self.hub = hub
        self.stream = stream
        self.protocol = protocol
        self.session = session
        self.wall_ms = wall_ms
        self.peer = peer
        self.sub: HubSubscriber | None = None
        self.outbox: list[bytes] = []
        self.lost = 0
        """Events lost to the slow-consumer policy since the connection opened."""
        self.close_code: int | None = None
        """The code of the close frame this side sent, once closed (None: none was sent)."""
        self.sent_messages = 0
        self._reported = 0
        self._counted = 0
        self._last_lag = -LAG_INTERVAL
        self._close: tuple[int, str] | None = None
        self._ready = trio.Event()
        self._writing = False
        self._fragments: list[bytes] = []
        self._fragment_text = False

    # -- synchronous pieces (the hub calls wake() from inside publish) ---------------------------

    def wake(self) -> None:
        self._ready.set()

    @property
    def closing(self) -> tuple[int, str] | None:
        """The (code, reason) this connection is closing with, once decided."""
        return self._close

    def request_close(self, code: int, reason: str) -> None:
        """Close after what is queued so far has been written."""
        if self._close is None:
            self._close = (code, reason)
        self.wake()

    def queue_frames(self, frames: list[bytes]) -> None:
        self.outbox.extend(frames)
        if len(self.outbox) > 2 * self.config.buffer:
            self.request_close(1008, "not reading")
        self.wake()

    def _count_lost(self, sub: HubSubscriber) -> None:
        new = sub.dropped - self._counted
        if new:
            self._counted = sub.dropped
            self.lost += new

    def _lag_notice(self, force: bool) -> list[bytes]:
        now = trio.current_time()
        unreported = self.lost - self._reported
        if not unreported or (not force and now - self._last_lag < LAG_INTERVAL):
            return []
        self._reported = self.lost
        self._last_lag = now
        return [text_frame(lag(unreported, self.lost, self.config.slow_policy))]

    def apply(self, outcome: Outcome) -> None:
        """Carry out what the session decided for one client message."""
        replies = [text_frame(reply) for reply in outcome.replies]
        change = outcome.change
        if change is None:
            # Replies come after the events published before the request: move what the
            # subscriber holds to the outbox first (bounded: see queue_frames).
            self.queue_frames(self._backlog() + replies)
        else:
            frames: list[bytes] = []
            old = self.sub
            if old is not None:
                # Events the old subscriptions got before this request go out before the reply.
                self.hub.unsubscribe(old)
                frames += self._backlog(force_lag=True)
                self._counted = 0
            frames += replies
            self.sub = None
            if change.filter is not None:
                config = self.config
                sub = self.hub.subscribe(
                    change.filter,
                    capacity=config.buffer,
                    policy=config.slow_policy,
                    wake=self.wake,
                    wire=text_frame,
                )
                self.sub = sub
                if change.snapshot is not None:
                    for event in self.hub.state.snapshot(change.snapshot):
                        if sub.filter.matches(event):
                            sub.offer(event, self.hub.encode_for(sub, event))
            self.queue_frames(frames)
        if outcome.close is not None:
            self.request_close(*outcome.close)

    def _backlog(self, *, force_lag: bool = False) -> list[bytes]:
        """What the hub subscriber holds, oldest first, preceded by a ``lag`` notice when
        events were lost; empties the subscriber. An overflowed subscriber closes the client."""
        sub = self.sub
        if sub is None or self._close is not None:
            return []
        self._count_lost(sub)
        if sub.overflowed:
            self.request_close(1008, f"too slow: more than {sub.capacity} events behind")
            return []
        frames = self._lag_notice(force=force_lag)
        items = cast(list[bytes], sub.drain())
        self.sent_messages += len(items)
        return frames + items

    def _take(self) -> bytes:
        """Everything to write now, in order, as one buffer."""
        parts = self.outbox
        self.outbox = []
        return b"".join(parts + self._backlog())

    # -- reading ----------------------------------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        """Handle one received frame (the reader's; also frames that came with the handshake)."""
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            self._fragments = [bytes(frame.data)]
            self._fragment_text = opcode is _TEXT
        elif opcode is _CONT and self._fragments:
            self._fragments.append(bytes(frame.data))
        else:
            return  # pings are answered by the protocol; closes end the read loop
        if not frame.fin:
            return
        payload = b"".join(self._fragments)
        self._fragments = []
        if self._fragment_text:
            try:
                payload.decode()
            except UnicodeDecodeError:
                # RFC 6455 8.1: a text message that is not UTF-8 fails the connection.
                self.protocol.fail(1007, "invalid UTF-8")
                return
        self.apply(self.session.receive(payload, trio.current_time(), self.wall_ms()))

    async def _read_loop(self) -> None:
        protocol = self.protocol
        while protocol.state is State.OPEN and self._close is None:
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
                    self.on_frame(event)
            self.queue_frames([chunk for chunk in protocol.data_to_send() if chunk])
            if not data:
                break
        if self._close is None:
            rcvd = protocol.close_rcvd
            # The peer closed (its close frame is answered by the protocol), broke the protocol
            # (the protocol queued its close frame, e.g. 1009 for a message over the limit) or
            # went away: in each case stop after writing what is queued.
            self.request_close(rcvd.code if rcvd is not None else 1000, "")

    # -- writing ----------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        deadline = (
            self.config.slow_deadline if self.config.slow_policy == "disconnect" else float("inf")
        )
        while True:
            if self.lost > self._reported:
                # A lag notice was held back by LAG_INTERVAL: send it when that has passed,
                # even if nothing else is written by then.
                with trio.move_on_at(self._last_lag + LAG_INTERVAL):
                    await self._ready.wait()
            else:
                await self._ready.wait()
            self._ready = trio.Event()
            data = self._take()
            if data:
                self._writing = True
                try:
                    with trio.move_on_after(deadline) as scope:
                        await self.stream.send_all(data)
                except BROKEN:
                    self.request_close(1006, "connection lost")
                    return  # _writing stays set: nothing more can be written
                if scope.cancelled_caught:
                    # Part of a frame may be out: no close frame can follow it.
                    self.request_close(1008, "too slow")
                    log.info("client %s: a write stayed blocked %g s; dropped", self.peer, deadline)
                    return
                self._writing = False
            if self._close is not None:
                return

    # -- life cycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the client until either side closes or the server shuts down (code 1001)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_loop)
                self.wake()  # the handshake response and hello are already queued
                await self._write_loop()
                nursery.cancel_scope.cancel()
        finally:
            if self.sub is not None:
                self.hub.unsubscribe(self.sub)
            with trio.CancelScope(shield=True):
                await self._finish()

    async def _finish(self) -> None:
        """Closing handshake, bounded by CLOSE_TIMEOUT; then the TCP connection is closed.

        Skipped when a write was interrupted (shutdown, or a blocked write past its deadline):
        the socket may hold part of a frame, and a stalled client would not read it anyway.
        """
        code, reason = self._close or (1001, "server shutting down")
        protocol = self.protocol
        with trio.move_on_after(CLOSE_TIMEOUT):
            if not self._writing:
                if protocol.state is State.OPEN:
                    protocol.send_close(code, reason)
                data = b"".join(self.outbox + protocol.data_to_send())
                self.outbox = []
                await self._close_handshake(data)
        sent = protocol.close_sent
        self.close_code = sent.code if sent is not None else None
        await trio.aclose_forcefully(self.stream)

    async def _close_handshake(self, data: bytes) -> None:
        protocol = self.protocol
        try:
            if data:
                await self.stream.send_all(data)
            # We closed first: the peer answers with its close frame, then we close the TCP
            # connection (RFC 6455 7.1.1: the server closes it).
            while protocol.close_rcvd is None:
                received = await self.stream.receive_some(RECEIVE_SIZE)
                if not received:
                    return
                protocol.receive_data(received)
        except BROKEN:
            return  # the peer is gone: there is nothing left to close politely
