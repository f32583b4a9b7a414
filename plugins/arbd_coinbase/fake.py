"""A fake Coinbase Advanced Trade market-data server (reference §2.1), on one loopback port.

WebSocket: the market-data endpoint is the bare host (``wss://advanced-trade-ws.coinbase.com``),
so the fake accepts handshakes on ``/`` only. Client messages, one channel per message::

    {"type":"subscribe","channel":"heartbeats"}
    {"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"level2"}
    {"type":"unsubscribe","product_ids":["BTC-USD"],"channel":"level2"}

Every server message except errors is an envelope numbered by ONE counter per connection,
starting at 0, shared by all channels including the acks (reference §2.1 and §8.3)::

    {"channel":"subscriptions","client_id":"","timestamp":"2026-04-07T14:30:00.1Z","sequence_num":0,
     "events":[{"subscriptions":{"heartbeats":["heartbeats"],"level2":["BTC-USD"]}}]}
    {"channel":"l2_data","client_id":"","timestamp":"2026-04-07T14:30:00.1Z","sequence_num":1,
     "events":[{"type":"snapshot","product_id":"BTC-USD","updates":[
       {"side":"bid","event_time":"1970-01-01T00:00:00Z","price_level":"63999.99",
        "new_quantity":"0.5"}, ...]}]}
    {"channel":"l2_data", ... ,"events":[{"type":"update","product_id":"BTC-USD","updates":[
       {"side":"offer","event_time":"2026-04-07T14:30:00.2Z","price_level":"64000.5",
        "new_quantity":"0"}]}]}                                     # "0" removes the level
    {"channel":"market_trades", ... ,"events":[{"type":"update","trades":[{"trade_id":"100001",
       "product_id":"BTC-USD","price":"64000.5","size":"0.0123","side":"SELL",
       "time":"2026-04-07T14:30:00.2Z"}]}]}                        # side: the MAKER's side
    {"channel":"ticker", ... ,"events":[{"type":"update","tickers":[{"type":"ticker",
       "product_id":"BTC-USD","price":"64000.5","volume_24_h":"0.0123","low_24_h":"64000.5",
       "high_24_h":"64000.5","low_52_w":"64000.5","high_52_w":"64000.5",
       "price_percent_chg_24_h":"0.00078125","best_bid":"64000.49","best_bid_quantity":"0.2",
       "best_ask":"64000.5","best_ask_quantity":"0.04"}]}]}
    {"channel":"candles", ... ,"events":[{"type":"update","candles":[{"start":"1775571900",
       "high":"64000.5","low":"63990","open":"63995.01","close":"64000.5","volume":"1.2",
       "product_id":"BTC-USD"}]}]}                                 # 5-minute buckets
    {"channel":"heartbeats", ... ,"events":[{"current_time":
       "2026-04-07 14:30:01.1 +0000 UTC m=+1.000000000","heartbeat_counter":"1"}]}
    {"type":"error","message":"Failed to subscribe: FOO-BAR is not a valid product"}

Behaviour, and where it comes from:

* A subscribe is answered with the ``subscriptions`` message listing everything the connection
  is subscribed to, then one ``snapshot`` message per product (level2: the whole book; ticker:
  the current ticker; market_trades: the recent trades; candles: the current bucket); later
  messages are ``update``. An unsubscribe is answered with ``subscriptions`` too (docs).
* Numbers are written per connection when a frame is sent (``broadcast`` takes a callable
  frame for this). ``skip_sequence(symbol)`` loses one message on every connection just before
  that symbol's next level2 update: that connection's counter jumps by two, which is all a
  real client ever sees of a lost message. A stalled connection spends no numbers: nothing was
  produced for it.
* Heartbeats: one message per second per subscribed connection, sent like control traffic,
  so they keep flowing while ``faults.stall`` holds the market data back (the stale watchdog,
  not the idle timeout, must notice). There is no protocol-level ping (a live probe found
  none); ``faults.ignore_pings`` stops the heartbeats, the nearest thing this exchange has.
  ``heartbeat_counter`` is a string as in the docs example (the AsyncAPI says integer:
  ``heartbeat_counter_text = False``; reference §8.5).
* ``ticker`` is trade-driven: an update goes out in rounds that printed a trade.
* Prices and sizes are decimal text without trailing zeros, as in the docs examples
  (``"21921.3"``, ``"0.3"``, ``"15460"``); timestamps are RFC 3339 with trailing zeros of the
  fraction trimmed (Go's ``RFC3339Nano``).
* USDC: for each listed ``X-USD`` the products list also carries ``X-USDC`` with
  ``alias: "X-USD"``; market channels serve it from the ``X-USD`` book, under that product id.
* A subscribe naming an unknown product or channel, or none, is rejected as a whole with an
  error frame; the subscription set does not change. The error text is modelled on the Coinbase
  Exchange feed's (``Failed to subscribe`` / ``... is not a valid product``); the Advanced
  Trade docs only promise ``type`` and ``message``. ``reject(channel, product)`` makes the fake
  refuse a product it lists (for error-handling tests).
* A connection that has not subscribed within ``subscribe_timeout`` seconds is closed ("you are
  disconnected if no subscribe has been received within 5 seconds").
* Channels served: level2, ticker, market_trades, candles, heartbeats. The real ``ticker_batch``,
  ``status`` and ``user`` channels are not served and get the error frame.

REST: ``GET /api/v3/brokerage/market/products`` (public, no auth) in the real response shape
(``{"products":[...],"num_products":N,"pagination":null}``), ``product_type`` and
``product_ids`` filters; a bad ``product_type`` is a 400 with Coinbase's error body
``{"error":"INVALID_ARGUMENT","error_details":...,"message":...}``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec
import trio

from arbd.testing.connection import FakeConnection
from arbd.testing.fake import HttpAnswer
from arbd.testing.market import BookUpdate
from arbd.testing.marketfake import Bar, FakeMarket, MarketFake, Out, bar_close

PRODUCTS_PATH: Final = "/api/v3/brokerage/market/products"
CHANNELS: Final = ("heartbeats", "level2", "ticker", "market_trades", "candles")
"""Channels this fake serves (subscription names; level2 arrives as ``l2_data``)."""
SNAPSHOT_EVENT_TIME: Final = "1970-01-01T00:00:00Z"
"""``event_time`` of snapshot levels, as in the docs example."""
RECENT_TRADES: Final = 50
"""Trades kept per product for the market_trades snapshot."""
_NOT_ALIASED: Final = frozenset({"USDT", "EURC"})
"""``USDT-USDC`` and ``EURC-USDC`` "are available on all channels": real books, no alias."""
_NAMES: Final = {
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
    "SOL": "Solana",
    "XRP": "XRP",
    "USDT": "Tether",
    "USD": "US Dollar",
    "USDC": "USDC",
}

_encode = msgspec.json.Encoder().encode


class _Request(msgspec.Struct):
    type: str | None = None
    channel: str | None = None
    product_ids: list[str] | None = None
    jwt: str | None = None


_decode_request = msgspec.json.Decoder(_Request).decode


@dataclass
class _Session:
    """What the server keeps per connection."""

    seq: int = 0
    """The next ``sequence_num`` on this connection."""
    subs: dict[str, dict[str, None]] = field(default_factory=dict)
    """Channel -> product ids as the client named them (``BTC-USDC`` stays ``BTC-USDC``)."""
    heartbeats: int = 0
    subscribed: bool = False


@dataclass
class _Tape:
    """A product's trade statistics in ticks and lot units, for tickers and the products list."""

    open: int
    last: int
    low: int
    high: int
    volume: int = 0
    recent: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=RECENT_TRADES))
    ticker: dict[str, str] | None = None
    """The last ticker sent (what a client's latest quote must equal)."""


def num(text: str) -> str:
    """Coinbase's decimal text: no trailing zeros ("64000.10" -> "64000.1", "0.000" -> "0")."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def rfc3339(ms: int) -> str:
    """Go's RFC3339Nano of a millisecond time: the fraction's trailing zeros trimmed."""
    stamp = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{ms % 1000:03d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def _go_time(ms: int, uptime: float) -> str:
    """Go's ``time.Time.String()``, as the heartbeat's ``current_time`` shows it."""
    stamp = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    fraction = f"{ms % 1000:03d}".rstrip("0")
    if fraction:
        stamp += "." + fraction
    return f"{stamp} +0000 UTC m=+{uptime:.9f}"


def _error_body(code: str, message: str) -> bytes:
    return _encode({"error": code, "error_details": message, "message": message})


class CoinbaseFake(MarketFake):
    """Coinbase Advanced Trade market data. See the module docstring.

    Args (besides :class:`MarketFake`'s): ``heartbeat_interval`` seconds between heartbeats
    (None: none), ``subscribe_timeout`` seconds a connection may stay unsubscribed (None: no
    limit).
    """

    ws_path = "/"
    websocket_paths = ("/",)
    candle_interval_ms = 300_000
    heartbeat_counter_text = True
    """Docs example: ``"heartbeat_counter": "3049"``; the AsyncAPI says integer."""

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        heartbeat_interval: float | None = 1.0,
        subscribe_timeout: float | None = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(symbols, **options)
        self.heartbeat_interval = heartbeat_interval
        self.subscribe_timeout = subscribe_timeout
        self.sessions: dict[int, _Session] = {}
        """Connection id -> per-connection state."""
        self.rejected: set[tuple[str, str]] = set()
        """(channel, product id) pairs refused with the error frame; see :meth:`reject`."""
        self.aliases: dict[str, str] = {
            f"{m.listing.base}-USDC": m.native
            for m in self.markets.values()
            if m.listing.quote == "USD" and m.listing.base not in _NOT_ALIASED
        }
        """``X-USDC`` -> ``X-USD``: products served by the unified USD book."""
        self.tapes: dict[str, _Tape] = {}
        for m in self.markets.values():
            mid = bar_close(None, m.book)
            self.tapes[m.native] = _Tape(open=mid, last=mid, low=mid, high=mid)
        self._start_ms = self.clock()

    # -- switches for tests -----------------------------------------------------------------

    def reject(self, channel: str, symbol: str) -> None:
        """Refuse subscribes of ``channel`` naming ``symbol`` (normalized or native), with the
        error frame a bad product gets, although the product is listed."""
        self.rejected.add((channel, self.market(symbol).native))

    def sequence(self, conn: FakeConnection) -> int:
        """The ``sequence_num`` the next message on ``conn`` will carry."""
        return self.sessions[conn.id].seq

    def send_envelope(self, conn: FakeConnection, channel: str, events: list[Any]) -> bool:
        """Send a numbered market-data message on any channel (e.g. one the client does not
        know: "New message types can be added at any time")."""
        session = self.sessions.get(conn.id)
        if session is None or conn.stalled:
            return False
        return conn.send_data(self._envelope(session, channel, _encode(events), self.clock()))

    # -- connections ------------------------------------------------------------------------

    def on_connect(self, conn: FakeConnection) -> None:
        super().on_connect(conn)
        self.sessions[conn.id] = _Session()
        if self.heartbeat_interval is not None:
            self.start_soon(self._heartbeats, conn, self.heartbeat_interval)
        if self.subscribe_timeout is not None:
            self.start_soon(self._subscribe_deadline, conn, self.subscribe_timeout)

    def on_disconnect(self, conn: FakeConnection) -> None:
        self.sessions.pop(conn.id, None)

    async def _heartbeats(self, conn: FakeConnection, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            session = self.sessions.get(conn.id)
            if session is None or not conn.open:
                return
            if "heartbeats" not in conn.subscriptions or conn.ignoring_pings:
                continue
            session.heartbeats += 1
            ts = self.clock()
            counter = session.heartbeats
            event = {
                "current_time": _go_time(ts, (ts - self._start_ms) / 1000),
                "heartbeat_counter": str(counter) if self.heartbeat_counter_text else counter,
            }
            conn.send_text(self._envelope(session, "heartbeats", _encode([event]), ts))

    async def _subscribe_deadline(self, conn: FakeConnection, after: float) -> None:
        await trio.sleep(after)
        session = self.sessions.get(conn.id)
        if session is not None and not session.subscribed and conn.open:
            conn.close(1000, "no subscribe received")
            self.notify()

    # -- client messages --------------------------------------------------------------------

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        session = self.sessions[conn.id]
        try:
            request = _decode_request(message)
        except msgspec.DecodeError:
            self._error(conn, "malformed message")
            return
        op, channel = request.type, request.channel
        if op not in ("subscribe", "unsubscribe"):
            self._error(conn, f"unknown message type {op or '(none)'}")
            return
        verb = "subscribe" if op == "subscribe" else "unsubscribe"
        if not channel:
            self._error(conn, f"Failed to {verb}: no channel provided")
            return
        if channel not in CHANNELS:
            self._error(conn, f"Failed to {verb}: unsupported channel {channel}")
            return
        # heartbeats takes no products; its subscription is listed as ["heartbeats"].
        products = ["heartbeats"] if channel == "heartbeats" else list(request.product_ids or [])
        if channel != "heartbeats":
            for product in products:
                stream = self._stream(product)
                if stream is None or (channel, stream) in self.rejected:
                    # The whole message is refused (as the Exchange feed does), nothing changes.
                    self._error(conn, f"Failed to {verb}: {product} is not a valid product")
                    return
        if op == "subscribe":
            if not products:
                self._error(conn, "Failed to subscribe: no product ids provided")
                return
            session.subscribed = True
            session.subs.setdefault(channel, {}).update(dict.fromkeys(products))
        elif not products or channel == "heartbeats":  # "unsubscribe from a channel entirely"
            session.subs.pop(channel, None)
        else:
            chosen = session.subs.get(channel, {})
            for product in products:
                chosen.pop(product, None)
            if not chosen:
                session.subs.pop(channel, None)
        conn.subscriptions = {
            channel_name if channel_name == "heartbeats" else f"{channel_name}:{self._stream(p)}"
            for channel_name, chosen in session.subs.items()
            for p in chosen
        }
        self._ack(conn, session)
        if op == "subscribe" and channel != "heartbeats":
            ts = self.clock()
            for native in dict.fromkeys(self._stream(p) for p in products):
                if native is not None:
                    self._send_snapshot(conn, session, channel, self.markets[native], ts)

    def _stream(self, product: str) -> str | None:
        """The listed book serving ``product`` (itself, or its USD book), or None."""
        if product in self.markets:
            return product
        return self.aliases.get(product)

    def _ack(self, conn: FakeConnection, session: _Session) -> None:
        listed = {channel: list(chosen) for channel, chosen in session.subs.items()}
        events = _encode([{"subscriptions": listed}])
        conn.send_text(self._envelope(session, "subscriptions", events, self.clock()))

    def _error(self, conn: FakeConnection, message: str) -> None:
        conn.send_text(_encode({"type": "error", "message": message}).decode())

    def _send_snapshot(
        self, conn: FakeConnection, session: _Session, channel: str, m: FakeMarket, ts: int
    ) -> None:
        if conn.stalled:
            return  # nothing produced, no number spent (see the module docstring)
        if channel == "level2":
            name, event = "l2_data", self._l2_snapshot(m)
        elif channel == "ticker":
            name, event = "ticker", {"type": "snapshot", "tickers": [self._ticker(m)]}
        elif channel == "market_trades":
            trades = list(self.tapes[m.native].recent)
            name, event = "market_trades", {"type": "snapshot", "trades": trades}
        else:
            bar = self._current_bar(m, ts)
            name, event = "candles", {"type": "snapshot", "candles": [self._candle(m, bar)]}
        conn.send_data(self._envelope(session, name, _encode([event]), ts))

    # -- frames -----------------------------------------------------------------------------

    def _envelope(self, session: _Session, channel: str, events: bytes, ts: int) -> str:
        number = session.seq
        session.seq += 1
        return (
            f'{{"channel":"{channel}","client_id":"","timestamp":"{rfc3339(ts)}",'
            f'"sequence_num":{number},"events":{events.decode()}}}'
        )

    def _numbered(
        self, channel: str, events: list[Any], ts: int, *, lose_one: bool = False
    ) -> Callable[[FakeConnection], str]:
        """A frame numbered for each connection as it is sent."""
        body = _encode(events)

        def build(conn: FakeConnection) -> str:
            session = self.sessions.get(conn.id)
            if session is None or conn.stalled or not conn.open:
                return ""  # not sent (send_data drops it), so no number is spent
            if lose_one:
                session.seq += 1  # the message that was "lost" on the way
            return self._envelope(session, channel, body, ts)

        return build

    def _l2_snapshot(self, m: FakeMarket) -> dict[str, Any]:
        bids, asks = m.book.snapshot()
        updates = [_level("bid", p, s, SNAPSHOT_EVENT_TIME) for p, s in bids]
        updates += [_level("offer", p, s, SNAPSHOT_EVENT_TIME) for p, s in asks]
        return {"type": "snapshot", "product_id": m.native, "updates": updates}

    def book_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        stamp = rfc3339(ts)
        updates = [_level("bid", p, s, stamp) for p, s in update.bids]
        updates += [_level("offer", p, s, stamp) for p, s in update.asks]
        if not updates:
            return []  # nothing changed: no message (and a pending skip waits for one)
        event = {"type": "update", "product_id": m.native, "updates": updates}
        frame = self._numbered("l2_data", [event], ts, lose_one=m.take_skip())
        return [(f"level2:{m.native}", frame)]

    def round_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        out = self.book_frames(m, update, ts)
        tape = self.tapes[m.native]
        trades: list[dict[str, str]] = []
        tick, places = m.book.tick, m.book.size_places
        for price, size, taker in update.trades:
            ticks = int(Decimal(price) / tick)
            tape.last, tape.low, tape.high = ticks, min(tape.low, ticks), max(tape.high, ticks)
            tape.volume += int(Decimal(size).scaleb(places))
            trade = {
                "trade_id": str(m.next_trade_id()),
                "product_id": m.native,
                "price": num(price),
                "size": num(size),
                # "side refers to the makers side": a buying taker lifted a resting sell.
                "side": "SELL" if taker == "buy" else "BUY",
                "time": rfc3339(ts),
            }
            trades.append(trade)
            tape.recent.append(trade)
        topic = m.native
        if trades:
            trades_event = {"type": "update", "trades": trades}
            out.append(
                (f"market_trades:{topic}", self._numbered("market_trades", [trades_event], ts))
            )
            ticker_event = {"type": "update", "tickers": [self._ticker(m)]}
            out.append((f"ticker:{topic}", self._numbered("ticker", [ticker_event], ts)))
        bars = m.candle(ts, update.trades, self.candle_interval_ms)
        candles_event = {"type": "update", "candles": [self._candle(m, bar) for bar in bars]}
        out.append((f"candles:{topic}", self._numbered("candles", [candles_event], ts)))
        return out

    def _ticker(self, m: FakeMarket) -> dict[str, str]:
        tape = self.tapes[m.native]
        (bid, bid_size), (ask, ask_size) = m.book.best()
        change = (tape.last - tape.open) * 100 / tape.open if tape.open else 0.0
        ticker = {
            "type": "ticker",
            "product_id": m.native,
            "price": num(m.price(tape.last)),
            "volume_24_h": num(m.size(tape.volume)),
            "low_24_h": num(m.price(tape.low)),
            "high_24_h": num(m.price(tape.high)),
            "low_52_w": num(m.price(tape.low)),
            "high_52_w": num(m.price(tape.high)),
            "price_percent_chg_24_h": repr(change),
            "best_bid": num(bid),
            "best_bid_quantity": num(bid_size),
            "best_ask": num(ask),
            "best_ask_quantity": num(ask_size),
        }
        tape.ticker = ticker
        return ticker

    def _current_bar(self, m: FakeMarket, ts: int) -> Bar:
        """The bucket a candles snapshot shows now (without folding anything into it)."""
        start = ts - ts % self.candle_interval_ms
        if m.bar is not None and m.bar.start_ms == start:
            return m.bar
        last = bar_close(m.bar, m.book)
        return Bar(start, last, last, last, last)

    def _candle(self, m: FakeMarket, bar: Bar) -> dict[str, str]:
        return {
            "start": str(bar.start_ms // 1000),
            "high": num(m.price(bar.high)),
            "low": num(m.price(bar.low)),
            "open": num(m.price(bar.open)),
            "close": num(m.price(bar.close)),
            "volume": num(m.fmt_volume(bar)),
            "product_id": m.native,
        }

    # -- REST -------------------------------------------------------------------------------

    def handle_http(self, method: str, path: str, query: dict[str, str]) -> HttpAnswer:
        if path != PRODUCTS_PATH:
            return 404, {}, _error_body("NOT_FOUND", f"no route for {path}")
        if method != "GET":
            return 405, {"Allow": "GET"}, _error_body("UNIMPLEMENTED", "method not allowed")
        kind = query.get("product_type", "")
        if kind not in ("", "SPOT", "FUTURE", "UNKNOWN_PRODUCT_TYPE"):
            detail = f'invalid value for enum type: "{kind}"'
            return 400, {}, _error_body("INVALID_ARGUMENT", detail)
        products = self._products() if kind in ("", "SPOT") else []
        wanted = query.get("product_ids")
        if wanted:
            products = [p for p in products if p["product_id"] == wanted]
        body = {"products": products, "num_products": len(products), "pagination": None}
        return 200, {"Content-Type": "application/json"}, _encode(body)

    def _products(self) -> list[dict[str, Any]]:
        aliased_by: dict[str, list[str]] = {}
        for alias, target in self.aliases.items():
            aliased_by.setdefault(target, []).append(alias)
        out = [
            self._product(m, m.native, m.listing.quote, "", aliased_by.get(m.native, []))
            for m in self.markets.values()
        ]
        out.extend(
            self._product(self.markets[target], alias, "USDC", target, [])
            for alias, target in self.aliases.items()
        )
        return out

    def _product(
        self, m: FakeMarket, product_id: str, quote: str, alias: str, alias_to: list[str]
    ) -> dict[str, Any]:
        tape = self.tapes[m.native]
        item = m.listing
        change = (tape.last - tape.open) * 100 / tape.open if tape.open else 0.0
        volume = num(m.size(tape.volume))
        return {
            "product_id": product_id,
            "price": num(m.price(tape.last)),
            "price_percentage_change_24h": repr(change),
            "volume_24h": volume,
            "volume_percentage_change_24h": "0",
            "base_increment": item.lot,
            "quote_increment": item.tick,
            "quote_min_size": "1",
            "quote_max_size": "150000000",
            "base_min_size": item.lot,
            "base_max_size": "3400",
            "base_name": _NAMES.get(item.base, item.base),
            "quote_name": _NAMES.get(quote, quote),
            "watched": False,
            "is_disabled": False,
            "new": False,
            "status": "online",
            "cancel_only": False,
            "limit_only": False,
            "post_only": False,
            "trading_disabled": False,
            "auction_mode": False,
            "product_type": "SPOT",
            "quote_currency_id": quote,
            "base_currency_id": item.base,
            "fcm_trading_session_details": None,
            "mid_market_price": "",
            "alias": alias,
            "alias_to": alias_to,
            "base_display_symbol": item.base,
            "quote_display_symbol": m.listing.quote,
            "view_only": False,
            "price_increment": item.tick,
            "display_name": product_id,
            "product_venue": "CBE",
            "approximate_quote_24h_volume": num(
                format(Decimal(volume) * Decimal(m.price(tape.last)), "f")
            ),
        }


def _level(side: str, price: str, size: str, event_time: str) -> dict[str, str]:
    return {
        "side": side,
        "event_time": event_time,
        "price_level": num(price),
        "new_quantity": num(size),
    }
