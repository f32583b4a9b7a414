"""One local WebSocket client after its handshake, and the server's shared flusher.

Reading: one task per client parses socket reads with the websockets Sans-I/O
``ServerProtocol``, hands each complete message to the pure
:class:`~arbd.server.protocol.ClientSession` and carries out the outcome synchronously through
the client's :class:`~arbd.server.output.ClientOutput`.

Writing has a fast path and a slow path. The hub calls ``wake()`` inside ``publish``; that only
puts the client on the :class:`Flusher`'s list. The flusher, one task for all clients, then
writes each listed client's pending bytes with one non-blocking ``os.write`` on its socket:
no task switch per client (a trio ``send_all`` per client costs several, and dominated both
throughput and latency in ``benchmarks/fanout.py``). Only when the kernel does not take
everything does the client's own writer task take over: it waits until the socket is writable
(at most ``server.slow_deadline`` under the ``disconnect`` policy), writes the rest and then
whatever accumulated meanwhile, and hands the client back to the flusher. While a client is
blocked like this, its hub buffer keeps it bounded; nobody else waits for it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import trio
import trio.lowlevel
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from arbd.histogram import LatencyHistogram
from arbd.hub import Hub, HubSubscriber
from arbd.server.frames import text_frame
from arbd.server.output import ClientOutput
from arbd.server.protocol import ClientSession, Outcome

if TYPE_CHECKING:
    from arbd.config import ServerConfig

log = logging.getLogger("arbd.server")

RECEIVE_SIZE: Final = 64 * 1024
CLOSE_TIMEOUT: Final = 1.0
"""Seconds a closing handshake may take before the TCP connection is closed regardless."""
BROKEN: Final = (trio.BrokenResourceError, trio.ClosedResourceError)
WRITEV_MAX: Final = 64
"""Buffers per ``writev`` (the kernel allows IOV_MAX, 1024); more are joined first: a client
that fell behind by that many batches gets one copy, the usual one to three are not copied."""

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


class Flusher:
    """Writes the pending output of every woken client, from one task. Start ``run`` with
    ``nursery.start`` before the first client."""

    BATCH: Final = 256
    """Clients written between two checkpoints, so a big fan-out does not starve ingest."""

    def __init__(self) -> None:
        self._pending: list[ClientConnection] = []
        self._scheduled_ns: list[int] = []
        self._ready = trio.Event()
        self.delivery = LatencyHistogram()
        """Per client write: from the publish that woke the client to its bytes handed to the
        kernel (``arbd_delivery_latency_seconds``)."""
        self.passes = 0
        self.flushes = 0
        """Client flushes done, over all passes."""
        self.busy = 0.0
        """Seconds spent in passes (what one client write costs: busy / flushes)."""

    def schedule(self, client: ClientConnection) -> None:
        self._pending.append(client)
        self._scheduled_ns.append(time.perf_counter_ns())
        self._ready.set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            pending, self._pending = self._pending, []
            scheduled, self._scheduled_ns = self._scheduled_ns, []
            started = time.perf_counter()
            self.passes += 1
            self.flushes += len(pending)
            observe = self.delivery.observe_ns
            now = trio.current_time()
            for i, (client, woken_ns) in enumerate(zip(pending, scheduled, strict=True), 1):
                try:
                    client.flush(now)
                except Exception:  # a bug in one client's output must not stop the others
                    log.exception("client %s: internal error; connection dropped", client.peer)
                    client.abort()
                observe(time.perf_counter_ns() - woken_ns)
                if i % self.BATCH == 0:
                    self.busy += time.perf_counter() - started
                    await trio.lowlevel.checkpoint()
                    started = time.perf_counter()
                    now = trio.current_time()
            self.busy += time.perf_counter() - started


class ClientConnection:
    """One open client. The server creates it after accepting the handshake and awaits
    :meth:`run`; ``output`` (subscriber, counters) and ``closing`` are for tests and status."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        hub: Hub,
        stream: trio.SocketStream,
        protocol: ServerProtocol,
        session: ClientSession,
        flusher: Flusher,
        wall_ms: Callable[[], int],
        peer: str,
    ) -> None:
        self.config = config
        self.stream = stream
        self.protocol = protocol
        self.session = session
        self.flusher = flusher
        self.wall_ms = wall_ms
        self.peer = peer
        self.output = ClientOutput(hub, config, self.wake)
        self.close_code: int | None = None
        """The code of the close frame this side sent, once closed (None: none was sent)."""
        self._fd = stream.socket.fileno()
        self._unsent = memoryview(b"")
        """The rest of a write the kernel did not take; non-empty means blocked."""
        self._queued = False
        self._broken = False
        self._abandoned = False
        self._stopped = False
        self._attention = trio.Event()
        self._fragments: list[bytes] = []
        self._fragment_text = False

    @property
    def sub(self) -> HubSubscriber | None:
        return self.output.sub

    @property
    def closing(self) -> tuple[int, str] | None:
        """The (code, reason) this connection is closing with, once decided."""
        return self.output.close_request

    # -- synchronous pieces (the hub calls wake() from inside publish) ---------------------------

    def wake(self) -> None:
        """There is something to write: list the client with the flusher (unless it is
        already listed, blocked or closing: then its own task picks the data up)."""
        if self.output.close_request is not None:
            self._attention.set()
        elif not (self._queued or self._unsent or self._stopped):
            self._queued = True
            self.flusher.schedule(self)

    def flush(self, now: float) -> None:
        """The fast path, run by the flusher: write what is pending without blocking. ``now``:
        trio's clock, read once per pass."""
        self._queued = False
        if self._unsent or self._stopped or self.output.close_request is not None:
            return
        parts = self.output.take(now)
        if parts:
            self._write(parts)
        if self.output.close_request is not None or self._unsent:
            self._attention.set()

    def abort(self) -> None:
        """Give up on the connection without a closing handshake."""
        self._broken = True
        self._unsent = memoryview(b"")
        self.output.request_close(1011, "internal error")
        self._attention.set()

    def _write(self, parts: list[bytes] | list[memoryview]) -> None:
        """One non-blocking write of ``parts`` in order (``writev`` when there are several:
        whole batches go out without being copied together); what the kernel does not take
        waits in ``_unsent``."""
        if len(parts) > WRITEV_MAX:
            parts = [b"".join(parts)]
        try:
            if len(parts) == 1:
                written = os.write(self._fd, parts[0])
            else:
                written = os.writev(self._fd, parts)
        except BlockingIOError:
            written = 0
        except OSError:
            self._broken = True
            self._unsent = memoryview(b"")
            self.output.request_close(1006, "connection lost")
            self._attention.set()
            return
        if len(parts) == 1:
            self._unsent = memoryview(parts[0])[written:]
        elif written < sum(map(len, parts)):
            self._unsent = memoryview(b"".join(parts))[written:]
        else:
            self._unsent = memoryview(b"")

    def apply(self, outcome: Outcome) -> None:
        """Carry out what the session decided for one client message."""
        now = trio.current_time()
        replies = [text_frame(reply) for reply in outcome.replies]
        change = outcome.change
        if change is None:
            self.output.reply(replies, now)
        else:
            self.output.resubscribe(change.filter, change.snapshot, replies, now)
        if outcome.close is not None:
            self.output.request_close(*outcome.close)
            self.wake()

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
        while protocol.state is State.OPEN and self.output.close_request is None:
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
            self.output.queue([chunk for chunk in protocol.data_to_send() if chunk])
            if not data:
                break
        rcvd = protocol.close_rcvd
        # The peer closed (the protocol answered its close frame), broke the protocol (the
        # protocol queued its own close frame, e.g. 1009 for a message over the limit) or went
        # away: in each case stop after writing what is queued.
        self.output.request_close(rcvd.code if rcvd is not None else 1000, "")
        self.wake()

    # -- the slow path ----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        """Wait for what the flusher cannot do: a blocked socket, a held-back lag notice, the
        close. Returns when the connection is to close."""
        deadline = (
            self.config.slow_deadline if self.config.slow_policy == "disconnect" else float("inf")
        )
        while self.output.close_request is None:
            due = self.output.lag_due()
            with trio.move_on_at(float("inf") if due is None else due):
                await self._attention.wait()
            self._attention = trio.Event()
            if due is not None and trio.current_time() >= due:
                self.wake()  # the flusher sends the lag notice
            while self._unsent and not self._broken:
                # A client already being closed (it overflowed, say) gets CLOSE_TIMEOUT.
                wait = deadline if self.output.close_request is None else CLOSE_TIMEOUT
                with trio.move_on_after(wait) as scope:
                    await trio.lowlevel.wait_writable(self._fd)
                if scope.cancelled_caught:
                    # Part of a frame may be out: no close frame can follow it.
                    self._abandoned = True
                    self.output.request_close(1008, "too slow")
                    log.info("client %s: a write stayed blocked %g s; dropped", self.peer, wait)
                    return
                self._write([self._unsent])
                if not self._unsent and self.output.close_request is None:
                    # Caught up with the old bytes; what arrived meanwhile goes out now.
                    parts = self.output.take(trio.current_time())
                    if parts:
                        self._write(parts)

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
            self.output.detach()
            with trio.CancelScope(shield=True):
                await self._finish()

    async def _finish(self) -> None:
        """Closing handshake, bounded by CLOSE_TIMEOUT; then the TCP connection is closed.

        Skipped when the stream broke or a write was abandoned: the socket may hold part of a
        frame, and a stalled client would not read a close frame anyway.
        """
        self._stopped = True
        code, reason = self.output.close_request or (1001, "server shutting down")
        protocol = self.protocol
        with trio.move_on_after(CLOSE_TIMEOUT):
            if not (self._broken or self._abandoned):
                if protocol.state is State.OPEN:
                    protocol.send_close(code, reason)
                # The rest of a frame in progress first, then replies, then the close frame.
                data = b"".join([self._unsent, *self.output.outbox, *protocol.data_to_send()])
                self._unsent = memoryview(b"")
                self.output.outbox = []
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
