"""A fake Kraken spot exchange: WebSocket v2 (``/v2``) and REST ``/0/public/AssetPairs``.

One loopback port serves what the Kraken adapter talks to, in Kraken's own shapes (reference
§3 and captures of the live venue; ``[captured]`` marks shapes seen in recorded traffic rather
than in the documentation).

On connect, before anything is asked, the status banner ``[captured]``::

    {"channel":"status","type":"update","data":[{"version":"2.0.10","system":"online",
     "api_version":"v2","connection_id":18125794168470749634,"upcoming_maintenance":[],
     "emergency":[]}]}

Requests and their answers (method responses have their keys in alphabetical order, as Kraken
writes them; one acknowledgement *per symbol*; ``req_id`` is echoed when given)::

    {"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10},"req_id":3}
    {"method":"subscribe","req_id":3,"result":{"channel":"book","depth":10,"snapshot":true,
     "symbol":"BTC/USD"},"success":true,"time_in":"2026-09-25T17:48:24.745996Z",
     "time_out":"2026-09-25T17:48:24.746032Z"}
    {"error":"Currency pair not supported XBT/USD","method":"subscribe","req_id":3,
     "success":false,"symbol":"XBT/USD","time_in":"...","time_out":"..."}
    {"method":"ping","req_id":101}
    {"method":"pong","req_id":101,"time_in":"...","time_out":"..."}

Per-symbol errors: ``Currency pair not supported <symbol>`` (not listed, or listed but switched
off with :meth:`KrakenFake.reject`), ``Already subscribed`` (one subscription per channel and
symbol per connection, whatever its depth ``[captured]``), ``Subscription Not Found``
(unsubscribing what is not subscribed). Whole-request errors carry no ``symbol``: ``Unsupported
event`` for an unknown method ``[captured]``, the public host's answer to a private channel
``[captured]``, and ``EGeneral:Invalid arguments:<what>`` for malformed params (Kraken's error
prefix; the exact suffix for WebSocket params is not documented).

Channels (prices and quantities are JSON *numbers* written with the pair's precision, prices at
``pair_decimals`` and quantities at ``lot_decimals``: ``"bid":83744.2``, ``"qty":0.00044780``
``[captured]``; ``trim_numbers=True`` writes them as the 2023 documentation examples do instead,
trailing zeros dropped: ``"qty":740.0``)::

    {"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":64000.0,
     "qty":0.01234000},...],"asks":[...],"checksum":3832923880,
     "timestamp":"2026-09-25T17:48:24.799230Z"}]}
    {"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":63999.1,
     "qty":0.00000000}],"asks":[],"checksum":977902900,"timestamp":"..."}]}
    {"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":83744.2,
     "bid_qty":0.56251979,"ask":83744.3,"ask_qty":0.00044780,"last":83744.3,
     "volume":3156.84782110,"vwap":84174.6,"low":83163.6,"high":85247.4,"change":-429.3,
     "change_pct":-0.51,"trades":135262,"timestamp":"2026-09-25T17:48:26.844359Z"}]}
    {"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",
     "price":83744.3,"qty":0.00044780,"ord_type":"limit","trade_id":109116693,
     "timestamp":"2026-09-25T17:48:26.844359Z"}]}
    {"channel":"ohlc","type":"update","timestamp":"2026-09-25T17:48:26.844359566Z","data":[{
     "symbol":"BTC/USD","open":83729.5,"high":83745.2,"low":83729.4,"close":83744.3,"trades":33,
     "volume":0.21155628,"vwap":83736.4,"interval_begin":"2026-09-25T17:48:00.000000000Z",
     "interval":1,"timestamp":"2026-09-25T17:49:00.000000Z"}]}
    {"channel":"heartbeat"}

Book depth: a subscription at depth D (10, 25, 100, 500, 1000) gets a snapshot of the top D and
then, per change, the levels of the new top D whose size changed or that entered it, plus
``qty`` 0 for levels *deleted* from the book. A level that merely falls below the top D gets no
delete: the client truncates to D itself (Kraken's checksum guide). The checksum is CRC32 over
the top 10 of each side of the fake's own top-D view, as the client must rebuild it.

Heartbeats: ``{"channel":"heartbeat"}`` about once a second while the connection has a
subscription and no channel message went out in the last second (they are keepalive, not market
data: a stalled feed still gets them). App-level pings are answered even while stalled, unless
``faults.ignore_pings`` is set (Kraken's keepalive *is* the app-level ping).

Faults: ``skip_sequence(symbol)`` loses the next book update of that symbol (Kraken has no
sequence numbers: the next update's checksum reveals it), ``corrupt_checksum(symbol)`` sends the
next one with a wrong checksum, ``send_crossed_book(symbol)``, ``reject(symbol)``, plus the base
faults of :mod:`arbd.testing.fake` and :mod:`arbd.testing.marketfake`.

REST: ``GET /0/public/AssetPairs[?pair=XBTUSD,ETHUSD][&info=info|leverage|fees|margin]`` in
Kraken's envelope ``{"error":[],"result":{"XXBTZUSD":{...}}}``, with the legacy names
(``XXBTZUSD``, ``wsname`` ``XBT/USD``, ``XDGUSD``/``XDG/USD``) the adapter maps to v2's
``BTC/USD``/``DOGE/USD``; an unknown pair is HTTP 200 with ``["EQuery:Unknown asset pair"]``.

Limitation: ``ohlc`` serves interval 1 only (other valid intervals are refused with an invalid
arguments error).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec
import trio

from arbd.testing.connection import FakeConnection
from arbd.testing.fake import HttpAnswer
from arbd.testing.market import BookUpdate
from arbd.testing.marketfake import Bar, FakeMarket, Listing, MarketFake, Out

WS_PATH: Final = "/v2"
BOOK_DEPTHS: Final = (10, 25, 100, 500, 1000)
OHLC_INTERVALS: Final = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
TICKER_TRIGGERS: Final = ("trades", "bbo")
PRIVATE_CHANNELS: Final = frozenset({"executions", "balances", "level3"})
CHECKSUM_LEVELS: Final = 10
RECENT_TRADES: Final = 50
"""A trade snapshot is the last 50 trades (reference §3.3)."""
HEARTBEAT_INTERVAL: Final = 1.0
LOT_DECIMALS: Final = 8
OHLC_WARNING: Final = "timestamp is deprecated, use interval_begin"

HEARTBEAT: Final = '{"channel":"heartbeat"}'
PRIVATE_ERROR: Final = (
    "Private data and trading are unavailable on this endpoint. Try ws-auth.kraken.com"
)

ASSET_CODES: Final = {
    "BTC": ("XXBT", "XBT"),
    "ETH": ("XETH", "ETH"),
    "DOGE": ("XXDG", "XDG"),
    "USD": ("ZUSD", "USD"),
    "EUR": ("ZEUR", "EUR"),
}
"""v2 asset -> (REST asset code, v1/REST name). Other assets are spelled the same everywhere."""


@dataclass(frozen=True)
class KrakenPair:
    """What AssetPairs says about one listing besides its tick and lot."""

    key: str
    ordermin: str
    costmin: str = "0.5"


# v2 symbol -> (starting mid, tick, size granularity of the simulated book) and REST facts.
# Ticks are Kraken's (pair_decimals = the tick's decimals); quantities are written with
# lot_decimals 8 whatever granularity the simulated sizes have.
KRAKEN_PAIRS: Final[dict[str, tuple[Listing, KrakenPair]]] = {
    "BTC/USD": (Listing("BTC/USD", "64000", "0.1", "0.00001"), KrakenPair("XXBTZUSD", "0.00005")),
    "ETH/USD": (Listing("ETH/USD", "3200", "0.01", "0.0001"), KrakenPair("XETHZUSD", "0.002")),
    "BTC/USDT": (Listing("BTC/USDT", "64000", "0.1", "0.00001"), KrakenPair("XBTUSDT", "0.00005")),
    "ETH/USDT": (Listing("ETH/USDT", "3200", "0.01", "0.0001"), KrakenPair("ETHUSDT", "0.002")),
    "SOL/USD": (Listing("SOL/USD", "150", "0.01", "0.001"), KrakenPair("SOLUSD", "0.06")),
    "USDT/USD": (Listing("USDT/USD", "1", "0.00001", "0.01"), KrakenPair("USDTZUSD", "5")),
    "DOGE/USD": (Listing("DOGE/USD", "0.15", "0.0000001", "1"), KrakenPair("XDGUSD", "50")),
}
DEFAULT_SYMBOLS: Final = tuple(KRAKEN_PAIRS)

_encode = msgspec.json.Encoder().encode


class _Request(msgspec.Struct):
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw()
    req_id: int | None = None


class _Params(msgspec.Struct, forbid_unknown_fields=False):
    channel: str
    symbol: list[str] | None = None
    depth: int = 10
    snapshot: bool | None = None
    event_trigger: str = "trades"
    interval: int | None = None


_decode_request = msgspec.json.Decoder(_Request).decode
_decode_params = msgspec.json.Decoder(_Params).decode


# -- pure helpers -----------------------------------------------------------------------------


def rfc3339(ms: int, digits: int = 6) -> str:
    """Kraken's UTC time text: ``2023-09-25T09:04:31.742000Z`` (``digits`` fraction digits)."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    fraction = f"{ms % 1000:03d}".ljust(digits, "0")
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction}Z"


def pad(text: str, places: int) -> str:
    """Decimal ``text`` written with exactly ``places`` decimals (it never has more here)."""
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(places, '0')}" if places else whole


def trim(text: str) -> str:
    """The 2023 documentation's style: trailing zeros dropped, one kept (``740.0``)."""
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.rstrip('0') or '0'}"


def checksum(asks: Sequence[tuple[str, str]], bids: Sequence[tuple[str, str]]) -> int:
    """Kraken's book checksum over full-precision texts, both sides best first: for the top 10
    asks then the top 10 bids, price and qty without ``.`` and leading zeros; CRC32 unsigned.
    Written here from the checksum guide, independently of the adapter's own code."""
    parts = [
        price.replace(".", "").lstrip("0") + qty.replace(".", "").lstrip("0")
        for price, qty in (*asks[:CHECKSUM_LEVELS], *bids[:CHECKSUM_LEVELS])
    ]
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF


def _changes(old: dict[int, int], new: dict[int, int], book: dict[int, int]) -> list[int]:
    """Prices (ticks) a depth-limited update names: changed or entered the top, or deleted from
    the book (not those merely pushed out of the top: no delete is sent for those)."""
    changed = [p for p, size in new.items() if old.get(p) != size]
    changed.extend(p for p in old if p not in new and p not in book)
    return changed


@dataclass
class _View:
    """The top ``depth`` levels of one side pair as a depth-D subscriber holds them."""

    bids: dict[int, int]
    asks: dict[int, int]


@dataclass
class _Pair:
    """Kraken-specific state of one market (the book itself is the market's)."""

    rest: KrakenPair
    price_places: int
    views: dict[int, _View] = field(default_factory=dict)
    bbo: tuple[tuple[str, str], tuple[str, str]] | None = None
    open: Decimal = Decimal(0)
    last: Decimal = Decimal(0)
    low: Decimal = Decimal(0)
    high: Decimal = Decimal(0)
    volume: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    trades: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_TRADES))
    bar_start: int | None = None
    bar_notional: Decimal = Decimal(0)
    closed_bar: Bar | None = None
    closed_notional: Decimal = Decimal(0)


class KrakenFake(MarketFake):
    """Kraken spot. ``KrakenFake()`` lists BTC/USD, ETH/USD, BTC/USDT, ETH/USDT, SOL/USD,
    USDT/USD and DOGE/USD on ``/v2`` and ``/0/public/AssetPairs``.

    Args:
        symbols: v2 symbols to list (``BASE/QUOTE``); unknown ones get a plausible listing.
        trim_numbers: write numbers without trailing zeros (the 2023 documentation examples)
            instead of at the pair's precision (what the live venue sends).
        **options: :class:`MarketFake`'s (seed, depth, step, offset_bps, lag,
            disconnect_after, clock, simulator, listings).
    """

    websocket_paths = (WS_PATH,)
    ws_path = WS_PATH
    checksums = True

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        trim_numbers: bool = False,
        listings: Sequence[Listing] = (),
        **options: Any,
    ) -> None:
        known = {symbol: item for symbol, (item, _) in KRAKEN_PAIRS.items()}
        known.update((item.symbol, item) for item in listings)
        super().__init__(symbols, listings=tuple(known.values()), **options)
        self.trim_numbers = trim_numbers
        self.rejected: set[str] = set()
        """Listed symbols whose subscriptions are refused (see :meth:`reject`)."""
        self.pairs: dict[str, _Pair] = {}
        for native, m in self.markets.items():
            rest = KRAKEN_PAIRS[native][1] if native in KRAKEN_PAIRS else _default_rest(m.listing)
            places = m.book.price_places
            mid = Decimal(m.price((max(m.book.bids) + min(m.book.asks)) // 2))
            self.pairs[native] = _Pair(
                rest=rest, price_places=places, open=mid, last=mid, low=mid, high=mid
            )

    def default_symbols(self) -> Sequence[str]:
        return DEFAULT_SYMBOLS

    def native_symbol(self, item: Listing) -> str:
        return item.symbol  # v2 names markets BASE/QUOTE, BTC not XBT

    def reject(self, symbol: str, rejected: bool = True) -> None:
        """Refuse (or accept again) subscriptions to a listed symbol with Kraken's per-symbol
        error frame, as the venue does for pairs its REST catalogue lists but v2 does not
        serve."""
        native = self.market(symbol).native
        if rejected:
            self.rejected.add(native)
        else:
            self.rejected.discard(native)

    # -- numbers --------------------------------------------------------------------------------

    def _number(self, text: str) -> msgspec.Raw:
        return msgspec.Raw((trim(text) if self.trim_numbers else text).encode())

    def _price(self, m: FakeMarket, ticks: int) -> msgspec.Raw:
        return self._number(m.price(ticks))

    def _qty_text(self, m: FakeMarket, units: int) -> str:
        return pad(m.size(units), LOT_DECIMALS)

    def _decimal(self, pair: _Pair, value: Decimal, places: int | None = None) -> msgspec.Raw:
        exponent = Decimal(1).scaleb(-(pair.price_places if places is None else places))
        return self._number(format(value.quantize(exponent), "f"))

    # -- REST -----------------------------------------------------------------------------------

    def handle_http(self, method: str, path: str, query: dict[str, str]) -> HttpAnswer:
        if not path.startswith("/0/public/"):
            return super().handle_http(method, path, query)
        if path != "/0/public/AssetPairs" or method not in ("GET", "POST"):
            return 404, {}, _encode({"error": ["EGeneral:Unknown method"]})
        info = query.get("info", "info")
        if info not in _INFO_FIELDS:
            return 200, {}, _encode({"error": ["EGeneral:Invalid arguments:info"]})
        entries = {m.native: self._asset_pair(m) for m in self.markets.values()}
        wanted = [name for name in query.get("pair", "").split(",") if name]
        if wanted:
            by_name: dict[str, str] = {}
            for native, entry in entries.items():
                for name in (self.pairs[native].rest.key, entry["altname"], entry["wsname"]):
                    by_name[name] = native
            if any(name not in by_name for name in wanted):
                return 200, {}, _encode({"error": ["EQuery:Unknown asset pair"]})
            entries = {by_name[name]: entries[by_name[name]] for name in wanted}
        fields = _INFO_FIELDS[info]
        result = {
            self.pairs[native].rest.key: (
                entry if fields is None else {k: v for k, v in entry.items() if k in fields}
            )
            for native, entry in entries.items()
        }
        return 200, {}, _encode({"error": [], "result": result})

    def _asset_pair(self, m: FakeMarket) -> dict[str, Any]:
        listing, pair = m.listing, self.pairs[m.native]
        base_code, base_name = ASSET_CODES.get(listing.base, (listing.base, listing.base))
        quote_code, quote_name = ASSET_CODES.get(listing.quote, (listing.quote, listing.quote))
        leverage = [2, 3, 4, 5] if listing.base in ("BTC", "ETH", "SOL") else []
        return {
            "altname": base_name + quote_name,
            "wsname": f"{base_name}/{quote_name}",
            "aclass_base": "currency",
            "base": base_code,
            "aclass_quote": "currency",
            "quote": quote_code,
            "lot": "unit",
            "cost_decimals": 5,
            "pair_decimals": pair.price_places,
            "lot_decimals": LOT_DECIMALS,
            "lot_multiplier": 1,
            "leverage_buy": leverage,
            "leverage_sell": leverage,
            "fees": [],
            "fees_maker": [],
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": pair.rest.ordermin,
            "costmin": pair.rest.costmin,
            "tick_size": listing.tick,
            "status": "online",
            "execution_venue": "international",
        }

    # -- WebSocket: connection life -------------------------------------------------------------

    def on_connect(self, conn: FakeConnection) -> None:
        super().on_connect(conn)
        status = {
            "version": "2.0.10",
            "system": "online",
            "api_version": "v2",
            # Beyond 2**53 like the real ids, so a client parsing it as a double would notice.
            "connection_id": (0xC000_0000_0000_0000 + conn.id * 7_919) % 2**64,
            "upcoming_maintenance": [],
            "emergency": [],
        }
        conn.send_text(_encode({"channel": "status", "type": "update", "data": [status]}).decode())
        if self.port is not None:  # serving; a stream handed to handle_stream has no task nursery
            self.start_soon(self._heartbeats, conn)

    async def _heartbeats(self, conn: FakeConnection) -> None:
        """``{"channel":"heartbeat"}`` each second in which no channel message went out, once
        anything is subscribed; ends with the connection."""
        seen = conn.data_frames_sent
        while not conn.closed:
            await trio.sleep(HEARTBEAT_INTERVAL)
            if conn.data_frames_sent == seen and conn.subscriptions:
                conn.send_text(HEARTBEAT)
            seen = conn.data_frames_sent

    # -- WebSocket: requests --------------------------------------------------------------------

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        time_in = self.clock()
        try:
            request = _decode_request(message)
        except msgspec.DecodeError:
            self._reply(conn, time_in, {"error": "EGeneral:Invalid arguments", "success": False})
            return
        method, req_id = request.method, request.req_id
        if method == "ping":
            if not conn.ignoring_pings:
                self._reply(conn, time_in, {"method": "pong", "req_id": req_id})
        elif method in ("subscribe", "unsubscribe"):
            self._subscription(conn, method, request, time_in)
        else:
            error = {"error": "Unsupported event", "method": method, "success": False}
            self._reply(conn, time_in, {**error, "req_id": req_id})

    def _reply(self, conn: FakeConnection, time_in: int, body: dict[str, Any]) -> None:
        """A method response: keys sorted as Kraken writes them, absent ones left out."""
        body = {k: v for k, v in body.items() if v is not None}
        body["time_in"] = rfc3339(time_in)
        body["time_out"] = rfc3339(self.clock())
        conn.send_text(_encode(dict(sorted(body.items()))).decode())

    def _subscription(
        self, conn: FakeConnection, method: str, request: _Request, time_in: int
    ) -> None:
        req_id = request.req_id

        def refuse(error: str, symbol: str | None = None) -> None:
            body = {"error": error, "method": method, "success": False, "symbol": symbol}
            self._reply(conn, time_in, {**body, "req_id": req_id})

        try:
            params = _decode_params(request.params) if request.params else None
        except msgspec.DecodeError as exc:
            refuse(f"EGeneral:Invalid arguments:{exc}")
            return
        if params is None:
            refuse("EGeneral:Invalid arguments:params")
            return
        problem = self._invalid(params)
        if problem is not None:
            refuse(problem)
            return
        channel = params.channel
        for symbol in params.symbol or ():
            market = self.markets.get(symbol)
            held = _held(conn, channel, symbol)
            if market is None or (method == "subscribe" and symbol in self.rejected):
                refuse(f"Currency pair not supported {symbol}", symbol)
            elif method == "subscribe" and held is not None:
                refuse("Already subscribed", symbol)
            elif method == "unsubscribe" and held is None:
                refuse("Subscription Not Found", symbol)
            elif method == "unsubscribe":
                assert held is not None
                conn.subscriptions.discard(held)
                result = _ack_result(params, symbol, subscribing=False)
                self._reply(conn, time_in, {"method": method, "req_id": req_id, **result})
            else:
                conn.subscriptions.add(_topic(params, symbol))
                result = _ack_result(params, symbol, subscribing=True)
                self._reply(conn, time_in, {"method": method, "req_id": req_id, **result})
                snapshot = self._snapshot(params, market)
                if snapshot is not None:
                    conn.send_data(snapshot)

    def _invalid(self, params: _Params) -> str | None:
        """Why a request's params are refused as a whole, or None."""
        channel = params.channel
        if channel in PRIVATE_CHANNELS:
            return PRIVATE_ERROR
        if channel not in ("book", "ticker", "trade", "ohlc"):
            return f"EGeneral:Invalid arguments:channel {channel} not supported"
        if not params.symbol:
            return "EGeneral:Invalid arguments:symbol"
        if channel == "book" and params.depth not in BOOK_DEPTHS:
            return "EGeneral:Invalid arguments:depth"
        if channel == "ticker" and params.event_trigger not in TICKER_TRIGGERS:
            return "EGeneral:Invalid arguments:event_trigger"
        if channel == "ohlc" and params.interval not in OHLC_INTERVALS:
            return "EGeneral:Invalid arguments:interval"
        if channel == "ohlc" and params.interval != 1:
            return "EGeneral:Invalid arguments:interval (this fake serves interval 1 only)"
        return None

    def _snapshot(self, params: _Params, m: FakeMarket) -> str | None:
        """The snapshot a new subscription gets, if it asked for one (the default except on
        ``trade``)."""
        channel = params.channel
        wanted = params.snapshot if params.snapshot is not None else channel != "trade"
        if not wanted:
            return None
        ts = self.clock()
        if channel == "book":
            view = self._view(m, params.depth)
            bids, asks = sorted(view.bids, reverse=True), sorted(view.asks)
            entry = self._book_entry(m, view, bids, asks, ts, corrupt=False)
            return _encode({"channel": "book", "type": "snapshot", "data": [entry]}).decode()
        if channel == "ticker":
            return self._ticker_frame(m, "snapshot", ts)
        if channel == "trade":
            recent = list(self.pairs[m.native].recent)
            return _encode({"channel": "trade", "type": "snapshot", "data": recent}).decode()
        pair = self.pairs[m.native]
        bars = [(pair.closed_bar, pair.closed_notional), (m.bar, pair.bar_notional)]
        items = [self._ohlc_item(m, bar, notional) for bar, notional in bars if bar is not None]
        return self._ohlc_frame("snapshot", items, ts)

    # -- market data ----------------------------------------------------------------------------

    def _view(self, m: FakeMarket, depth: int) -> _View:
        """The depth-``depth`` view of ``m``'s book (made on first use, then kept current by
        every book update)."""
        views = self.pairs[m.native].views
        view = views.get(depth)
        if view is None:
            view = views[depth] = _top(m, depth)
        return view

    def _book_entry(
        self,
        m: FakeMarket,
        view: _View,
        bids: Iterable[int],
        asks: Iterable[int],
        ts: int,
        *,
        corrupt: bool,
    ) -> dict[str, Any]:
        def levels(prices: Iterable[int], side: dict[int, int]) -> list[dict[str, Any]]:
            return [
                {"price": self._price(m, p), "qty": self._number(self._qty_text(m, side.get(p, 0)))}
                for p in prices
            ]

        top_asks = [(m.price(p), self._qty_text(m, view.asks[p])) for p in sorted(view.asks)]
        top_bids = [
            (m.price(p), self._qty_text(m, view.bids[p])) for p in sorted(view.bids, reverse=True)
        ]
        crc = checksum(top_asks, top_bids)
        if corrupt:
            crc ^= 0x0BAD_F00D  # any other value: the client's computation cannot match it
        return {
            "symbol": m.native,
            "bids": levels(bids, view.bids),
            "asks": levels(asks, view.asks),
            "checksum": crc,
            "timestamp": rfc3339(ts),
        }

    def book_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        """One update per subscribed depth whose view changed, built by diffing each view with
        the book (``update`` itself is not needed: the views hold what clients hold)."""
        book = m.book
        changed: list[tuple[int, _View, list[int], list[int]]] = []
        for depth, old in self.pairs[m.native].views.items():
            new = _top(m, depth)
            bids = sorted(_changes(old.bids, new.bids, book.bids), reverse=True)
            asks = sorted(_changes(old.asks, new.asks, book.asks))
            old.bids, old.asks = new.bids, new.asks
            if bids or asks:
                changed.append((depth, old, bids, asks))
        if not changed or m.take_skip():  # a skip loses this update on every depth
            return []
        corrupt = m.take_corrupt()
        return [
            (
                f"book:{depth}:{m.native}",
                _encode(
                    {
                        "channel": "book",
                        "type": "update",
                        "data": [self._book_entry(m, view, bids, asks, ts, corrupt=corrupt)],
                    }
                ).decode(),
            )
            for depth, view, bids, asks in changed
        ]

    def round_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        pair = self.pairs[m.native]
        frames = self.book_frames(m, update, ts)
        if update.trades:
            items = [self._trade(m, pair, trade, ts) for trade in update.trades]
            body = {"channel": "trade", "type": "update", "data": items}
            frames.append((f"trade:{m.native}", _encode(body).decode()))
            frames.append((f"ticker:trades:{m.native}", self._ticker_frame(m, "update", ts)))
        bbo = m.book.best()
        if bbo != pair.bbo:
            pair.bbo = bbo
            frames.append((f"ticker:bbo:{m.native}", self._ticker_frame(m, "update", ts)))
        frames.extend(self._candle_frames(m, pair, update, ts))
        return frames

    def _trade(
        self, m: FakeMarket, pair: _Pair, trade: tuple[str, str, str], ts: int
    ) -> dict[str, Any]:
        price_text, size_text, side = trade
        price, size = Decimal(price_text), Decimal(size_text)
        pair.last = price
        pair.low, pair.high = min(pair.low, price), max(pair.high, price)
        pair.volume += size
        pair.notional += price * size
        pair.trades += 1
        item = {
            "symbol": m.native,
            "side": side,
            "price": self._number(price_text),
            "qty": self._number(pad(size_text, LOT_DECIMALS)),
            "ord_type": "market" if side == "buy" else "limit",
            "trade_id": m.next_trade_id(),
            "timestamp": rfc3339(ts),
        }
        pair.recent.append(item)
        return item

    def _ticker_frame(self, m: FakeMarket, kind: str, ts: int) -> str:
        pair = self.pairs[m.native]
        bid, ask = max(m.book.bids), min(m.book.asks)
        vwap = pair.notional / pair.volume if pair.volume else pair.last
        change = pair.last - pair.open
        item = {
            "symbol": m.native,
            "bid": self._price(m, bid),
            "bid_qty": self._number(self._qty_text(m, m.book.bids[bid])),
            "ask": self._price(m, ask),
            "ask_qty": self._number(self._qty_text(m, m.book.asks[ask])),
            "last": self._decimal(pair, pair.last),
            "volume": self._decimal(pair, pair.volume, LOT_DECIMALS),
            "vwap": self._decimal(pair, vwap),
            "low": self._decimal(pair, pair.low),
            "high": self._decimal(pair, pair.high),
            "change": self._decimal(pair, change),
            "change_pct": self._decimal(pair, change * 100 / pair.open, 2),
            "trades": pair.trades,
            "timestamp": rfc3339(ts),
        }
        return _encode({"channel": "ticker", "type": kind, "data": [item]}).decode()

    def _candle_frames(self, m: FakeMarket, pair: _Pair, update: BookUpdate, ts: int) -> list[Out]:
        """The current 1-minute bar whenever a trade changed it or a new one began."""
        bars = m.candle(ts, update.trades, self.candle_interval_ms)
        current = bars[-1]
        if len(bars) > 1:
            pair.closed_bar, pair.closed_notional = bars[0], pair.bar_notional
        new_bar = current.start_ms != pair.bar_start
        if new_bar:
            pair.bar_start, pair.bar_notional = current.start_ms, Decimal(0)
        pair.bar_notional += sum(
            (Decimal(price) * Decimal(size) for price, size, _ in update.trades), Decimal(0)
        )
        if not (update.trades or new_bar):
            return []
        items = [self._ohlc_item(m, current, pair.bar_notional)]
        return [(f"ohlc:1:{m.native}", self._ohlc_frame("update", items, ts))]

    def _ohlc_item(self, m: FakeMarket, bar: Bar, notional: Decimal) -> dict[str, Any]:
        pair = self.pairs[m.native]
        volume = Decimal(m.fmt_volume(bar))
        vwap = notional / volume if volume else Decimal(m.price(bar.close))
        end = bar.start_ms + self.candle_interval_ms
        return {
            "symbol": m.native,
            "open": self._price(m, bar.open),
            "high": self._price(m, bar.high),
            "low": self._price(m, bar.low),
            "close": self._price(m, bar.close),
            "trades": bar.trades,
            "volume": self._number(pad(m.fmt_volume(bar), LOT_DECIMALS)),
            "vwap": self._decimal(pair, vwap),
            "interval_begin": rfc3339(bar.start_ms, 9),
            "interval": self.candle_interval_ms // 60_000,
            "timestamp": rfc3339(end),  # deprecated: the interval's end
        }

    def _ohlc_frame(self, kind: str, items: list[dict[str, Any]], ts: int) -> str:
        body = {"channel": "ohlc", "type": kind, "timestamp": rfc3339(ts, 9), "data": items}
        return _encode(body).decode()


_INFO_FIELDS: Final[dict[str, frozenset[str] | None]] = {
    "info": None,
    "leverage": frozenset({"leverage_buy", "leverage_sell"}),
    "fees": frozenset({"fees", "fees_maker", "fee_volume_currency"}),
    "margin": frozenset({"margin_call", "margin_stop"}),
}
"""AssetPairs ``info`` values -> the fields they return (None: all)."""


def _default_rest(item: Listing) -> KrakenPair:
    """REST facts for a listing outside the table: the key is the altname."""
    base = ASSET_CODES.get(item.base, (item.base, item.base))[1]
    quote = ASSET_CODES.get(item.quote, (item.quote, item.quote))[1]
    return KrakenPair(key=base + quote, ordermin=item.lot)


def _top(m: FakeMarket, depth: int) -> _View:
    book = m.book
    bids = {p: book.bids[p] for p in sorted(book.bids, reverse=True)[:depth]}
    asks = {p: book.asks[p] for p in sorted(book.asks)[:depth]}
    return _View(bids, asks)


def _topic(params: _Params, symbol: str) -> str:
    """The fan-out topic of one subscription: channel, its options, symbol."""
    channel = params.channel
    if channel == "book":
        return f"book:{params.depth}:{symbol}"
    if channel == "ticker":
        return f"ticker:{params.event_trigger}:{symbol}"
    if channel == "ohlc":
        return f"ohlc:{params.interval}:{symbol}"
    return f"trade:{symbol}"


def _held(conn: FakeConnection, channel: str, symbol: str) -> str | None:
    """The topic ``conn`` holds for (channel, symbol) whatever its options, if any."""
    prefix, suffix = f"{channel}:", f":{symbol}"
    return next(
        (t for t in conn.subscriptions if t.startswith(prefix) and t.endswith(suffix)), None
    )


def _ack_result(params: _Params, symbol: str, *, subscribing: bool) -> dict[str, Any]:
    """``result`` and ``success`` of a per-symbol acknowledgement (result keys sorted)."""
    result: dict[str, Any] = {"channel": params.channel}
    if params.channel == "book":
        result["depth"] = params.depth
    elif params.channel == "ticker":
        result["event_trigger"] = params.event_trigger
    elif params.channel == "ohlc":
        result["interval"] = params.interval
    if subscribing:
        wanted = params.snapshot if params.snapshot is not None else params.channel != "trade"
        result["snapshot"] = wanted
    result["symbol"] = symbol
    if subscribing and params.channel == "ohlc":
        result["warnings"] = [OHLC_WARNING]
    return {"result": result, "success": True}


__all__ = ["DEFAULT_SYMBOLS", "KRAKEN_PAIRS", "KrakenFake", "checksum"]
