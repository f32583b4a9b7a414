"""The base of fake exchanges that serve a simulated market: books, trades and candles.

:class:`MarketFake` extends :class:`~arbd.testing.fake.FakeExchangeServer` with what every
market-data fake needs and no exchange-specific wire format: one :class:`FakeMarket` per listed
symbol (an :class:`~arbd.testing.market.ExchangeBook` following a shared
:class:`~arbd.testing.market.MarketSimulator`, a book sequence counter, a trade id counter and a
1-minute candle), a round-based data pump, topic-based fan-out to subscribed connections, the
book-integrity faults, and forced disconnects on a timer (real exchanges close connections
after 24 h; ``disconnect_after`` makes that seconds).

A subclass supplies the exchange's wire format::

    class MyFake(MarketFake):
        ws_path = "/ws"                              # what the adapter's ws_url points at

        def native_symbol(self, listing): ...        # "BTC/USDT" -> "BTCUSDT"
        def round_frames(self, m, update, ts): ...   # frames of one round, as (topic, frame)
        def book_frames(self, m, update, ts): ...    # the book frames for one BookUpdate
        def on_message(self, conn, message): ...     # subscribe/ack/error/ping
        def handle_http(self, method, path, query): ...  # metadata, snapshots

Topics are the fake's own strings (e.g. ``"depth:BTCUSDT"``); a frame goes to every connection
whose ``conn.subscriptions`` holds its topic. A frame may be a callable taking the connection,
for protocols that number messages per connection (Coinbase's ``sequence_num``).

Faults (on top of :class:`~arbd.testing.fake.Faults`): :meth:`skip_sequence` sets
``FakeMarket.skip_next`` and :meth:`corrupt_checksum` sets ``corrupt_next``; a subclass consumes
them with :meth:`FakeMarket.take_skip` / :meth:`FakeMarket.take_corrupt` when it builds the next
book frame (skip: spend a sequence number without sending it; corrupt: send a wrong checksum).
:meth:`send_crossed_book` inserts a bid above the best ask into the fake's own book and
broadcasts it as a book update at once; the next round removes it again.

Time: each round advances the simulator by ``step`` seconds of market time (deterministic under
any clock); ``ts`` stamps come from ``clock`` (ms, the wall clock by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import trio

from arbd.testing.connection import FakeConnection
from arbd.testing.fake import FakeExchangeServer
from arbd.testing.market import BookUpdate, ExchangeBook, MarketSimulator, fmt_units

Frame = str | bytes | Callable[[FakeConnection], "str | bytes"]
Out = tuple[str, Frame]
"""(topic, frame): a frame for the connections subscribed to ``topic``."""


@dataclass(frozen=True)
class Listing:
    """One instrument a fake lists: normalized symbol, starting mid, tick and lot size."""

    symbol: str
    price: str
    tick: str
    lot: str

    @property
    def base(self) -> str:
        return self.symbol.partition("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.partition("/")[2]


_TABLE: Final[dict[str, tuple[str, str, str]]] = {
    "BTC": ("64000", "0.01", "0.00001"),
    "ETH": ("3200", "0.01", "0.0001"),
    "SOL": ("150", "0.01", "0.001"),
    "XRP": ("0.5", "0.0001", "0.1"),
    "USDT": ("1", "0.0001", "0.01"),
}


def listing(symbol: str, **changes: str) -> Listing:
    """A plausible listing for ``symbol`` (``BASE/QUOTE``), with optional field overrides."""
    price, tick, lot = _TABLE.get(symbol.partition("/")[0], ("100", "0.01", "0.001"))
    return replace(Listing(symbol, price, tick, lot), **changes)


DEFAULT_SYMBOLS: Final = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USD", "ETH/USD", "USDT/USD")


def synthetic_symbols(count: int, quote: str = "USDT") -> list[str]:
    """``count`` made-up symbols (``C000/USDT``, ``C001/USDT``, ...) for runs at scale: every
    market fake lists whatever symbols it is given, so soaks and memory benchmarks can ask for
    hundreds of markets per exchange."""
    return [f"C{n:03d}/{quote}" for n in range(count)]


@dataclass
class Bar:
    """One candle of one market, in ticks and lot units (formatted by the market)."""

    start_ms: int
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    trades: int = 0
    closed: bool = False


@dataclass
class FakeMarket:
    """One listed symbol as a fake exchange sees it."""

    listing: Listing
    native: str
    book: ExchangeBook
    seq: int = 1_000
    """The exchange's book sequence / update id; what it means is the subclass's business."""
    trade_id: int = 100_000
    skip_next: bool = False
    corrupt_next: bool = False
    bar: Bar | None = None
    extra: dict[str, object] = field(default_factory=dict)
    """Per-market state a subclass keeps (e.g. a previous sequence id)."""

    @property
    def symbol(self) -> str:
        return self.listing.symbol

    def price(self, ticks: int) -> str:
        return self.book.price(ticks)

    def size(self, units: int) -> str:
        return self.book.size(units)

    def take_skip(self) -> bool:
        """True once after :meth:`MarketFake.skip_sequence`: lose the frame being built."""
        skip, self.skip_next = self.skip_next, False
        return skip

    def take_corrupt(self) -> bool:
        """True once after :meth:`MarketFake.corrupt_checksum`: send a wrong checksum."""
        corrupt, self.corrupt_next = self.corrupt_next, False
        return corrupt

    def next_trade_id(self) -> int:
        self.trade_id += 1
        return self.trade_id

    def candle(
        self, ts: int, trades: Sequence[tuple[str, str, str]], interval_ms: int
    ) -> list[Bar]:
        """Fold this round's trades into the current bar; returns the bars to report: the
        finished one (``closed``) when ``ts`` entered a new interval, then the current one."""
        start = ts - ts % interval_ms
        book = self.book
        out: list[Bar] = []
        bar = self.bar
        if bar is not None and bar.start_ms != start:
            bar.closed = True
            out.append(bar)
            bar = None
        if bar is None:
            last = bar_close(self.bar, book)
            bar = Bar(start, last, last, last, last)
            self.bar = bar
        for price, size, _side in trades:
            ticks = round(float(price) / float(book.tick))
            bar.high, bar.low, bar.close = max(bar.high, ticks), min(bar.low, ticks), ticks
            bar.volume += round(float(size) * 10**book.size_places)
            bar.trades += 1
        out.append(replace(bar))
        return out

    def fmt_volume(self, bar: Bar) -> str:
        return fmt_units(bar.volume, self.book.size_places)


def bar_close(bar: Bar | None, book: ExchangeBook) -> int:
    """Where a new bar opens: the previous close, or the book's mid for the first bar."""
    if bar is not None:
        return bar.close
    return (max(book.bids) + min(book.asks)) // 2


class MarketFake(FakeExchangeServer):
    """A fake exchange serving a simulated market. See the module docstring.

    Args:
        symbols: normalized symbols to list; they must be in ``listings`` or get a plausible
            default listing.
        listings: listings overriding the built-in table (price, tick, lot).
        seed: seed of the book's randomness (sizes, churn); the simulator has its own.
        depth: book levels per side.
        step: market seconds per round.
        offset_bps, lag: how this exchange's prices differ from the shared mid.
        disconnect_after: close every connection this many seconds after it opened (the
            exchange's 24 h limit, shortened); None: never.
        clock: ms since the epoch for timestamps (default: the wall clock).
        simulator: a shared :class:`MarketSimulator` (``arbd demo`` shares one between all
            fakes so that their prices agree up to offsets and lags); default: a private one.
    """

    candle_interval_ms: int = 60_000
    checksums: bool = False
    """Whether this exchange's book frames carry a checksum, i.e. whether
    :meth:`corrupt_checksum` has any effect (chaos runs only inject it where it does)."""

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        listings: Sequence[Listing] = (),
        seed: int = 0,
        depth: int = 50,
        step: float = 0.1,
        offset_bps: float = 0.0,
        lag: float = 0.0,
        disconnect_after: float | None = None,
        clock: Callable[[], int] | None = None,
        simulator: MarketSimulator | None = None,
    ) -> None:
        super().__init__()
        self.sim = simulator if simulator is not None else MarketSimulator(seed=seed)
        self.step = step
        self.disconnect_after = disconnect_after
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self.rounds = 0
        self.forced_disconnects = 0
        known = {item.symbol: item for item in listings}
        self.markets: dict[str, FakeMarket] = {}
        """Native symbol -> market."""
        self.by_symbol: dict[str, FakeMarket] = {}
        for n, symbol in enumerate(symbols if symbols is not None else self.default_symbols()):
            item = known.get(symbol) or listing(symbol)
            if item.base not in self.sim.symbols:
                self.sim.add_symbol(item.base, float(item.price))
            book = ExchangeBook(
                self.sim,
                item.base,
                tick=item.tick,
                lot=item.lot,
                depth=depth,
                offset_bps=offset_bps,
                lag=lag,
                seed=seed * 1000 + n,
            )
            market = FakeMarket(listing=item, native=self.native_symbol(item), book=book)
            self.markets[market.native] = market
            self.by_symbol[item.symbol] = market

    # -- for subclasses ---------------------------------------------------------------------

    def default_symbols(self) -> Sequence[str]:
        return DEFAULT_SYMBOLS

    def native_symbol(self, item: Listing) -> str:
        """The exchange's name for a listing. Default: ``BASE-QUOTE``."""
        return f"{item.base}-{item.quote}"

    def round_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        """Every frame one round of ``m`` produces (book, quote, trades, candle)."""
        raise NotImplementedError

    def book_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        """The book frames for ``update`` (used for injected book faults)."""
        raise NotImplementedError

    def force_disconnect(self, conn: FakeConnection) -> None:
        """End ``conn`` the way the exchange ends a connection at its lifetime limit."""
        conn.close(1001, "connection lifetime reached")

    # -- lookups ----------------------------------------------------------------------------

    def market(self, symbol: str) -> FakeMarket:
        """The market of a normalized (``BTC/USDT``) or native symbol."""
        found = self.by_symbol.get(symbol) or self.markets.get(symbol)
        if found is None:
            raise KeyError(f"{type(self).__name__} does not list {symbol!r}")
        return found

    # -- data -------------------------------------------------------------------------------

    def next_round(self) -> list[Out]:
        """Advance every market one round; return its frames without sending them."""
        self.rounds += 1
        self.sim.advance(self.rounds * self.step)
        now, ts = self.sim.now, self.clock()
        frames: list[Out] = []
        for market in self.markets.values():
            frames.extend(self.round_frames(market, market.book.step(now), ts))
        return frames

    def emit_round(self) -> None:
        """Queue one round of frames to the subscribed connections (synchronous)."""
        self.broadcast(self.next_round())

    def broadcast(self, frames: Sequence[Out]) -> int:
        """Send each frame to the connections subscribed to its topic; returns frames sent."""
        sent = 0
        for conn in list(self.connections):
            subs = conn.subscriptions
            for topic, frame in frames:
                if topic in subs:
                    data = frame(conn) if callable(frame) else frame
                    if conn.send_data(data):
                        sent += 1
        return sent

    # -- faults -----------------------------------------------------------------------------

    def skip_sequence(self, symbol: str) -> None:
        """Lose the next book update of ``symbol``: the one after it reveals a gap."""
        self.market(symbol).skip_next = True

    def corrupt_checksum(self, symbol: str) -> None:
        """Send the next book update of ``symbol`` with a wrong checksum."""
        self.market(symbol).corrupt_next = True

    def send_crossed_book(self, symbol: str) -> int:
        """Broadcast a book update that crosses ``symbol``'s book now; returns frames sent."""
        m = self.market(symbol)
        return self.broadcast(self.book_frames(m, m.book.cross(), self.clock()))

    # -- forced disconnects -----------------------------------------------------------------

    def on_connect(self, conn: FakeConnection) -> None:
        if self.disconnect_after is not None:
            self.start_soon(self._expire, conn, self.disconnect_after)

    async def _expire(self, conn: FakeConnection, after: float) -> None:
        await trio.sleep(after)
        if conn.open:
            self.forced_disconnects += 1
            self.force_disconnect(conn)
            self.notify()
