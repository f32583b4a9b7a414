"""Cost of the arbitrage engine per quote update and per book update (with the depth walk).

Run:  python benchmarks/arbitrage.py [--exchanges 5] [--symbols 100] [--updates 200000] [--runs 5]
      [--book-updates 50000] [--json PATH]

The engine runs as the hub runs it: ``engine(batch)`` on batches of events from one exchange
(one socket read), here 5 events each. Every leg is primed first, so each update scans a full
quote group (5 legs). Scenarios:

quotes, calm        prices agree within fees: every update scans its group, nothing opens
quotes, dislocated  one exchange sits 0.5 % high on a fifth of the symbols: those pairs open,
                    and updates of their legs re-judge them (rate-limited ``update`` events)
books, calm         20-level book events (top of book from level 0), nothing opens
books, walking      every symbol dislocated and ``update_interval = 0``,
                    ``update_min_change_pct = 0``: every update of a leg of an open pair
                    publishes an ``update`` event, i.e. walks both books and the profit curve
                    (the worst case; live, ``update_interval`` rate-limits it to 1/s/pair)

Times are per event, median of ``--runs`` runs; each run builds a fresh engine.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import msgspec

from arbd.arbitrage.engine import ArbitrageEngine
from arbd.config import ArbitrageConfig
from arbd.model import Arbitrage, Book, Event, Quote

sys.path.insert(0, os.path.dirname(__file__))
from _results import emit, report, table

BATCH = 5
T0 = 1_700_000_000_000_000_000
STEP_NS = 10_000  # 100k updates per second of simulated time: no leg ever goes stale


def market(n_exchanges: int, n_symbols: int) -> tuple[list[str], list[str], list[float]]:
    exchanges = [f"ex{i}" for i in range(n_exchanges)]
    symbols = [f"S{i:03d}/USDT" for i in range(n_symbols)]
    rng = random.Random(7)
    mids = [rng.uniform(1.0, 70_000.0) for _ in symbols]
    return exchanges, symbols, mids


def offset(exchange: int, symbol: int, dislocated: float) -> float:
    """Relative price offset of an exchange on a symbol: a few bps, or a dislocation."""
    base = (exchange - 2) * 0.0001
    if dislocated and exchange == 0 and symbol % round(1 / dislocated) == 0:
        return base + 0.005
    return base


def stream(
    make: Callable[[int, int], Event],
    n_exchanges: int,
    n_symbols: int,
    updates: int,
    rng: random.Random,
) -> tuple[list[list[Event]], list[list[Event]]]:
    """(priming batches: every market once, measured batches: ``BATCH`` events of one random
    exchange each) from ``make(exchange, symbol)``."""
    prime: list[list[Event]] = [[make(e, s)] for s in range(n_symbols) for e in range(n_exchanges)]
    batches: list[list[Event]] = []
    for _ in range(updates // BATCH):
        e = rng.randrange(n_exchanges)
        batches.append([make(e, rng.randrange(n_symbols)) for _ in range(BATCH)])
    return prime, batches


def quote_stream(
    n_exchanges: int, n_symbols: int, updates: int, dislocated: float
) -> tuple[list[list[Event]], list[list[Event]]]:
    """(priming batches, measured batches) of quotes."""
    exchanges, symbols, mids = market(n_exchanges, n_symbols)
    rng = random.Random(11)
    now = T0

    def make(e: int, s: int) -> Quote:
        nonlocal now
        now += STEP_NS
        mid = mids[s] * (1 + offset(e, s, dislocated)) * (1 + rng.gauss(0, 0.0001))
        half = mid * 0.00005
        return Quote(
            exchange=exchanges[e],
            symbol=symbols[s],
            bid=f"{mid - half:.6f}",
            ask=f"{mid + half:.6f}",
            bid_size=f"{rng.uniform(0.01, 5):.4f}",
            ask_size=f"{rng.uniform(0.01, 5):.4f}",
            timestamp=now // 1_000_000,
            received_ns=now,
        )

    return stream(make, n_exchanges, n_symbols, updates, rng)


def book_stream(
    n_exchanges: int, n_symbols: int, updates: int, dislocated: float, depth: int = 20
) -> tuple[list[list[Event]], list[list[Event]]]:
    exchanges, symbols, mids = market(n_exchanges, n_symbols)
    rng = random.Random(13)
    now = T0

    def make(e: int, s: int) -> Book:
        nonlocal now
        now += STEP_NS
        mid = mids[s] * (1 + offset(e, s, dislocated)) * (1 + rng.gauss(0, 0.0001))
        step = mid * 0.00002
        sizes = [f"{rng.uniform(0.01, 2):.4f}" for _ in range(2 * depth)]
        bids = [(f"{mid - step * (i + 1):.6f}", sizes[i]) for i in range(depth)]
        asks = [(f"{mid + step * (i + 1):.6f}", sizes[depth + i]) for i in range(depth)]
        return Book(
            exchange=exchanges[e],
            symbol=symbols[s],
            bids=bids,
            asks=asks,
            depth=depth,
            timestamp=now // 1_000_000,
            received_ns=now,
        )

    return stream(make, n_exchanges, n_symbols, updates, rng)


def run_once(
    engine: ArbitrageEngine, prime: Sequence[list[Event]], batches: Sequence[list[Event]]
) -> tuple[float, int]:
    """(µs per event, arbitrage events published) of one run on a fresh engine."""
    for batch in prime:
        engine(batch)
    published = 0
    n = sum(len(b) for b in batches)
    started = time.perf_counter()
    for batch in batches:
        out = engine(batch)
        if out:
            published += len(out)
    return (time.perf_counter() - started) / n * 1e6, published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exchanges", type=int, default=5)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--book-updates", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()
    fees = {f"ex{i}": 0.1 for i in range(args.exchanges)}
    calm = ArbitrageConfig()
    walking = msgspec.structs.replace(calm, update_interval=0.0, update_min_change_pct=0.0)

    def engine_with(settings: ArbitrageConfig) -> Callable[[], ArbitrageEngine]:
        return lambda: ArbitrageEngine(settings, fees, lambda exchange, symbol: "0.0001")

    scenarios = [
        ("quotes, calm", quote_stream, calm, 0.0, args.updates),
        ("quotes, dislocated", quote_stream, calm, 0.2, args.updates),
        ("books, calm", book_stream, calm, 0.0, args.book_updates),
        ("books, walking", book_stream, walking, 1.0, args.book_updates),
    ]
    streams = [
        stream(args.exchanges, args.symbols, updates, dislocated)
        for _, stream, _, dislocated, updates in scenarios
    ]
    # The prebuilt input (~1M objects) is not part of what is measured: keep the collector
    # from re-scanning it (a live daemon's events are short-lived and never pile up so).
    gc.collect()
    gc.freeze()
    times: list[list[float]] = [[] for _ in scenarios]
    published = [0] * len(scenarios)
    reference: list[float] = []
    prices = [f"{64000 + i / 100:.2f}" for i in range(1000)]
    # Runs interleave the scenarios, so a noisy stretch of the machine hits them all alike.
    # Each run also times float() of a price text (docs/benchmarks.md has it from
    # benchmarks/pipeline.py): this machine's speed drifts by tens of percent over minutes, and
    # the ratio to that yardstick does not.
    for _ in range(args.runs):
        started = time.perf_counter()
        for _ in range(200):
            for text in prices:
                float(text)
        reference.append((time.perf_counter() - started) / 200_000 * 1e6)
        for k, (scenario, (prime, batches)) in enumerate(zip(scenarios, streams, strict=True)):
            us, published[k] = run_once(engine_with(scenario[2])(), prime, batches)
            times[k].append(us)
    rows = [
        (name, statistics.median(times[k]), min(times[k]), published[k],
         sum(len(b) for b in streams[k][1]))
        for k, (name, *_) in enumerate(scenarios)
    ]  # fmt: skip

    # What one event costs to build (two walks plus one per profit-curve size), on its own.
    prime, batches = book_stream(args.exchanges, args.symbols, 1_000, 1.0)
    engine = engine_with(walking)()
    events: list[Arbitrage] = []
    for batch in [*prime, *batches]:
        events.extend(e for e in engine(batch) if isinstance(e, Arbitrage))

    yardstick = statistics.median(reference)
    opens = len(engine.open_opportunities())
    scenarios_table = table(
        f"Arbitrage engine, µs per event: {args.exchanges} exchanges x {args.symbols} symbols, "
        f"batches of {BATCH}, median and best of {args.runs} runs",
        [
            ("scenario", ""),
            ("median µs", ",.2f"),
            ("best µs", ",.2f"),
            ("events out", ",d"),
            ("updates", ",d"),
            ("events out per update", ",.3f"),
        ],
        [[name, median, best, out, n, out / n] for name, median, best, out, n in rows],
    )
    alongside = table(
        "Measured alongside",
        [
            ("yardstick: float(price text) µs", ",.3f"),
            ("open opportunities after a 'books, walking' run of 1,000 updates", ",d"),
        ],
        [[yardstick, opens]],
        key=0,
    )
    notes = [
        "target: ≤ 5 µs per quote update ('quotes, calm')",
        "'books, walking' publishes an update for every update of an open pair's leg "
        "(update_interval = 0): two depth walks and the profit curve each, the worst case",
        "the yardstick is timed in every run: a slow machine slows it too, a slow engine does not",
    ]
    command = "python benchmarks/arbitrage.py " + " ".join(sys.argv[1:])
    emit(
        report("arbitrage", "Arbitrage engine", command, [scenarios_table, alongside], notes),
        args.json,
    )


if __name__ == "__main__":
    main()
