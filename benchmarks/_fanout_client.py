"""The client side of ``benchmarks/fanout.py`` and ``benchmarks/end_to_end.py``, run in its own
process.

Plain blocking sockets for the handshake and the subscribe, then one epoll loop over every
connection with ``recv_into`` a reused buffer: the cheapest reader Python has, so the server,
not the client, is what is measured. Counting is by bytes (every benchmark message has the same
framed size); the latency runs parse the frames of a sample of connections (``end_to_end.py``:
trade ids that are the fake exchange's send times, see :func:`stamp_latencies`).
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


def connect(port: int, subscribe: dict[str, Any] | None, quiet: bool = True) -> socket.socket:
    """Open one client: handshake, read ``hello``, subscribe and read ``subscribed``.
    ``quiet``: nothing may follow ``subscribed`` yet (the byte-counting runs rely on it)."""
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
    assert not (quiet and buf), "no events before the benchmark starts"
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


_TRADE_STAMPS = re.compile(rb'"id":"(\d+)","timestamp":\d+,"exchangeTime":\d+,"receivedNs":(\d+)')
"""A trade event's id (for ``end_to_end.py``: the fake's monotonic send time) and receipt time."""


def percentiles(values: list[int], points: tuple[float, ...] = (50, 99, 99.9)) -> list[float]:
    """Nearest-rank percentiles of ``values`` (sorted in place), in µs from ns."""
    values.sort()
    if not values:
        return [float("nan")] * len(points)
    return [values[min(len(values) - 1, int(len(values) * p / 100))] / 1000 for p in points]


def stamp_latencies(
    socks: list[socket.socket], sample: set[int], seconds: float, idle_stop: float
) -> dict[str, Any]:
    """Read every socket until nothing arrived for ``idle_stop`` seconds after the first trade
    (at most ``seconds``); on the ``sample`` connections, every trade event's latency from the
    fake's send (its id, ``CLOCK_MONOTONIC`` ns) and from the daemon's receipt (``receivedNs``,
    wall clock) to this read. Returns percentiles in µs and the trades seen per sampled
    connection (the summary, not millions of samples, crosses the pipe), and this process's
    CPU time per second from the first trade to the last."""
    poller, by_fd = _epoll(socks)
    sampled = {socks[i].fileno() for i in sample}
    pending: dict[int, bytes] = dict.fromkeys(sampled, b"")
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    sent_to_read: list[int] = []
    receipt_to_read: list[int] = []
    total = 0
    end = time.perf_counter() + seconds
    last = first = 0.0
    closed = 0
    cpu = time.process_time()
    while True:
        now = time.perf_counter()
        if now > end or (last and now - last > idle_stop):
            break
        for fd, _ in poller.poll(0.05):
            try:
                n = by_fd[fd].recv_into(buf)
            except ConnectionError:
                n = 0
            if not n:  # closed by the server (e.g. a client too far behind): stop polling it
                poller.unregister(fd)
                closed += 1
                continue
            if fd not in sampled:
                total += n
                continue
            mono, wall = time.monotonic_ns(), time.time_ns()
            total += n
            last = time.perf_counter()
            if not first:
                first, cpu = last, time.process_time()
            data = pending[fd] + view[:n].tobytes()
            matches = list(_TRADE_STAMPS.finditer(data))
            # A message split across reads is matched once whole: keep what follows the last
            # complete match (a match ending the data may have lost digits to the next read).
            complete = [m for m in matches if m.end() < len(data)]
            for m in complete:
                sent_to_read.append(mono - int(m.group(1)))
                receipt_to_read.append(wall - int(m.group(2)))
            pending[fd] = data[complete[-1].end() :] if complete else data[-300:]
    poller.close()
    cpu = time.process_time() - cpu
    e2e = percentiles(sent_to_read)
    internal = percentiles(receipt_to_read, (50, 99))
    return {
        "trades_per_connection": len(sent_to_read) / max(1, len(sampled)),
        "e2e_us": e2e,
        "daemon_us": internal,
        "max_us": (sent_to_read[-1] / 1000) if sent_to_read else float("nan"),
        "bytes": total,
        "closed": closed,
        "cpu": cpu / (last - first) if last > first else float("nan"),
    }


def client_main(
    pipe: Connection,
    port: int,
    n: int,
    subscribe: dict[str, Any] | None,
    cpu: int | None,
    quiet: bool = True,
) -> None:
    """Child process: open ``n`` clients, then obey the parent's commands until "exit"."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    limit = raise_nofile()
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            socks.append(connect(port, subscribe, quiet))
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
        elif command == "stamps":
            seconds, idle_stop, every = args
            sample = set(range(0, len(socks), every)) | {len(socks) - 1}
            pipe.send(stamp_latencies(socks, sample, seconds, idle_stop))
        elif command == "exit":
            for sock in socks:
                sock.close()
            return
