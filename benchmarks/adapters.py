"""Adapter parse speed per exchange, and cryptofeed's parsers on the same frames.

For each exchange a capture is generated first: arbd's real feed runs against the exchange's
fake over loopback for ``--rounds`` rounds of market data (all four channels, the adapter's
default symbols), recorded as ``arbd record`` does. Then, without sockets:

* **arbd**: every recorded frame goes through the adapter session's ``receive`` (book snapshots
  it asks for over REST are answered from the capture at once), as the live driver does.
* **cryptofeed** (``pip install cryptofeed``, the ``bench`` extra): the same frames, restricted
  to the message types its parser for that exchange accepts, go through the feed's
  ``message_handler`` with no-op callbacks, its symbol table loaded from the fake's REST answer
  and its REST snapshot reads answered from the capture. arbd is timed on exactly that subset
  too, so the ratio compares like with like.

Both sides do the complete normalization the library offers (cryptofeed builds its order book,
arbd builds and publishes its book), so the ratio is of the work a user gets done per frame.

Run:  python benchmarks/adapters.py [--rounds 2000] [--runs 5] [--exchanges binance okx]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

from arbd.capture import CaptureWriter, Connect, Http, Recv, iter_records, read_header
from arbd.exchange.adapter import (
    AdapterSettings,
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSession,
    HttpResponse,
)
from arbd.model import CHANNELS, Event, Subscription
from arbd.plugins import PluginRegistry, load_plugins
from arbd.testing.fake import open_fake
from arbd.testing.harness import run_feed

# -- the workload -------------------------------------------------------------------------------


@dataclass
class Workload:
    exchange: str
    connects: list[Connect] = field(default_factory=list)
    frames: list[tuple[str, bytes, bool]] = field(default_factory=list)
    """(conn, payload, is_text) in receive order."""
    http: list[Http] = field(default_factory=list)

    def answer(self, url: str) -> Http:
        """The first recorded answer for the URL's path and query (the host differs)."""
        want = _path_key(url)
        for item in self.http:
            if _path_key(item.url) == want:
                return item
        raise LookupError(f"no recorded answer for {url}")


def _path_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def record(registry: PluginRegistry, exchange: str, rounds: int, path: Path) -> None:
    fake = registry.fakes[exchange].create()
    adapter_cls = registry.exchanges[exchange]
    symbols = list(adapter_cls.spec.default_symbols)
    with CaptureWriter(path, exchange=exchange) as writer:
        async with (
            open_fake(fake),
            run_feed(fake, adapter_cls, symbols=symbols, recorder=writer, stale_after=600.0) as h,
        ):

            def live() -> int:
                return len({s.connection for s in h.statuses("connection") if s.state == "live"})

            with trio.fail_after(60):  # "live" needs data on every subscription
                while live() < len(h.feed.supervisors):
                    await fake.pump(1)  # type: ignore[attr-defined]
                    await trio.sleep(0.05)
            for _ in range(rounds):
                await fake.pump(1)  # type: ignore[attr-defined]
            seen = -1
            while seen != len(h.events):
                seen = len(h.events)
                await trio.sleep(0.1)


def load(path: Path) -> Workload:
    work = Workload(read_header(path).exchange)
    for _, record in iter_records(path):
        if isinstance(record, Connect):
            work.connects.append(record)
        elif isinstance(record, Recv):
            work.frames.append((record.conn, record.payload(), record.is_text))
        elif isinstance(record, Http):
            work.http.append(record)
    return work


# -- arbd ---------------------------------------------------------------------------------------


def arbd_sessions(
    registry: PluginRegistry, work: Workload
) -> tuple[ExchangeAdapter, dict[str, ExchangeSession]]:
    cls = registry.exchanges[work.exchange]
    symbols = sorted({symbol for c in work.connects for _, symbol in (c.subs or ())})
    adapter = cls(
        AdapterSettings(
            ws_url=work.connects[0].url,
            rest_url=cls.spec.rest_url,
            symbols=tuple(symbols),
            channels=tuple(c for c in CHANNELS if c in cls.spec.channels),
            book_depth=20,
        )
    )
    responses = [
        HttpResponse(request=r, status=200, body=work.answer(r.url).body(), received_ns=1)
        for r in adapter.instrument_requests()
    ]
    adapter.load_instruments(responses)
    sessions = {}
    for c in work.connects:
        subs = tuple(Subscription(ch, sym) for ch, sym in c.subs or ())
        session = adapter.new_session(ConnectionPlan(url=c.url, subscriptions=subs))
        session.start(1)
        session.take_frames()
        sessions[c.conn] = session
    return adapter, sessions


def time_arbd(
    registry: PluginRegistry, work: Workload, frames: list[tuple[str, bytes, bool]]
) -> tuple[float, int]:
    """Seconds to receive ``frames`` (and answer snapshot requests); events made."""
    _, sessions = arbd_sessions(registry, work)
    out: list[Event] = []
    events = 0
    gc.collect()
    started = time.perf_counter()
    for conn, payload, is_text in frames:
        session = sessions[conn]
        session.receive(payload, is_text, 1, out)
        if session.has_output:  # as the driver collects a session's effects
            for request in session.take_http_requests():
                body = work.answer(request.url).body()
                session.on_http(
                    HttpResponse(request=request, status=200, body=body, received_ns=1), out
                )
            session.take_frames()
        if out:  # handed on at once, as cryptofeed hands each object to a no-op callback
            events += len(out)
            out.clear()
    elapsed = time.perf_counter() - started
    return elapsed, events


# -- cryptofeed ---------------------------------------------------------------------------------


class CryptofeedShim:
    """How to run one cryptofeed feed offline on recorded frames."""

    exchange: str

    def accepts(self, frame: dict[str, Any]) -> bool:
        raise NotImplementedError

    def kind(self, frame: dict[str, Any]) -> str:
        """The arbd channel a frame accepted by :meth:`accepts` belongs to."""
        raise NotImplementedError

    @staticmethod
    def build(feed_cls: Any, metadata: Any, channels: list[str], work: Workload) -> Any:
        """A ``feed_cls`` for the capture's symbols, its symbol table loaded from the fake's
        REST ``metadata`` (no network), with a no-op callback per channel."""
        from cryptofeed.symbols import Symbols

        syms, meta = feed_cls._parse_symbol_data(metadata)
        Symbols.set(feed_cls.id, syms, meta)
        symbols = {s.replace("/", "-") for c in work.connects for _, s in (c.subs or ())}
        # The same work arbd does on every frame: every candle update normalized, not only
        # closed bars (cryptofeed's default skips the others), and books checked for crossing.
        # Checksums stay off: the OKX fake sends 0 as production does since June 2026 (arbd
        # then skips the check; cryptofeed would compare against 0 and fail).
        return feed_cls(
            symbols=sorted(symbols),
            channels=channels,
            callbacks=dict.fromkeys(channels, _noop),
            candle_closed_only=False,
            cross_check=True,
        )

    def make_feed(self, work: Workload) -> Any:
        raise NotImplementedError


async def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


class BinanceShim(CryptofeedShim):
    """cryptofeed's Binance parses bookTicker, depthUpdate and kline (its trades are aggTrade,
    arbd subscribes to trade: those frames are left out on both sides)."""

    exchange = "binance"

    def accepts(self, frame: dict[str, Any]) -> bool:
        data = frame.get("data")
        if not isinstance(data, dict):
            return False
        return data.get("e") in ("depthUpdate", "kline") or ("A" in data and "e" not in data)

    def kind(self, frame: dict[str, Any]) -> str:
        event = frame["data"].get("e")
        return {"depthUpdate": "book", "kline": "candles"}.get(event, "price")

    def make_feed(self, work: Workload) -> Any:
        from cryptofeed.defines import CANDLES, L2_BOOK, TICKER
        from cryptofeed.exchanges import Binance

        info = json.loads(work.answer("/api/v3/exchangeInfo").body())
        feed = self.build(Binance, info, [L2_BOOK, TICKER, CANDLES], work)
        snapshots = [h for h in work.http if "/api/v3/depth" in h.url]

        async def read(url: str, **_kwargs: Any) -> str:
            symbol = url.split("symbol=")[1].split("&", maxsplit=1)[0]
            found = next(h for h in snapshots if f"symbol={symbol}" in h.url)
            return found.body().decode()

        feed.http_conn.read = read
        return feed


class OkxShim(CryptofeedShim):
    """cryptofeed's OKX parses books, trades and candles (its quote channel is ``tickers``,
    arbd's is ``bbo-tbt``: those frames are left out on both sides)."""

    exchange = "okx"

    def accepts(self, frame: dict[str, Any]) -> bool:
        arg = frame.get("arg")
        if not isinstance(arg, dict) or "data" not in frame:
            return False
        return arg.get("channel") in ("books", "trades", "candle1m")

    def kind(self, frame: dict[str, Any]) -> str:
        return {"books": "book", "candle1m": "candles"}.get(frame["arg"]["channel"], "trades")

    def make_feed(self, work: Workload) -> Any:
        from cryptofeed.defines import CANDLES, L2_BOOK, TRADES
        from cryptofeed.exchanges import OKX

        answer = json.loads(work.answer("/api/v5/public/instruments?instType=SPOT").body())
        return self.build(OKX, [answer], [L2_BOOK, TRADES, CANDLES], work)


class BybitShim(CryptofeedShim):
    """cryptofeed's Bybit (v5 spot) parses orderbook.N, publicTrade and kline; it has no
    quote channel for spot and would read arbd's ``orderbook.1`` quote source as a second
    book, so those frames are left out on both sides."""

    exchange = "bybit"
    address = "wss://stream.bybit.com/v5/public/spot"

    def accepts(self, frame: dict[str, Any]) -> bool:
        topic = frame.get("topic")
        if not isinstance(topic, str) or "data" not in frame:
            return False
        return topic.startswith(("orderbook.50.", "orderbook.200.", "publicTrade.", "kline."))

    def kind(self, frame: dict[str, Any]) -> str:
        topic = frame["topic"]
        return (
            "book" if topic.startswith("orderbook") else "trades" if "Trade" in topic else "candles"
        )

    def make_feed(self, work: Workload) -> Any:
        from cryptofeed.defines import CANDLES, L2_BOOK, TRADES
        from cryptofeed.exchanges import Bybit

        answer = json.loads(work.answer("/v5/market/instruments-info?category=spot").body())
        return self.build(Bybit, [answer], [L2_BOOK, TRADES, CANDLES], work)


SHIMS: dict[str, CryptofeedShim] = {s.exchange: s for s in (BinanceShim(), OkxShim(), BybitShim())}


def time_cryptofeed(
    shim: CryptofeedShim, work: Workload, frames: list[tuple[str, bytes, bool]]
) -> float:
    feed = shim.make_feed(work)
    texts = [payload.decode() for _, payload, _ in frames]

    class Conn:
        uuid = "bench"
        address = getattr(shim, "address", "")

    conn = Conn()

    async def run() -> float:
        handler = feed.message_handler
        gc.collect()
        started = time.perf_counter()
        for text in texts:
            await handler(text, conn, 1.0)
        return time.perf_counter() - started

    return asyncio.run(run())


# -- main ---------------------------------------------------------------------------------------


def subset(work: Workload, keep: Callable[[dict[str, Any]], bool]) -> list[tuple[str, bytes, bool]]:
    chosen = []
    for item in work.frames:
        try:
            frame = json.loads(item[1])
        except ValueError:
            continue
        if isinstance(frame, dict) and keep(frame):
            chosen.append(item)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--exchanges", nargs="*", default=["binance", "coinbase", "kraken", "bybit", "okx"]
    )
    args = parser.parse_args()
    registry = load_plugins()
    try:
        import cryptofeed  # noqa: F401

        have_cryptofeed = True
    except ImportError:
        have_cryptofeed = False
        print("cryptofeed is not installed (pip install -e '.[bench]'): arbd rows only")
    print(
        f"{'exchange':<10} {'frames':>7} {'arbd f/s':>10} | "
        f"{'frames':>8} {'n':>6} {'arbd f/s':>10} {'cryptofeed f/s':>15} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for exchange in args.exchanges:
            path = Path(tmp) / f"{exchange}.capture.jsonl"
            trio.run(record, registry, exchange, args.rounds, path)
            work = load(path)
            all_frames = work.frames
            full = statistics.median(
                time_arbd(registry, work, all_frames)[0] for _ in range(args.runs)
            )
            row = f"{exchange:<10} {len(all_frames):>7} {len(all_frames) / full:>10,.0f} |"
            shim = SHIMS.get(exchange)
            rows = []
            if shim is not None and have_cryptofeed:
                frames = subset(work, shim.accepts)
                groups = [("all", frames)] + [
                    (kind, [f for f in frames if shim.kind(json.loads(f[1])) == kind])
                    for kind in ("price", "trades", "book", "candles")
                ]
                for kind, chosen in groups:
                    if not chosen:
                        continue
                    # Interleaved, so that a burst of load on this shared machine hits both.
                    ours_runs, theirs_runs = [], []
                    for _ in range(args.runs):
                        ours_runs.append(time_arbd(registry, work, chosen)[0])
                        theirs_runs.append(time_cryptofeed(shim, work, chosen))
                    ours = statistics.median(ours_runs)
                    theirs = statistics.median(theirs_runs)
                    n = len(chosen)
                    cells = f" {kind:>8} {n:>6} {n / ours:>10,.0f} {n / theirs:>15,.0f}"
                    rows.append(f"{cells} {theirs / ours:>5.1f}x")
            row += rows[0] if rows else ""
            for extra in rows[1:]:
                row += "\n" + " " * 30 + "|" + extra
            print(row, flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
