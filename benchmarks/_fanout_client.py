"""The client side of ``benchmarks/fanout.py``, run in its own process.

Plain blocking sockets for the handshake and the subscribe, then one epoll loop over every
connection with ``recv_into`` a reused buffer: the cheapest reader Python has, so the server,
not the client, is what is measured. Counting is by bytes (every benchmark message has the same
framed size); the latency run parses the frames of a sample of connections.
"""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import select
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from websockets.frames import Frame, Opcode

_RECEIVED = re.compile(rb'"receivedNs":(\d+)')


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _masked_text(payload: bytes) -> bytes:
    return Frame(Opcode.TEXT, payload).serialize(mask=True, extensions=[])


def _read_frame(sock: socket.socket, buf: bytearray) -> bytes:
    """One whole server frame's payload (blocking), consuming it from ``buf``."""
    while True:
        if len(buf) >= 2:
            length = buf[1] & 0x7F
            start = 2
            if length == 126 and len(buf) >= 4:
                length, start = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127 and len(buf) >= 10:
                length, start = int.from_bytes(buf[2:10], "big"), 10
            if (length < 126 or start > 2) and len(buf) >= start + length:
                payload = bytes(buf[start : start + length])
                del buf[: start + length]
                return payload
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        buf += data


def connect(port: int, subscribe: dict[str, Any] | None) -> socket.socket:
    """Open one client: handshake, read ``hello``, subscribe and read ``subscribed``."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed during the handshake")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    buf = bytearray(rest)
    assert json.loads(_read_frame(sock, buf))["type"] == "hello"
    if subscribe is not None:
        sock.sendall(_masked_text(json.dumps({"action": "subscribe", **subscribe}).encode()))
        while json.loads(_read_frame(sock, buf))["type"] != "subscribed":
            pass
    assert not buf, "no events before the benchmark starts"
    sock.setblocking(False)
    return sock


def _epoll(socks: list[socket.socket]) -> tuple[select.epoll, dict[int, socket.socket]]:
    poller = select.epoll(sizehint=len(socks))
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
    return poller, {s.fileno(): s for s in socks}


def count_bytes(
    socks: list[socket.socket], seconds: float, idle_stop: float = 2.0
) -> tuple[int, float, float, float]:
    """Read every socket for ``seconds`` from the first byte, or until nothing arrived for
    ``idle_stop`` seconds after it (or ``seconds`` before it). Returns (bytes, elapsed s, wall
    time of the first and last byte)."""
    poller, by_fd = _epoll(socks)
    buf = bytearray(1 << 20)
    total = 0
    start = first = last_wall = 0.0
    last = time.perf_counter()
    while True:
        now = time.perf_counter()
        if total and (now - start >= seconds or now - last > idle_stop):
            break
        if not total and now - last > seconds:
            break
        for fd, _ in poller.poll(0.05):
            n = by_fd[fd].recv_into(buf)
            if n:
                last = time.perf_counter()
                last_wall = time.time()
                if not total:
                    start, first = last, last_wall
                total += n
    poller.close()
    return total, (time.perf_counter() - start) if total else 0.0, first, last_wall


def latencies(
    socks: list[socket.socket], sample: set[int], seconds: float
) -> tuple[list[int], int]:
    """Latency in ns of every message on the ``sample`` connections (index into ``socks``):
    receive time minus the ``receivedNs`` the publisher stamped; plus total bytes on all."""
    poller, by_fd = _epoll(socks)
    sampled = {socks[i].fileno() for i in sample}
    pending: dict[int, bytes] = dict.fromkeys(sampled, b"")
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    found: list[int] = []
    total = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for fd, _ in poller.poll(0.05):
            n = by_fd[fd].recv_into(buf)
            now = time.time_ns()
            total += n
            if fd in sampled and n:
                # A message split across two reads is matched once whole: keep the tail after
                # the last complete "receivedNs" value.
                data = pending[fd] + view[:n].tobytes()
                matches = list(_RECEIVED.finditer(data))
                complete = [m for m in matches if m.end() < len(data)]
                found.extend(now - int(m.group(1)) for m in complete)
                pending[fd] = data[complete[-1].end() :] if complete else data[-200:]
    poller.close()
    return found, total


def client_main(
    pipe: Connection, port: int, n: int, subscribe: dict[str, Any] | None, cpu: int | None
) -> None:
    """Child process: open ``n`` clients, then obey the parent's commands until "exit"."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    limit = raise_nofile()
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            socks.append(connect(port, subscribe))
    except OSError as exc:
        pipe.send(("opened", len(socks), f"{exc} (open-files limit {limit})"))
    else:
        pipe.send(("opened", len(socks), ""))
    while True:
        command, *args = pipe.recv()
        if command == "count":
            pipe.send(count_bytes(socks, *args))
        elif command == "latency":
            seconds, every = args
            sample = set(range(0, len(socks), every)) | {len(socks) - 1}
            pipe.send(latencies(socks, sample, seconds))
        elif command == "exit":
            for sock in socks:
                sock.close()
            return
