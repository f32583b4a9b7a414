"""A Binance-speaking firehose for ``benchmarks/end_to_end.py``, run in its own process.

It speaks just enough of Binance's real protocol for arbd's unmodified Binance adapter: REST
``GET /api/v3/exchangeInfo`` (the answer is :class:`arbd_binance.fake.BinanceFake`'s, computed
once), the combined-stream WebSocket endpoint ``/stream``, ``SUBSCRIBE`` frames acknowledged as
Binance does (``{"result":null,"id":N}``), then ``<symbol>@trade`` events in Binance's own key
order at a paced rate. Plain blocking sockets and threads, frames formatted from a template:
the daemon, not the fake, must be what the benchmark measures.

Each trade's id (``t``) is the fake's ``time.monotonic_ns()`` when it built the frame (bumped by
one when two frames read the same clock, so ids stay unique and increasing). The adapter carries
the id through to the ``trade`` event's ``id`` field, so a subscriber in another process reads
the send time of every message it receives: ``CLOCK_MONOTONIC`` is system-wide on Linux.

Commands on the pipe (each answered once): ``("wait_subscribed", n)`` -> streams subscribed,
once at least ``n`` are; ``("run", rate, seconds)`` -> (frames sent, CPU seconds this process
used meanwhile), at ``rate`` frames/s for ``seconds``; ``("exit",)``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from multiprocessing.connection import Connection

from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from arbd.server.frames import text_frame
from arbd.testing.http import build_response, parse_head, split_head

_TEMPLATE = (
    '{{"stream":"{stream}","data":{{"e":"trade","E":{ms},"s":"{native}","t":{id},'
    '"p":"{price}","q":"0.01000000","T":{ms},"m":{maker},"M":true}}}}'
)


def exchange_info(symbols: list[str]) -> tuple[dict[str, str], bytes]:
    """BinanceFake's exchangeInfo answer (headers, body) for ``symbols``."""
    import trio

    from arbd_binance.fake import BinanceFake

    async def ask() -> tuple[int, dict[str, str], bytes]:
        return BinanceFake(symbols).handle_http("GET", "/api/v3/exchangeInfo", {})

    status, headers, body = trio.run(ask)
    assert status == 200, body
    return headers, body


class Stream:
    """One accepted WebSocket connection: its socket, the streams it subscribed to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()  # acks (reader thread) and data (main thread) share it
        self.streams: list[str] = []
        self.open = True

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


class Firehose:
    def __init__(self, symbols: list[str]) -> None:
        self.info_headers, self.info_body = exchange_info(symbols)
        self.streams: list[Stream] = []
        self.changed = threading.Condition()
        self.last_id = 0

    # -- serving --------------------------------------------------------------------------------

    def accept_loop(self, listener: socket.socket) -> None:
        while True:
            sock, _ = listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def serve(self, sock: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                got = split_head(buffer)
                while got is None:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                    got = split_head(buffer)
                raw, buffer = got
                head = parse_head(raw)
                if head.is_websocket:
                    self.serve_websocket(sock, raw + buffer)
                    return
                if head.path == "/api/v3/exchangeInfo":
                    answer = build_response(
                        200, self.info_headers, self.info_body, keep_alive=head.keep_alive
                    )
                else:
                    body = b'{"code":-1121,"msg":"not simulated by the benchmark firehose"}'
                    answer = build_response(400, {}, body, keep_alive=head.keep_alive)
                sock.sendall(answer)
                if not head.keep_alive:
                    return
        except OSError:
            return
        finally:
            sock.close()

    def serve_websocket(self, sock: socket.socket, raw: bytes) -> None:
        protocol = ServerProtocol(max_size=None)
        protocol.receive_data(raw)
        request = protocol.events_received()[0]
        response = protocol.accept(request)  # type: ignore[arg-type]
        protocol.send_response(response)
        stream = Stream(sock)
        stream.send(b"".join(protocol.data_to_send()))
        with self.changed:
            self.streams.append(stream)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, Frame) and event.opcode == Opcode.TEXT:
                        self.on_request(stream, json.loads(event.data))
                out = b"".join(protocol.data_to_send())  # pongs, the close answer
                if out:
                    stream.send(out)
        finally:
            stream.open = False
            with self.changed:
                self.streams.remove(stream)

    def on_request(self, stream: Stream, request: dict[str, object]) -> None:
        method, params = request.get("method"), request.get("params")
        if method == "SUBSCRIBE" and isinstance(params, list):
            with self.changed:
                stream.streams += [p for p in params if p not in stream.streams]
                self.changed.notify_all()
        elif method == "UNSUBSCRIBE" and isinstance(params, list):
            with self.changed:
                stream.streams = [p for p in stream.streams if p not in params]
        ack = json.dumps({"result": None, "id": request.get("id")}).encode()
        stream.send(text_frame(ack))

    # -- commands -------------------------------------------------------------------------------

    def subscribed(self) -> int:
        return sum(len(s.streams) for s in self.streams)

    def wait_subscribed(self, n: int, timeout: float = 60.0) -> int:
        with self.changed:
            self.changed.wait_for(lambda: self.subscribed() >= n, timeout)
            return self.subscribed()

    def run(self, rate: float, seconds: float) -> int:
        """Send ``rate * seconds`` trade frames to every subscriber, paced: after ``t``
        seconds, ``rate * t`` frames have gone out (whatever was due is sent in one write)."""
        total = int(rate * seconds)
        targets = [(s, [n for n in s.streams if n.endswith("@trade")]) for s in self.streams]
        targets = [(s, names) for s, names in targets if names]
        if not targets:
            return 0
        start = time.monotonic()
        sent = 0
        monotonic_ns, time_ns = time.monotonic_ns, time.time_ns
        while sent < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1) - sent
            if due <= 0:
                time.sleep(max(0.0, start + sent / rate - time.monotonic()))
                continue
            ms = time_ns() // 1_000_000
            for stream, names in targets:
                frames = []
                for i in range(sent, sent + due):
                    stamp = max(monotonic_ns(), self.last_id + 1)
                    self.last_id = stamp
                    name = names[i % len(names)]
                    payload = _TEMPLATE.format(
                        stream=name,
                        ms=ms,
                        native=name.partition("@")[0].upper(),
                        id=stamp,
                        price=f"{100 + i % 997 / 100:.2f}",
                        maker="true" if i % 2 else "false",
                    )
                    frames.append(text_frame(payload.encode()))
                if stream.open:
                    try:
                        stream.send(b"".join(frames))
                    except OSError:
                        stream.open = False
            sent += due
        return sent


def firehose_main(pipe: Connection, symbols: list[str], cpu: int | None) -> None:
    """Child process: serve on a free loopback port (sent first), then obey commands."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    firehose = Firehose(symbols)
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=firehose.accept_loop, args=(listener,), daemon=True).start()
    pipe.send(listener.getsockname()[1])
    while True:
        command, *args = pipe.recv()
        if command == "wait_subscribed":
            pipe.send(firehose.wait_subscribed(*args))
        elif command == "run":
            cpu = time.process_time()
            sent = firehose.run(*args)
            pipe.send((sent, time.process_time() - cpu))
        elif command == "exit":
            return
