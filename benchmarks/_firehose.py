"""A loopback WebSocket firehose for benchmarks, run in its own process.

It accepts WebSocket connections (handshake through websockets' Sans-I/O ServerProtocol), then
writes a pre-framed buffer of server->client text frames as fast as the kernel takes them, so
the client under test, not the server, is the bottleneck. Each connection receives exactly
``count`` frames followed by a close frame; the server closes the TCP connection once the
client answers it (the server closes first, as RFC 6455 has it: clients that wait for that
would otherwise sit out their close timeout, 10-30 s a run).
"""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Sequence

from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol


def frame_bytes(messages: Sequence[bytes]) -> bytes:
    """Serialize messages as unmasked server text frames."""
    out = bytearray()
    for message in messages:
        out += Frame(Opcode.TEXT, message).serialize(mask=False, extensions=[])
    return bytes(out)


def _handshake(conn: socket.socket) -> ServerProtocol:
    protocol = ServerProtocol(max_size=None)
    while True:
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("client went away during handshake")
        protocol.receive_data(data)
        events = protocol.events_received()
        if events:
            response = protocol.accept(events[0])  # type: ignore[arg-type]
            protocol.send_response(response)
            conn.sendall(b"".join(protocol.data_to_send()))
            return protocol


def _await_close(conn: socket.socket, protocol: ServerProtocol) -> None:
    """Read (discarding) until the client's close frame or EOF. The frames above were written
    around ``protocol``, which only parses what the client sends here."""
    conn.settimeout(30)
    while data := conn.recv(65536):
        protocol.receive_data(data)
        if any(
            isinstance(e, Frame) and e.opcode is Opcode.CLOSE for e in protocol.events_received()
        ):
            return


def _serve(listener: socket.socket, messages: list[bytes], count: int) -> None:
    block = frame_bytes(messages)
    per_block = len(messages)
    close = Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=False, extensions=[])
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                protocol = _handshake(conn)
                sent = 0
                while sent + per_block <= count:
                    conn.sendall(block)
                    sent += per_block
                if sent < count:
                    conn.sendall(frame_bytes(messages[: count - sent]))
                conn.sendall(close)
                _await_close(conn, protocol)
            except OSError:
                continue


def start_firehose(messages: list[bytes], count: int) -> tuple[multiprocessing.Process, int]:
    """Start the server process; returns it and its port on 127.0.0.1."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    process = ctx.Process(target=_serve, args=(listener, messages, count), daemon=True)
    process.start()
    listener.close()
    return process, port
