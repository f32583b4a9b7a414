"""Costs of the daemon's runtime API: what it adds to the hot path, and a status() call.

Run:  python benchmarks/runtime.py [--symbols 100] [--batches 50000] [--runs 5] [--json PATH]

publish      ``hub.publish`` of batches of 5 quotes (one exchange, one socket read) with the
             arbitrage engine as the hub's processor directly, and as the daemon installs it
             (wrapped to keep the history of closed opportunities for ``opportunities()``).
             The difference is what the runtime API costs per socket read.
status       ``Daemon.status()`` on a daemon running against a simplex fake that lists
             ``--symbols`` symbols, all subscribed on every channel (50 streams per
             connection), with data flowing; per call.
add_symbols  wall time of ``add_symbols`` for 10 symbols, and until the first quote of each
             arrives (loopback; connection set-up included).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import trio

from arbd.arbitrage.engine import ArbitrageEngine
from arbd.config import ArbitrageConfig, Config, load_config
from arbd.daemon import Daemon
from arbd.hub import Hub
from arbd.model import Event, Quote
from arbd.plugins import load_plugins
from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

sys.path.insert(0, os.path.dirname(__file__))
from _results import emit, report, table

T0 = 1_700_000_000_000_000_000


def quotes(n_batches: int) -> list[list[Event]]:
    """Batches of 5 quotes, calm prices on 5 exchanges x 20 symbols."""
    batches: list[list[Event]] = []
    now = T0
    for b in range(n_batches):
        batch: list[Event] = []
        for i in range(5):
            now += 10_000
            price = 100.0 + (b + i) % 7 * 0.01
            batch.append(
                Quote(
                    exchange=f"ex{b % 5}",
                    symbol=f"S{(b * 5 + i) % 20:02d}/USDT",
                    bid=f"{price:.2f}",
                    ask=f"{price + 0.01:.2f}",
                    bid_size="1",
                    ask_size="1",
                    timestamp=now // 1_000_000,
                    received_ns=now,
                )
            )
        batches.append(batch)
    return batches


def time_publish(wrapped: bool, batches: list[list[Event]]) -> float:
    """µs per batch."""
    fees = {f"ex{i}": 0.1 for i in range(5)}
    engine = ArbitrageEngine(ArbitrageConfig(), fees)
    if wrapped:
        # A daemon without exchanges, running this engine behind its own processor.
        daemon = Daemon(Config(), load_plugins(env={"ARBD_LOAD_PLUGINS": "simplex"}))
        daemon.engine = engine
        hub = daemon.hub
    else:
        hub = Hub()
        hub.add_processor(engine)
    gc.collect()
    started = time.perf_counter()
    for batch in batches:
        hub.publish(batch)
    return (time.perf_counter() - started) / len(batches) * 1e6


async def time_status(n_symbols: int) -> tuple[float, int, float, float]:
    """(µs per status() call, connections, add_symbols s, s until every new symbol quoted)."""
    symbols = [f"S{i:03d}/USDT" for i in range(n_symbols + 10)]
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "simplex"})
    async with open_fake(SimplexFake(symbols)) as fake:
        with TemporaryDirectory() as tmp:
            path = Path(tmp) / "arbd.toml"
            quoted = ", ".join(f'"{s}"' for s in symbols[:n_symbols])
            path.write_text(
                "[exchanges.simplex]\n"
                f"symbols = [{quoted}]\n"
                f'ws_url = "{fake.adapter_ws_url()}"\nrest_url = "{fake.rest_url}"\n'
            )
            daemon = Daemon(load_config(path), registry, config_path=path)
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                fake.start_soon(fake.run_feed, 10.0)
                # Hub state has no change notification; polling is what a client would do.
                while len(daemon.hub.state.quotes) < n_symbols:  # noqa: ASYNC110
                    await trio.sleep(0.05)
                calls = 2_000
                started = time.perf_counter()
                for _ in range(calls):
                    status = daemon.status()
                per_call = (time.perf_counter() - started) / calls * 1e6
                connections = status.exchanges[0].connections
                new = symbols[n_symbols:]
                started = time.perf_counter()
                await daemon.add_symbols("simplex", new)
                added = time.perf_counter() - started
                while not all(("simplex", s) in daemon.hub.state.quotes for s in new):  # noqa: ASYNC110
                    await trio.sleep(0.001)
                flowing = time.perf_counter() - started
                daemon.request_stop()
    return per_call, connections, added, flowing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--batches", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()
    batches = quotes(args.batches)
    direct: list[float] = []
    wrapped: list[float] = []
    for _ in range(args.runs):  # interleaved, so machine noise hits both alike
        direct.append(time_publish(False, batches))
        wrapped.append(time_publish(True, batches))
    per_call, connections, added, flowing = trio.run(time_status, args.symbols)
    publish = table(
        f"hub.publish, µs per batch of 5 quotes, median and best of {args.runs} runs "
        f"of {args.batches:,} batches",
        [("processor", ""), ("median µs", ",.2f"), ("best µs", ",.2f")],
        [
            ["the engine as the hub's processor", statistics.median(direct), min(direct)],
            [
                "the daemon's processor (engine + history of closes)",
                statistics.median(wrapped),
                min(wrapped),
            ],
        ],
    )
    daemon = table(
        "Daemon.status() with data flowing, and add_symbols of 10 symbols (loopback fake)",
        [
            ("symbols", ",d"),
            ("connections", ",d"),
            ("status() µs per call", ",.1f"),
            ("add_symbols returned, ms", ",.1f"),
            ("all 10 quoted, ms", ",.1f"),
        ],
        [[args.symbols, connections, per_call, added * 1e3, flowing * 1e3]],
    )
    notes = [
        "the two publish rows differ by what the runtime API adds per socket read",
        "status(): every symbol subscribed on every channel; add_symbols' second figure "
        "includes the new connection's set-up and the fake's next round (10 rounds/s)",
    ]
    command = "python benchmarks/runtime.py " + " ".join(sys.argv[1:])
    emit(report("runtime", "Runtime API", command, [publish, daemon], notes), args.json)


if __name__ == "__main__":
    main()
