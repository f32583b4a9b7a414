"""Memory at scale: the daemon's RSS with 5 exchanges x 200 symbols x depth-50 books, and over time.

The fakes (``arbd.cli.demo.create_fakes`` with ``synthetic_symbols(--symbols)``: every exchange
lists ``C000/USDT`` ... on one shared simulated market, books 50 levels deep) run in a child
process, so this process is the daemon alone: a real :class:`arbd.daemon.Daemon` configured by
``arbd.cli.demo.demo_config`` for those symbols on every channel, ``book_depth = 50``, with its
local WebSocket server, metrics endpoint and control socket, as ``arbd demo`` runs it.

Reported: the daemon's RSS (``VmRSS`` of this process) before the feeds start and once every
book of every market has been published valid (with the time that took and the depth of the
books held), the fakes' process RSS for scale, then RSS sampled every ``--interval`` seconds for
``--minutes``: after a warm-up (the first minute, or half of a shorter run), the least-squares
slope (MB per minute) and the growth from the first to the last
sample.

Run:  python benchmarks/memory.py [--symbols 200] [--minutes 5] [--rate 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import trio

from arbd.cli.demo import create_fakes, demo_config, demo_exchanges
from arbd.config import Config, ControlConfig, LoggingConfig, MetricsConfig, ServerConfig
from arbd.daemon import Daemon
from arbd.plugins import load_plugins
from arbd.testing.fake import FakeExchangeServer, run_fakes
from arbd.testing.marketfake import synthetic_symbols

sys.path.insert(0, os.path.dirname(__file__))
from _child import Child
from _results import emit, report, table


def rss_mb(pid: str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fakes_main(pipe: Connection, symbols: list[str], rate: float, cpu: int | None) -> None:
    """Child process: every installed market fake, serving; sends {exchange: (ws, rest)}."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    registry = load_plugins()
    exchanges = demo_exchanges(registry, Config())

    async def serve() -> None:
        fakes = create_fakes(registry, exchanges, symbols=symbols)
        async with trio.open_nursery() as nursery:
            await nursery.start(run_fakes, list(fakes.values()))
            pipe.send({ex: (f.adapter_ws_url(), f.rest_url) for ex, f in fakes.items()})
            for fake in fakes.values():
                nursery.start_soon(fake.run_feed, rate)
            await trio.to_thread.run_sync(pipe.recv)  # any message: stop
            nursery.cancel_scope.cancel()

    trio.run(serve)


class Endpoint(FakeExchangeServer):
    """Where a fake in the child process listens, for :func:`demo_config`."""

    def __init__(self, ws_url: str, rest_url: str) -> None:
        super().__init__()
        self._ws_url, self._rest_url = ws_url, rest_url

    def adapter_ws_url(self) -> str:
        return self._ws_url

    @property
    def rest_url(self) -> str:
        return self._rest_url


def daemon_config(
    registry: Any, endpoints: dict[str, tuple[str, str]], symbols: list[str], socket: str
) -> Config:
    base = Config(
        server=ServerConfig(port=0),
        control=ControlConfig(socket=socket),
        metrics=MetricsConfig(port=0),
        logging=LoggingConfig(level="warning"),
    )
    fakes = {ex: Endpoint(*urls) for ex, urls in endpoints.items()}
    config = demo_config(base, registry, fakes, symbols)  # type: ignore[arg-type]
    exchanges = {
        ex: msgspec.structs.replace(settings, book_depth=50)
        for ex, settings in config.exchanges.items()
    }
    return msgspec.structs.replace(config, exchanges=exchanges)


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 2:
        return float("nan")
    xs = [t for t, _ in samples]
    ys = [m for _, m in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


async def run(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    symbols = synthetic_symbols(args.symbols)
    fakes = Child(fakes_main, symbols, args.rate, cpus[0])
    result: dict[str, Any] = {}
    try:
        endpoints = await fakes.call()
        registry = load_plugins()
        with tempfile.TemporaryDirectory() as tmp:
            config = daemon_config(registry, endpoints, symbols, str(Path(tmp) / "control.sock"))
            gc.collect()
            result["rss_before"] = rss_mb()
            daemon = Daemon(config, registry, metrics_any_port=True)
            wanted = {(ex, s) for ex in endpoints for s in symbols}
            async with trio.open_nursery() as nursery:
                started = time.perf_counter()
                await nursery.start(daemon.run)
                state = daemon.hub.state
                with trio.move_on_after(args.valid_timeout):
                    # The hub has no "all valid" notification; polling is what a client does.
                    while sum(state.book_state.get(k) == "valid" for k in wanted) < len(wanted):  # noqa: ASYNC110
                        await trio.sleep(0.5)
                valid = sum(state.book_state.get(k) == "valid" for k in wanted)
                missing: dict[str, dict[str, int]] = {}
                for ex, symbol in wanted:
                    book = state.book_state.get((ex, symbol), "never published")
                    if book != "valid":
                        by_state = missing.setdefault(ex, {})
                        by_state[book] = by_state.get(book, 0) + 1
                if missing:
                    print(f"books not valid: {missing}", file=sys.stderr)
                result["missing"] = missing
                result["valid"], result["markets"] = valid, len(wanted)
                result["valid_after"] = time.perf_counter() - started
                result["rss_valid"] = rss_mb()
                result["fakes_rss"] = rss_mb(str(fakes.process.pid))
                depths = [min(len(b.bids), len(b.asks)) for b in state.books.values()]
                result["depth"] = statistics.median(depths) if depths else 0
                result["exchanges"] = len(endpoints)
                samples: list[tuple[float, float]] = []
                published = daemon.hub.published
                t0 = time.perf_counter()
                end = t0 + args.minutes * 60
                while time.perf_counter() < end:
                    await trio.sleep(args.interval)
                    samples.append((time.perf_counter() - t0, rss_mb()))
                    print(
                        f"{samples[-1][0]:7.0f} s  RSS {samples[-1][1]:7.1f} MB  "
                        f"valid books {sum(v == 'valid' for v in state.book_state.values())}",
                        file=sys.stderr,
                        flush=True,
                    )
                elapsed = time.perf_counter() - t0
                result["events_per_s"] = (daemon.hub.published - published) / max(elapsed, 1e-9)
                result["samples"] = samples
                result["fakes_rss_end"] = rss_mb(str(fakes.process.pid))
                daemon.request_stop()
    finally:
        fakes.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, default=200, help="per exchange")
    parser.add_argument("--minutes", type=float, default=5.0, help="the long run (0: none)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=2.0, help="the fakes' rounds per second")
    parser.add_argument("--valid-timeout", type=float, default=300.0)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cores) >= 2
    cpus: tuple[int | None, int | None] = (cores[0], cores[1]) if pin else (None, None)
    if cpus[1] is not None:
        os.sched_setaffinity(0, {cpus[1]})
    r = trio.run(run, args, cpus)
    samples = r["samples"]
    warm = min(60.0, args.minutes * 60 / 2)
    steady = [(t, m) for t, m in samples if t >= warm]
    scale = f"{r['exchanges']} exchanges x {args.symbols} symbols"
    at_scale = table(
        f"Daemon RSS, {scale}, every channel, book_depth 50",
        [
            ("measure", ""),
            ("MB", ",.1f"),
        ],
        [
            ["daemon before the feeds start", r["rss_before"]],
            ["daemon once every book is valid", r["rss_valid"]],
            ["the fakes' process (not the daemon), for scale", r["fakes_rss"]],
        ],
    )
    facts = table(
        "Reaching it",
        [("measure", ""), ("value", ",.1f")],
        [
            ["books valid / markets", f"{r['valid']:,} / {r['markets']:,}"],
            ["seconds until every book was valid", r["valid_after"]],
            ["median depth of the books held (levels per side)", r["depth"]],
        ],
    )
    tables = [at_scale, facts]
    if steady:
        first, last = steady[0][1], steady[-1][1]
        tables.append(
            table(
                f"RSS over {args.minutes:g} minutes, sampled every {args.interval:g} s",
                [("measure", ""), ("value", ",.2f")],
                [
                    ["warm-up left out (s)", warm],
                    ["samples after warm-up", len(steady)],
                    ["RSS after warm-up, first sample (MB)", first],
                    ["RSS at the end (MB)", last],
                    ["RSS max after warm-up (MB)", max(m for _, m in steady)],
                    ["growth, first to last (MB)", last - first],
                    ["slope (MB per minute, least squares)", slope_mb_per_min(steady)],
                    ["events published per second meanwhile", r["events_per_s"]],
                    ["the fakes' RSS at the end (MB)", r["fakes_rss_end"]],
                ],
            )
        )
    command = "python benchmarks/memory.py " + " ".join(sys.argv[1:])
    notes = [
        f"fakes at {args.rate:g} rounds/s per exchange, in their own process"
        + (f" on cpu {cpus[0]}; the daemon on cpu {cpus[1]}" if pin else ""),
        "target: ≤ 150 MB once every book is valid; flat (no growth) after warm-up",
    ]
    emit(report("memory", "Memory at scale", command, tables, notes), args.json)


if __name__ == "__main__":
    main()
