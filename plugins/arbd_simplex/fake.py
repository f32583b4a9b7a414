"""A fake simplex exchange: the protocol of docs/simplex-protocol.md on one loopback port.

Deterministic market (a seeded ``random.Random``): each symbol's mid price walks by whole ticks,
its book holds ``depth`` levels a tick apart on each side, trades print near the mid. Book
state and sequence numbers are per symbol and shared by all connections, like a real exchange:
a client that subscribes gets a snapshot at the current ``seq`` and deltas chain from it.

Data flows only when asked: ``await fake.pump(n)`` emits ``n`` rounds (per symbol: one price,
one trade, one book delta, one candle, each to the connections subscribed to it) and waits until
they are written; ``run_feed(rate_per_s)`` pumps forever at a steady rate (trio sleeps, so
virtual clocks apply). Timestamps come from ``clock`` (ms; wall clock by default).

Protocol faults on top of the base ones (``fake.faults``): ``skip_sequence(symbol)``,
``send_crossed_book(symbol)``, ``send_shutdown(conn)``.

A subscribe naming some unknown streams subscribes the known ones (acked) and answers an
``error`` for the first unknown one, with the request's id.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from arbd.model import CHANNELS
from arbd.testing.fake import FakeConnection, FakeExchangeServer, HttpAnswer

# base -> (mid price, tick, lot): plausible markets for the default symbols and a few more.
MARKETS: Final[dict[str, tuple[str, str, str]]] = {
    "BTC": ("64000.00", "0.01", "0.0001"),
    "ETH": ("3200.00", "0.01", "0.001"),
    "SOL": ("150.00", "0.01", "0.01"),
    "XRP": ("0.5000", "0.0001", "1"),
}
_DEFAULT_MARKET: Final = ("100.00", "0.01", "0.001")
DEFAULT_SYMBOLS: Final = ("BTC/USDT", "ETH/USDT")

_encode = msgspec.json.Encoder().encode


def _decimals(step: str) -> int:
    return len(step.partition(".")[2].rstrip("0")) if "." in step else 0


def _fmt(units: int, decimals: int) -> str:
    """Exact decimal text of ``units`` * 10**-decimals (no float rounding)."""
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


def _units(text: str, decimals: int) -> int:
    whole, _, frac = text.partition(".")
    return int(whole + frac.ljust(decimals, "0")[:decimals])


class _Request(msgspec.Struct):
    op: str
    args: list[str] = []
    id: int | None = None
    ts: int | None = None


_decode_request = msgspec.json.Decoder(_Request).decode


@dataclass
class Market:
    """One symbol's state. Prices are integer ticks, sizes integer lots (exact text out)."""

    symbol: str
    native: str
    base: str
    quote: str
    tick: str
    lot: str
    mid: int
    """Mid price in ticks; best bid is ``mid - 1``, best ask ``mid + 1``."""
    price_decimals: int
    size_decimals: int
    tick_units: int
    """The tick in units of ``10**-price_decimals`` (1 unless the tick is e.g. "0.05")."""
    price_seq: int = 0
    trade_seq: int = 0
    book_seq: int = 100
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    skip_next: bool = False
    candle_start: int | None = None
    candle: list[int] = field(default_factory=list)
    """open, high, low, close (ticks) and volume (lots) of the current bar."""

    def price(self, ticks: int) -> str:
        return _fmt(ticks * self.tick_units, self.price_decimals)

    def size(self, lots: int) -> str:
        return _fmt(lots, self.size_decimals)

    def levels(self, side: dict[int, int], reverse: bool, depth: int) -> list[list[str]]:
        prices = sorted(side, reverse=reverse)[:depth]
        return [[self.price(p), self.size(side[p])] for p in prices]


class SimplexFake(FakeExchangeServer):
    """The simplex exchange. ``SimplexFake()`` serves BTC/USDT and ETH/USDT on ``/ws``.

    Args:
        symbols: normalized symbols to list (``BASE/QUOTE``).
        prices: starting mid price per symbol (text), overriding the built-in table.
        seed: seed of the market's random walk.
        depth: book levels per side.
        clock: ms since the epoch for ``ts`` fields (default: the wall clock).
    """

    websocket_paths = ("/ws",)

    def __init__(
        self,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        *,
        prices: Mapping[str, str] | None = None,
        seed: int = 1,
        depth: int = 10,
        clock: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.depth = depth
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self.markets: dict[str, Market] = {}
        """Native symbol -> market."""
        self.rounds = 0
        self.rejected: set[str] = set()
        """Native symbols that are listed but refused on subscribe (``bad_symbol``)."""
        for symbol in symbols:
            market = self._new_market(symbol, (prices or {}).get(symbol))
            self.markets[market.native] = market

    def _new_market(self, symbol: str, price: str | None) -> Market:
        base, _, quote = symbol.partition("/")
        mid_text, tick, lot = MARKETS.get(base, _DEFAULT_MARKET)
        mid_text = price or mid_text
        price_decimals = max(_decimals(tick), _decimals(mid_text))
        tick_units = _units(tick, price_decimals)
        market = Market(
            symbol=symbol,
            native=f"{base}-{quote}",
            base=base,
            quote=quote,
            tick=tick,
            lot=lot,
            mid=_units(mid_text, price_decimals) // tick_units,
            price_decimals=price_decimals,
            size_decimals=_decimals(lot),
            tick_units=tick_units,
        )
        market.bids, market.asks = self._desired(market, {}, {})
        return market

    def market(self, symbol: str) -> Market:
        """The market for a normalized or native symbol."""
        return self.markets[symbol.replace("/", "-")]

    # -- REST -----------------------------------------------------------------------------------

    def handle_http(self, method: str, path: str, query: dict[str, str]) -> HttpAnswer:
        if method != "GET":
            return 405, {"Allow": "GET"}, b'{"error":"method not allowed"}'
        if path == "/api/instruments":
            items = [
                {"symbol": m.native, "base": m.base, "quote": m.quote, "tick": m.tick, "lot": m.lot}
                for m in self.markets.values()
            ]
            return 200, {}, _encode({"instruments": items})
        if path == "/api/book":
            native = query.get("symbol", "")
            market = self.markets.get(native)
            if market is None:
                body = {"code": "bad_symbol", "msg": f"unknown symbol {native or '(none)'}"}
                return 400, {}, _encode(body)
            book = self._book_body(market)
            return 200, {}, _encode({"symbol": native, "seq": market.book_seq, **book})
        return super().handle_http(method, path, query)

    # -- WebSocket ------------------------------------------------------------------------------

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        try:
            request = _decode_request(message)
        except msgspec.DecodeError as exc:
            self._error(conn, "bad_request", f"cannot parse request: {exc}", None)
            return
        op = request.op
        if op == "ping":
            conn.send_text(_encode({"op": "pong", "ts": request.ts}).decode())
        elif op == "subscribe":
            self._subscribe(conn, request)
        elif op == "unsubscribe":
            for arg in request.args:
                conn.subscriptions.discard(arg)
            body = {"op": "unsubscribed", "args": request.args, "id": request.id}
            conn.send_text(_encode(body).decode())
        else:
            self._error(conn, "bad_op", f"unknown op {op}", request.id)

    def _subscribe(self, conn: FakeConnection, request: _Request) -> None:
        good: list[str] = []
        bad: list[tuple[str, str]] = []
        for arg in request.args:
            channel, _, native = arg.partition(":")
            if channel not in CHANNELS:
                bad.append(("bad_channel", f"unknown channel {channel}"))
            elif native not in self.markets or native in self.rejected:
                bad.append(("bad_symbol", f"unknown symbol {native}"))
            else:
                good.append(arg)
        if good:
            conn.subscriptions.update(good)
            body = {"op": "subscribed", "args": good, "id": request.id}
            conn.send_text(_encode(body).decode())
        if bad:
            self._error(conn, *bad[0], request.id)
        for arg in good:
            if arg.startswith("book:"):
                conn.send_data(self._snapshot_frame(self.markets[arg[5:]]))

    def _error(self, conn: FakeConnection, code: str, msg: str, request_id: int | None) -> None:
        body: dict[str, Any] = {"op": "error", "code": code, "msg": msg}
        if request_id is not None:
            body["id"] = request_id
        conn.send_text(_encode(body).decode())

    def send_shutdown(self, conn: FakeConnection, msg: str = "server restarting") -> bool:
        """Announce a shutdown on ``conn`` (the connection stays open; close or drop it next)."""
        return conn.send_text(_encode({"op": "shutdown", "msg": msg}).decode())

    # -- market data ----------------------------------------------------------------------------

    def emit_round(self) -> None:
        """Queue one round of frames to the subscribed connections (synchronous; see ``pump``)."""
        self.rounds += 1
        for market in self.markets.values():
            self._broadcast(market, self._round_frames(market))

    def next_round(self) -> list[tuple[str, str, str]]:
        """Advance every market one round and return its frames as ``(channel, native, frame)``
        without sending them: pure data, for adapter tests and benchmarks."""
        self.rounds += 1
        return [
            (channel, market.native, frame)
            for market in self.markets.values()
            for channel, frame in self._round_frames(market)
        ]

    def snapshot_frame(self, symbol: str) -> str:
        """The book snapshot frame a subscribe to ``book:<symbol>`` would be answered with."""
        return self._snapshot_frame(self.market(symbol))

    def skip_sequence(self, symbol: str) -> None:
        """Lose the next book delta of ``symbol``: the one after it breaks the chain."""
        self.market(symbol).skip_next = True

    def send_crossed_book(self, symbol: str) -> int:
        """Send a delta that crosses the book of ``symbol`` (a bid above the best ask) to its
        book subscribers now. The server's own book is not changed; its seq moves on, so
        later snapshots and deltas stay consistent. Returns how many connections got it.
        """
        market = self.market(symbol)
        prev = market.book_seq
        market.book_seq += 1
        crossing = market.mid + 2  # above the best ask (mid + 1)
        frame = self._delta_frame(market, prev, [[market.price(crossing), market.size(1)]], [])
        return self._broadcast(market, [("book", frame)])

    def _broadcast(self, market: Market, frames: Iterable[tuple[str, str]]) -> int:
        sent = 0
        for conn in list(self.connections):
            subs = conn.subscriptions
            for channel, frame in frames:
                if f"{channel}:{market.native}" in subs and conn.send_data(frame):
                    sent += 1
        return sent

    def _round_frames(self, m: Market) -> list[tuple[str, str]]:
        rng = self.rng
        ts = self.clock()
        m.mid = max(2, m.mid + rng.choice((-1, 0, 0, 1)))
        delta = self._step_book(m)
        if m.skip_next:  # the delta just made is "lost"; the next one reveals the gap
            m.skip_next = False
            delta = self._step_book(m)
        m.price_seq += 1
        price = {
            "ch": "price",
            "s": m.native,
            "seq": m.price_seq,
            "ts": ts,
            "b": m.price(m.mid - 1),
            "B": m.size(m.bids[m.mid - 1]),
            "a": m.price(m.mid + 1),
            "A": m.size(m.asks[m.mid + 1]),
        }
        m.trade_seq += 1
        side = rng.choice(("buy", "sell"))
        trade_ticks = m.mid + (1 if side == "buy" else -1)
        trade_lots = rng.randint(1, 50)
        trade = {
            "ch": "trades",
            "s": m.native,
            "seq": m.trade_seq,
            "ts": ts,
            "p": m.price(trade_ticks),
            "q": m.size(trade_lots),
            "side": side,
            "id": str(m.trade_seq),
        }
        candle = self._candle(m, ts, trade_ticks, trade_lots)
        return [
            ("price", _encode(price).decode()),
            ("trades", _encode(trade).decode()),
            ("book", delta),
            ("candles", _encode(candle).decode()),
        ]

    def _candle(self, m: Market, ts: int, ticks: int, lots: int) -> dict[str, Any]:
        start = ts - ts % 60_000
        closed = False
        if m.candle_start is None:
            m.candle_start, m.candle = start, [ticks, ticks, ticks, ticks, 0]
        elif start != m.candle_start:
            closed = True  # report the finished bar; the next round opens the new one
        bar = m.candle
        if not closed:
            bar[1], bar[2], bar[3] = max(bar[1], ticks), min(bar[2], ticks), ticks
            bar[4] += lots
        body = {
            "ch": "candles",
            "s": m.native,
            "ts": ts,
            "start": m.candle_start,
            "o": m.price(bar[0]),
            "h": m.price(bar[1]),
            "l": m.price(bar[2]),
            "c": m.price(bar[3]),
            "v": m.size(bar[4]),
            "closed": closed,
        }
        if closed:
            m.candle_start, m.candle = start, [ticks, ticks, ticks, ticks, lots]
        return body

    def _desired(
        self, m: Market, bids: dict[int, int], asks: dict[int, int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """The book around ``m.mid``: kept sizes where a level stays, fresh ones elsewhere, and
        two levels per side re-sized so every delta changes something."""
        rng = self.rng
        new_bids = {
            m.mid - k: bids.get(m.mid - k) or rng.randint(1, 5000) for k in range(1, self.depth + 1)
        }
        new_asks = {
            m.mid + k: asks.get(m.mid + k) or rng.randint(1, 5000) for k in range(1, self.depth + 1)
        }
        for side in (new_bids, new_asks):
            for price in rng.sample(sorted(side), min(2, len(side))):
                side[price] = rng.randint(1, 5000)
        return new_bids, new_asks

    def _step_book(self, m: Market) -> str:
        """Move the book to the current mid; return the delta frame (seq advanced)."""
        old_bids, old_asks = m.bids, m.asks
        m.bids, m.asks = self._desired(m, old_bids, old_asks)
        prev = m.book_seq
        m.book_seq += 1
        return self._delta_frame(m, prev, _diff(m, old_bids, m.bids), _diff(m, old_asks, m.asks))

    def _delta_frame(
        self, m: Market, prev: int, bids: list[list[str]], asks: list[list[str]]
    ) -> str:
        body = {
            "ch": "book",
            "s": m.native,
            "type": "delta",
            "seq": prev + 1,
            "prev": prev,
            "ts": self.clock(),
            "bids": bids,
            "asks": asks,
        }
        return _encode(body).decode()

    def _book_body(self, m: Market) -> dict[str, Any]:
        return {
            "bids": m.levels(m.bids, True, self.depth),
            "asks": m.levels(m.asks, False, self.depth),
        }

    def _snapshot_frame(self, m: Market) -> str:
        body = {
            "ch": "book",
            "s": m.native,
            "type": "snapshot",
            "seq": m.book_seq,
            "ts": self.clock(),
            **self._book_body(m),
        }
        return _encode(body).decode()


def _diff(m: Market, old: dict[int, int], new: dict[int, int]) -> list[list[str]]:
    """Absolute level updates turning ``old`` into ``new`` (size "0" removes a level)."""
    changes = [[m.price(p), m.size(s)] for p, s in sorted(new.items()) if old.get(p) != s]
    changes.extend([m.price(p), "0"] for p in sorted(old) if p not in new)
    return changes
