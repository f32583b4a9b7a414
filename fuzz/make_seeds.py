"""Record the seed captures the adapter fuzz targets mutate: real frames from every exchange's fake.

For each installed exchange, arbd's real feed runs against the exchange's fake on loopback
(default symbols, every channel) until every subscription has delivered, then for ``--rounds``
more rounds of market data with one sequence skip and one crossed book injected half-way (so the
seeds hold the frames of a resync too); everything is recorded as ``arbd record`` does, to
``tests/fuzz/seeds/<exchange>.capture.jsonl.gz``. The captures are committed: re-run this only when
a fake's protocol changes.

Run:  python fuzz/make_seeds.py [--rounds 6] [--exchanges binance okx]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from arbd.capture import CaptureWriter
from arbd.model import Book, Candle, Quote, Trade
from arbd.plugins import PluginRegistry, load_plugins
from arbd.testing.fake import open_fake
from arbd.testing.harness import Harness, run_feed

SEEDS = Path(__file__).resolve().parent.parent / "tests" / "fuzz" / "seeds"
_KINDS = {"price": Quote, "trades": Trade, "book": Book, "candles": Candle}


def _delivered(harness: Harness, symbols: list[str], channels: tuple[str, ...]) -> bool:
    seen = {(type(e), e.symbol) for e in harness.events}
    return all((_KINDS[c], s) in seen for c in channels if c in _KINDS for s in symbols)


async def record(registry: PluginRegistry, exchange: str, rounds: int, path: Path) -> None:
    fake = registry.fakes[exchange].create()
    adapter_cls = registry.exchanges[exchange]
    symbols = list(adapter_cls.spec.default_symbols)
    pump = fake.pump  # type: ignore[attr-defined]
    with CaptureWriter(path, exchange=exchange, recorded=1_700_000_000.0, version="seed") as w:
        async with (
            open_fake(fake),
            run_feed(fake, adapter_cls, symbols=symbols, recorder=w, stale_after=600.0) as h,
        ):
            with trio.fail_after(60):
                while not _delivered(h, symbols, adapter_cls.spec.channels):
                    await pump(1)
                    await trio.sleep(0.05)
            for n in range(rounds):
                if n == rounds // 2:
                    # A gap and a crossed book, where the fake offers them: the seeds then hold
                    # the frames of an invalid book and its resync.
                    if hasattr(fake, "skip_sequence"):
                        fake.skip_sequence(symbols[0])
                    if hasattr(fake, "send_crossed_book"):
                        fake.send_crossed_book(symbols[-1])
                await pump(1)
                await trio.sleep(0.05)
            seen = -1
            while seen != len(h.events):
                seen = len(h.events)
                await trio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--exchanges", nargs="*")
    args = parser.parse_args()
    registry = load_plugins()
    SEEDS.mkdir(parents=True, exist_ok=True)
    for exchange in args.exchanges or sorted(registry.fakes):
        path = SEEDS / f"{exchange}.capture.jsonl.gz"
        trio.run(record, registry, exchange, args.rounds, path)
        lines = sum(1 for _ in path.open("rb"))
        print(f"{path}: {lines} records")  # noqa: T201


if __name__ == "__main__":
    main()
