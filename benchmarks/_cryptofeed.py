"""cryptofeed (PyPI, the ``bench`` extra) run offline on the frames of a capture.

One :class:`CryptofeedShim` per exchange whose cryptofeed parser accepts arbd's captured
frames: which frames it accepts, how to build the feed with its symbol table loaded from the
fake's REST answer (no network), and its REST snapshot reads answered from the capture.
:func:`time_cryptofeed` times ``message_handler`` over the frames with no-op callbacks, alone
or amid other untimed work.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from _captures import Workload


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


Step = list[tuple[str, bytes, bool]] | Callable[[], object]
"""A run of frames to time, or untimed work to do in between (another exchange's reads)."""


def time_cryptofeed(shim: CryptofeedShim, work: Workload, steps: Sequence[Step]) -> float:
    """Seconds ``message_handler`` spends on the frames of ``steps``, in order; the callables
    among them run untimed in between, so cryptofeed can be timed amid the same other work
    as arbd (a daemon's other connections, which evict its data from the CPU caches)."""
    feed = shim.make_feed(work)
    # Decoded before timing: a WebSocket client hands cryptofeed text.
    prepared = [s if callable(s) else [p.decode() for _, p, _ in s] for s in steps]

    class Conn:
        uuid = "bench"
        address = getattr(shim, "address", "")

    conn = Conn()

    async def run() -> float:
        handler = feed.message_handler
        clock = time.perf_counter
        spent = 0.0
        gc.collect()
        for step in prepared:
            if callable(step):
                step()
                continue
            started = clock()
            for text in step:
                await handler(text, conn, 1.0)
            spent += clock() - started
        return spent

    return asyncio.run(run())
