"""Fan-out of the local WebSocket server (``arbd.server``) to many subscribers over loopback.

  throughput  aggregate price events/s delivered to N subscribers (default 1,000) that want
              everything; the publisher publishes batches as fast as the writers drain them.
              Also the same through websockets' own trio server with ``await ws.send()`` per
              message and client, the library path this server does not use.
  idle        M idle subscribed connections held (default 10,000): server memory per
              connection, then one event and one burst of 100 events to all of them.
  latency     p50/p99 from the publish time stamp (the ``receivedNs`` a feed stamps at frame
              receipt, set just before ``hub.publish``) to the subscriber's read, at R events/s
              (default 20,000, in 1 ms batches) to 100 subscribers.
  framing     per-message cost of building the frame: ``text_frame`` against websockets'
              ``Frame.serialize``; hub publish cost per delivery to 1,000 subscribers.

The server (real ``serve_websocket``, real ``Hub``) runs in this process; the clients run in a
child process (``_fanout_client.py``: epoll and ``recv_into``, no WebSocket library) so they do
not share the server's event loop. With ``--pin`` (default) they are pinned to different cores.

Run:  python benchmarks/fanout.py [--quick] [--only throughput,idle,latency,framing]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import socket
import sys
import threading
import time
import timeit
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
import trio
import trio.lowlevel
from websockets.frames import Frame, Opcode

from arbd.config import ServerConfig
from arbd.hub import Hub, HubSubscriber
from arbd.model import Quote
from arbd.server.frames import text_frame
from arbd.server.ws import serve_websocket

sys.path.insert(0, os.path.dirname(__file__))
from _child import Child
from _fanout_client import client_main, percentiles, raise_nofile
from _results import emit, report, table

SYMBOLS = [f"S{i:03d}/USDT" for i in range(100)]
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def quote(i: int, received_ns: int) -> Quote:
    # Fixed-width fields: every message has the same size, so clients count bytes.
    return Quote(
        exchange="binance",
        symbol=SYMBOLS[i % len(SYMBOLS)],
        bid=f"{64000 + i % 1000 / 100:.2f}",
        ask=f"{64001 + i % 1000 / 100:.2f}",
        bid_size="0.50000",
        ask_size="1.25000",
        timestamp=received_ns // 1_000_000,
        exchange_time=received_ns // 1_000_000,
        received_ns=received_ns,
        sequence=1_000_000 + i % 1_000_000,
    )


FRAME_SIZE = len(text_frame(msgspec.json.encode(quote(0, time.time_ns()))))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def with_server(
    config: ServerConfig, body: Callable[[Hub, Any], Awaitable[None]], cpu: int | None
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    hub = Hub()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_websocket, config, hub, dict))
        await body(hub, server)
        nursery.cancel_scope.cancel()


async def publish_closed_loop(hub: Hub, batch: int, stop: trio.Event) -> int:
    """Publish ``batch`` events at a time while the subscribers keep up (a sample of them has
    less than one batch pending); returns the events published."""
    n = 0
    while not stop.is_set():
        now = time.time_ns()
        hub.publish([quote(n + i, now) for i in range(batch)])
        n += batch
        sample = hub.subscribers[:: max(1, len(hub.subscribers) // 20)]
        await trio.lowlevel.checkpoint()
        while max(len(s) for s in sample) > batch and not stop.is_set():
            await trio.lowlevel.checkpoint()  # polling: the writers set no event for this
    return n


async def run_throughput(
    args: argparse.Namespace, cpus: tuple[int | None, int | None]
) -> list[list[Any]]:
    rows = []
    config = ServerConfig(
        port=0, max_clients=args.subscribers + 10, buffer=100_000, slow_policy="drop_oldest"
    )
    for batch in args.batches:

        async def body(hub: Hub, server: Any, batch: int = batch) -> None:
            clients = Child(client_main, server.port, args.subscribers, {}, cpus[1])
            _, opened, error = await clients.call()
            assert opened == args.subscribers, error
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_closed_loop, hub, batch, stop)
                total, elapsed, _, _ = await clients.call("count", args.seconds)
                stop.set()
            clients.close()
            rate = total / FRAME_SIZE / elapsed
            rows.append(
                [
                    f"arbd, publishes of {batch} events",
                    args.subscribers,
                    rate,
                    total / elapsed / 1e6,
                ]
            )

        await with_server(config, body, cpus[0])
    rows.append(await run_websockets_trio(args, cpus))
    return rows


async def run_websockets_trio(
    args: argparse.Namespace, cpus: tuple[int | None, int | None]
) -> list[Any]:
    """The same fan-out through websockets.trio: one HubSubscriber per client drained by its
    handler, ``await ws.send(message, text=True)`` per message."""
    from websockets.trio.server import serve

    if cpus[0] is not None:
        os.sched_setaffinity(0, {cpus[0]})
    hub = Hub()
    result: list[Any] = []
    batch = args.batches[-1]

    async def handler(ws: Any) -> None:
        ready = trio.Event()
        box = [ready]

        def wake() -> None:
            box[0].set()

        sub: HubSubscriber = hub.subscribe(
            capacity=100_000, policy="drop_oldest", encoded=True, wake=wake
        )
        await ws.send('{"type":"hello"}')
        await ws.recv()  # the subscribe
        await ws.send('{"type":"subscribed"}')
        try:
            while True:
                await box[0].wait()
                box[0] = trio.Event()
                for item in sub.drain():
                    await ws.send(item, text=True)
        finally:
            hub.unsubscribe(sub)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(serve, handler, 0, host="127.0.0.1", compression=None, ping_interval=None)
        )
        port = server.listeners[0].socket.getsockname()[1]
        clients = Child(client_main, port, args.subscribers, {}, cpus[1])
        _, opened, error = await clients.call()
        assert opened == args.subscribers, error
        stop = trio.Event()
        async with trio.open_nursery() as inner:
            inner.start_soon(publish_closed_loop, hub, batch, stop)
            total, elapsed, _, _ = await clients.call("count", args.seconds)
            stop.set()
        clients.close()
        rate = total / FRAME_SIZE / elapsed
        result = [
            f"websockets.trio, `await ws.send()` per message and client, publishes of {batch}",
            args.subscribers,
            rate,
            total / elapsed / 1e6,
        ]
        nursery.cancel_scope.cancel()
    return result


async def run_idle(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> list[Any]:
    """[wanted, held, open-files limit, s to open all, RSS before/after MB, KB per connection,
    ms until the last of 1 event to all was read, the same for 100 events]."""
    limit = raise_nofile()
    config = ServerConfig(port=0, max_clients=args.idle + 10, buffer=1000)
    row: list[Any] = []

    async def body(hub: Hub, server: Any) -> None:
        before = rss_mb()
        started = time.perf_counter()
        clients = Child(
            client_main, server.port, args.idle, {"symbols": [], "channels": ["price"]}, cpus[1]
        )
        _, _, error = await clients.call()
        took = time.perf_counter() - started
        after = rss_mb()
        held = len(server.clients)
        if error:
            print(f"idle: {held:,} of {args.idle:,} held: {error}", file=sys.stderr)
        per = (after - before) * 1024 / max(1, held)
        row.extend([args.idle, held, limit, took, before, after, per])
        for count in (1, 100):
            expected = count * held * FRAME_SIZE
            clients.pipe.send(("count", 60.0, 1.0))
            await trio.sleep(0.5)  # the client is reading
            published = time.time()
            hub.publish([quote(i, time.time_ns()) for i in range(count)])
            total, _, _, last = await clients.call()
            if total != expected:
                print(f"idle: {count} event(s): {total}/{expected} bytes", file=sys.stderr)
            row.append((last - published) * 1000 if total == expected else None)
        clients.close()

    await with_server(config, body, cpus[0])
    return row


LATENCY_COLUMNS = [
    ("load", ""),
    ("msgs/s delivered", ",.0f"),
    ("p50 µs", ",.0f"),
    ("p99 µs", ",.0f"),
    ("max µs", ",.0f"),
    ("samples", ",d"),
]
"""The columns ``latency_cells`` fills, shared by the arbd and the floor latency tables."""


def latency_cells(
    args: argparse.Namespace, subscribers: int, found: list[int], total: int
) -> list[Any]:
    """One latency row's common cells from the sampled latencies (ns) and the bytes read."""
    p50, p99, top = percentiles(found, (50, 99, 100))
    return [
        f"{args.rate:,} events/s to {subscribers} subscribers",
        total / FRAME_SIZE / args.seconds,
        p50,
        p99,
        top,
        len(found),
    ]


async def run_latency(
    args: argparse.Namespace, cpus: tuple[int | None, int | None]
) -> list[list[Any]]:
    return [await _latency(args, cpus, n) for n in args.latency_subscribers]


async def _latency(
    args: argparse.Namespace, cpus: tuple[int | None, int | None], subscribers: int
) -> list[Any]:
    config = ServerConfig(port=0, buffer=100_000, slow_policy="drop_oldest")
    rows: list[list[Any]] = []

    async def body(hub: Hub, server: Any) -> None:
        clients = Child(client_main, server.port, subscribers, {}, cpus[1])
        _, opened, error = await clients.call()
        assert opened == subscribers, error
        stop = trio.Event()

        async def publish() -> None:
            # 1 ms ticks: each publish is one batch stamped at its "frame receipt".
            start = trio.current_time()
            sent = 0
            while not stop.is_set():
                due = int((trio.current_time() - start) * args.rate) - sent
                if due > 0:
                    now = time.time_ns()
                    hub.publish([quote(sent + i, now) for i in range(due)])
                    sent += due
                await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            found, total = await clients.call("latency", args.seconds, args.sample_every)
            stop.set()
        clients.close()
        flusher = server.flusher
        per_pass = flusher.busy / max(1, flusher.passes) * 1e6
        per_write = flusher.busy / max(1, flusher.flushes) * 1e6
        rows.append([*latency_cells(args, subscribers, found, total), per_pass, per_write])

    await with_server(config, body, cpus[0])
    return rows[0]


# -- the floor: what no Python server can beat on this machine ----------------------------------


def _floor_accept(listener: socket.socket, n: int) -> list[socket.socket]:
    """Accept ``n`` clients with the least a WebSocket server must do: the 101 answer, a
    ``hello``, then ``subscribed`` once the client's subscribe arrives."""
    hello = text_frame(b'{"type":"hello"}')
    subscribed = text_frame(b'{"type":"subscribed"}')
    socks = []
    for _ in range(n):
        sock, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += sock.recv(65536)
        key = re.search(rb"Sec-WebSocket-Key: *(\S+)", request, re.IGNORECASE)
        assert key is not None, request
        accept = base64.b64encode(hashlib.sha1(key.group(1) + _WS_GUID).digest())
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" + hello
        )
        sock.recv(65536)  # the subscribe frame (its content does not matter here)
        sock.sendall(subscribed)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def _floor_publish(
    socks: list[socket.socket], rate: int, stop: threading.Event, refused: list[int]
) -> None:
    """Every 1 ms: the due events framed and joined once, then one ``os.write`` per client
    (nothing per client but the system call; a write the kernel refuses is dropped and
    counted in ``refused[0]``: the clients' byte count then shows the loss)."""
    fds = [sock.fileno() for sock in socks]
    start = time.perf_counter()
    sent = 0
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate) - sent
        if due > 0:
            now = time.time_ns()
            data = b"".join(
                text_frame(msgspec.json.encode(quote(sent + i, now))) for i in range(due)
            )
            sent += due
            for fd in fds:
                try:
                    os.write(fd, data)
                except BlockingIOError:
                    refused[0] += 1
        time.sleep(0.001)


async def run_floor(
    args: argparse.Namespace, cpus: tuple[int | None, int | None]
) -> list[list[Any]]:
    """The latency run against the floor server instead of arbd, same clients and rate."""
    rows = []
    if cpus[0] is not None:
        os.sched_setaffinity(0, {cpus[0]})
    for subscribers in args.latency_subscribers:
        listener = socket.create_server(("127.0.0.1", 0), backlog=subscribers)
        clients = Child(client_main, listener.getsockname()[1], subscribers, {}, cpus[1])
        socks, (_, opened, error) = await _together(
            partial(trio.to_thread.run_sync, _floor_accept, listener, subscribers), clients.call
        )
        assert opened == subscribers, error
        stop = threading.Event()
        refused = [0]
        publisher = threading.Thread(target=_floor_publish, args=(socks, args.rate, stop, refused))
        publisher.start()
        found, total = await clients.call("latency", args.seconds, args.sample_every)
        stop.set()
        publisher.join()
        clients.close()
        for sock in socks:
            sock.close()
        listener.close()
        rows.append([*latency_cells(args, subscribers, found, total), refused[0]])
    return rows


async def _together(
    first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]]
) -> tuple[Any, Any]:
    results: list[Any] = [None, None]

    async def one(i: int, fn: Callable[[], Awaitable[Any]]) -> None:
        results[i] = await fn()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, 0, first)
        nursery.start_soon(one, 1, second)
    return results[0], results[1]


def run_framing() -> list[list[Any]]:
    payload = msgspec.json.encode(quote(0, time.time_ns()))
    n = 200_000
    ours = timeit.timeit(lambda: text_frame(payload), number=n) / n * 1e9
    library = (
        timeit.timeit(
            lambda: Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[]), number=n
        )
        / n
        * 1e9
    )
    rows: list[list[Any]] = [
        [f"`text_frame` ({len(payload)}-byte payload)", ours],
        ["websockets `Frame(...).serialize()`", library],
    ]
    for policy in ("drop_oldest", "conflate"):
        hub = Hub()
        subs = [
            hub.subscribe(capacity=100_000, policy=policy, wire=text_frame) for _ in range(1000)
        ]
        for batch in (1, 20, 100):
            events = [quote(i, 0) for i in range(batch)]
            rounds = max(1, 2000 // batch)
            started = time.perf_counter()
            for _ in range(rounds):
                hub.publish(events)
                for sub in subs:
                    b"".join(sub.drain())  # type: ignore[arg-type]
            per = (time.perf_counter() - started) / (rounds * batch * len(subs)) * 1e9
            rows.append(
                [
                    f"hub publish + drain + join per delivery, 1,000 `{policy}` subscribers, "
                    f"batches of {batch}",
                    per,
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds in total")
    parser.add_argument("--only", default="throughput,idle,latency,floor,framing")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--latency-subscribers", default="100,10", help="one run per count")
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument(
        "--sample-every", type=int, default=25, help="latency: parse every Nth connection"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batches", default="10,100", help="events per publish (throughput)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server/clients to cores")
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.latency_subscribers = [int(n) for n in str(args.latency_subscribers).split(",")]
    if args.quick:
        args.subscribers, args.idle, args.seconds = 100, 500, 1.0
        args.latency_subscribers, args.rate, args.batches = [20], 5000, [100]
    only = set(args.only.split(","))
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    cpus: tuple[int | None, int | None] = (0, 1) if pin else (None, None)
    print(f"frame size {FRAME_SIZE} bytes; server on cpu {cpus[0]}, clients on cpu {cpus[1]}")
    tables = []
    if "throughput" in only:
        rows = trio.run(run_throughput, args, cpus)
        tables.append(
            table(
                f"Throughput: price events ({FRAME_SIZE} bytes framed) to subscribers that "
                "want everything",
                [
                    ("server", ""),
                    ("subscribers", ",d"),
                    ("msgs/s delivered", ",.0f"),
                    ("MB/s", ",.0f"),
                ],
                rows,
            )
        )
    if "idle" in only:
        row = trio.run(run_idle, args, cpus)
        tables.append(
            table(
                "Idle connections (each connected, greeted, subscribed to `price`)",
                [
                    ("wanted", ",d"),
                    ("held", ",d"),
                    ("open-files limit", ",d"),
                    ("s to open all", ".1f"),
                    ("server RSS before MB", ",.0f"),
                    ("after MB", ",.0f"),
                    ("KB per connection", ".1f"),
                    ("1 event to all: last read after ms", ",.0f"),
                    ("100 events to all: ms", ",.0f"),
                ],
                [row],
            )
        )
    if "latency" in only:
        rows = trio.run(run_latency, args, cpus)
        tables.append(
            table(
                "Latency, publish to subscriber read",
                [
                    *LATENCY_COLUMNS,
                    ("flusher pass µs", ",.0f"),
                    ("µs per client write", ".1f"),
                ],
                rows,
            )
        )
    if "floor" in only:
        rows = trio.run(run_floor, args, cpus)
        tables.append(
            table(
                "Latency floor: the same clients, rate and frames from a server that does "
                "nothing but one os.write per client per 1 ms tick",
                [*LATENCY_COLUMNS, ("writes refused", ",d")],
                rows,
            )
        )
    if "framing" in only:
        tables.append(table("Cost per message", [("step", ""), ("ns", ",.0f")], run_framing()))
    command = "python benchmarks/fanout.py " + " ".join(sys.argv[1:])
    notes = [
        f"server (real serve_websocket and Hub) on cpu {cpus[0]}, clients in another process "
        f"on cpu {cpus[1]}, read with epoll and recv_into"
    ]
    emit(report("fanout", "Fan-out and capacity", command, tables, notes), args.json)


if __name__ == "__main__":
    main()
