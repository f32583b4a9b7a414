"""Ingest benchmark: frames/s from a loopback firehose through a WebSocket client into the hub.

Three clients receive the same recorded-style frames (simplex trade messages, ~150 bytes) and
hand every message to the same trivial adapter session and the hub:

  arbd             arbd.feed: websockets Sans-I/O over a trio stream, one socket read handled
                   synchronously (the production path: ``arbd.feed.connection.Connection``)
  websockets.trio  websockets' own trio client, ``await ws.recv()`` per message
  trio-websocket   ``await ws.get_message()`` per message

The firehose runs in another process pinned to another core; the client is pinned to one core.
``transport only`` is the calibration row: the Sans-I/O transport with no adapter and no hub.
Run:  python benchmarks/ingest.py [--frames 300000] [--runs 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import trio

from arbd.exchange.adapter import AdapterSettings, ConnectionPlan
from arbd.feed.clock import TrioClock
from arbd.feed.connection import Connection
from arbd.feed.transport import RECEIVE_SIZE, connect, make_tcp_opener
from arbd.hub import Hub
from arbd.model import Event, Subscription
from arbd_simplex.adapter import SimplexAdapter

sys.path.insert(0, os.path.dirname(__file__))
from _firehose import start_firehose
from _results import emit, report, table

SYMBOLS = ("BTC/USDT", "ETH/USDT")


def make_messages(n: int = 4096) -> list[bytes]:
    out = []
    for i in range(n):
        sym = "BTC-USDT" if i % 2 == 0 else "ETH-USDT"
        price = f"{64000 + (i % 500) / 100:.2f}"
        out.append(
            (
                f'{{"ch":"trades","s":"{sym}","seq":{i},"ts":{1700000000000 + i},'
                f'"p":"{price}","q":"0.0{i % 90 + 10}","side":"{"buy" if i % 3 else "sell"}",'
                f'"id":"{i}"}}'
            ).encode()
        )
    return out


def new_pipeline() -> tuple[SimplexAdapter, Hub]:
    adapter = SimplexAdapter(
        AdapterSettings(
            ws_url="ws://127.0.0.1:1/ws",
            rest_url="http://127.0.0.1:1",
            symbols=SYMBOLS,
            channels=("trades",),
        )
    )
    adapter.instruments = {}
    from arbd.exchange.adapter import Instrument

    for sym in SYMBOLS:
        base, quote = sym.split("/")
        adapter.instruments[sym] = Instrument(
            symbol=sym,
            native=f"{base}-{quote}",
            base=base,
            quote=quote,
            tick_size="0.01",
            lot_size="0.0001",
            price_precision=2,
            size_precision=4,
        )
    hub = Hub()
    hub.subscribe(capacity=1024, policy="conflate")  # one consumer, as a local client would be
    return adapter, hub


def plan() -> ConnectionPlan:
    return ConnectionPlan(
        url="ws://x/ws", subscriptions=tuple(Subscription("trades", s) for s in SYMBOLS)
    )


class Counter:
    def __init__(self, hub: Hub, target: int) -> None:
        self.hub = hub
        self.target = target
        self.count = 0
        self.done = trio.Event()

    def sink(self, events: list[Event]) -> None:
        self.hub.publish(events)
        self.count += len(events)
        if self.count >= self.target:
            self.done.set()


async def run_arbd(url: str, frames: int) -> float:
    adapter, hub = new_pipeline()
    counter = Counter(hub, frames)
    client = await connect(url, make_tcp_opener(), max_size=None, connect_timeout=10)
    started = time.perf_counter()
    from arbd.exchange.adapter import ExchangeSpec, Keepalive

    spec = ExchangeSpec(
        id="simplex",
        name="bench",
        ws_url=url,
        rest_url="",
        channels=("trades",),
        continuous_channels=(),
        keepalive=Keepalive(protocol_ping_interval=None, idle_timeout=60),
    )
    conn = Connection(
        conn_id="bench",
        spec=spec,
        session=adapter.new_session(plan()),
        client=client,
        sink=counter.sink,
        clock=TrioClock(),
        stale_after=60,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        await counter.done.wait()
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    await client.close()
    return frames / elapsed


async def run_websockets_trio(url: str, frames: int) -> float:
    from websockets.trio.client import connect as ws_connect

    adapter, hub = new_pipeline()
    session = adapter.new_session(plan())
    counter = Counter(hub, frames)
    async with ws_connect(url, max_size=None, compression=None) as ws:
        started = time.perf_counter()
        clock = TrioClock()
        while counter.count < frames:
            message = await ws.recv(decode=False)
            out: list[Event] = []
            session.receive(message, True, clock.wall_ns(), out)
            counter.sink(out)
        return frames / (time.perf_counter() - started)


async def run_trio_websocket(url: str, frames: int) -> float:
    from trio_websocket import open_websocket_url

    adapter, hub = new_pipeline()
    session = adapter.new_session(plan())
    counter = Counter(hub, frames)
    async with open_websocket_url(url, max_message_size=2**24) as ws:
        started = time.perf_counter()
        clock = TrioClock()
        while counter.count < frames:
            message = await ws.get_message()
            data = message.encode() if isinstance(message, str) else message
            out: list[Event] = []
            session.receive(data, True, clock.wall_ns(), out)
            counter.sink(out)
        return frames / (time.perf_counter() - started)


async def run_transport_only(url: str, frames: int) -> float:
    """Calibration: the Sans-I/O transport alone (no adapter, no hub). The design reference
    measured ~508k msgs/s for this path; the ratio to it says how fast this machine is."""
    client = await connect(url, make_tcp_opener(), max_size=None, connect_timeout=10)
    received = 0
    started = time.perf_counter()
    while received < frames:
        received += len(client.feed(await client.stream.receive_some(RECEIVE_SIZE)))
    elapsed = time.perf_counter() - started
    await client.close()
    return frames / elapsed


CLIENTS: dict[str, Callable[[str, int], Awaitable[float]]] = {
    "transport only": run_transport_only,
    "arbd": run_arbd,
    "websockets.trio": run_websockets_trio,
    "trio-websocket": run_trio_websocket,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()

    messages = make_messages()
    cores = sorted(os.sched_getaffinity(0))
    process, port = start_firehose(messages, args.frames)
    if len(cores) > 1:
        os.sched_setaffinity(process.pid, {cores[0]})
        os.sched_setaffinity(0, {cores[1]})
    url = f"ws://127.0.0.1:{port}/ws"
    results: dict[str, list[float]] = {name: [] for name in CLIENTS}
    try:
        for _ in range(args.runs):
            for name, client in CLIENTS.items():
                try:
                    results[name].append(trio.run(client, url, args.frames))
                except ImportError as exc:
                    print(f"skipping {name}: {exc}", file=sys.stderr)
    finally:
        process.kill()
    medians = {name: statistics.median(v) for name, v in results.items() if v}
    size = statistics.mean(len(m) for m in messages)
    labels = {
        "transport only": "transport only (calibration: no adapter, no hub)",
        "arbd": "arbd (arbd.feed Connection + simplex adapter + hub)",
        "websockets.trio": "websockets.trio (await ws.recv() per message, same adapter + hub)",
        "trio-websocket": "trio-websocket (await ws.get_message() per message, same work)",
    }
    arbd = medians.get("arbd")
    result = table(
        f"Frames/s from a loopback firehose, {args.frames:,} frames of ~{round(size)} B, "
        f"median of {args.runs} run{'s' if args.runs != 1 else ''}",
        [("client", ""), ("frames/s", ",.0f"), ("arbd is x faster", ",.2f")],
        [[labels[name], value, arbd / value if arbd else None] for name, value in medians.items()],
    )
    notes = [
        "the firehose process and the client are pinned to different cores"
        if len(cores) > 1
        else "one core: the firehose and the client share it",
        "the design reference measured ~508k msgs/s for the calibration row; the ratio to it "
        "says how fast this machine is",
    ]
    notes += [f"skipped (not installed): {name}" for name, v in results.items() if not v]
    command = "python benchmarks/ingest.py " + " ".join(sys.argv[1:])
    emit(report("ingest", "Ingest from a loopback firehose", command, [result], notes), args.json)


if __name__ == "__main__":
    main()
