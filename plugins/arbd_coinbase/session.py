"""One Coinbase Advanced Trade WebSocket connection, Sans-I/O.

Frames it sends (text JSON, one channel per message; reference §2.1)::

    {"type":"subscribe","channel":"heartbeats"}
    {"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"level2"}
    {"type":"unsubscribe","product_ids":["BTC-USD"],"channel":"level2"}

Channel map: ``price`` <- ``ticker`` (``best_bid``/``best_bid_quantity``/``best_ask``/
``best_ask_quantity``), ``trades`` <- ``market_trades``, ``book`` <- ``level2`` (delivered as
channel ``l2_data``, ask side ``offer``), ``candles`` <- ``candles`` (five-minute buckets).
``heartbeats`` is always subscribed when the plan has subscriptions: "Most channels close within
60-90 seconds if no updates are sent. Subscribe to heartbeats to keep all subscriptions open."

Integrity: ``sequence_num`` is ONE counter per connection across every channel, including
``heartbeats`` and the ``subscriptions`` ack (reference §2.1 and §8.3). A jump forward means a
message was lost, and nothing says which: every book on the connection becomes invalid (one
``FeedStatus`` ``invalid`` + ``resyncing`` per book), is dropped, and level2 is unsubscribed and
subscribed again for all of them; the snapshot that answers makes each valid again. A number at
or below the last one is a straggler or duplicate: the frame is ignored (the overview says such a
message "can be ignored"); a long run of them means the counter was reset, and the session asks
for a reconnect. A frame that cannot be decoded does not advance the counter, so the next frame
shows the gap. A decoded ``l2_data`` frame that cannot be applied resyncs every book too. A
crossed or locked book is invalid and resynced the same way, alone. There is no checksum.

Published ``sequence`` fields: the connection counter is not comparable across connections
(hand-over de-duplicates by it), so quotes and books carry ``None``. Trades carry the numeric
``trade_id`` (per-product, increasing), and a batch is published in ``trade_id`` order. A
subscribe is answered with a snapshot of recent trades; ids at or below the highest one already
published (by any session of the adapter) are skipped, so a reconnect does not repeat trades.

Replay: a plan without subscriptions accepts every listed product (or, with no instruments
loaded, any ``BASE-QUOTE`` product id mapped mechanically) on every channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from arbd.errors import ProtocolError
from arbd.exchange.adapter import FRAME_ERRORS, ConnectionPlan, ExchangeSession
from arbd.exchange.book import OrderBook, book_status
from arbd.exchange.symbols import normalize
from arbd.model import Book, Candle, Event, FeedStatus, Level, Quote, Subscription, Trade
from arbd_coinbase.wire import (
    L2Update,
    MarketTrade,
    decode_candles,
    decode_envelope,
    decode_heartbeats,
    decode_l2,
    decode_subscriptions,
    decode_tickers,
    decode_trades,
    rfc3339_ms,
    subscribe_frame,
)

if TYPE_CHECKING:
    from arbd_coinbase.adapter import CoinbaseAdapter

CHANNEL_NAMES: Final = {
    "price": "ticker",
    "trades": "market_trades",
    "book": "level2",
    "candles": "candles",
}
"""arbd channel -> the Coinbase channel subscribed for it."""

CANDLE_INTERVAL: Final = "5m"
"""The candles channel has five-minute buckets only ("updated every second")."""
_CANDLE_MS: Final = 300_000
_INVALID_PRODUCT: Final = re.compile(r"([A-Z0-9]+-[A-Z0-9]+) is not a valid product")

_TAKER_SIDE: Final[dict[str, Literal["buy", "sell"]]] = {"BUY": "sell", "SELL": "buy"}
"""market_trades ``side`` "refers to the makers side" (docs; reference §8.7 flags it as not
independently verified). ``Trade.side`` is the taker's side, hence the swap."""

_MAX_BACKWARDS: Final = 50
"""Consecutive frames numbered at or below the last one before the counter counts as reset."""

_BookPhase = Literal["pending", "valid", "resyncing"]


class _BookState:
    """One level2 stream and where it stands.

    ``pending``: no snapshot yet (updates are ignored: the subscribe's snapshot is on its way).
    ``valid``: consistent and uncrossed; published after every l2_data message touching it.
    ``resyncing``: broken or resubscribed; updates ignored until the next snapshot.
    ``announced``: an ``invalid`` went out, so recovery announces ``valid``.
    ``symbols``: every configured symbol served by this stream (``BTC/USD`` and ``BTC/USDC``).
    """

    __slots__ = ("announced", "book", "phase", "product_id", "stream", "symbols")

    def __init__(self, product_id: str, stream: str, symbols: list[str]) -> None:
        self.product_id = product_id
        self.stream = stream
        self.symbols = symbols
        self.book = OrderBook()
        self.phase: _BookPhase = "pending"
        self.announced = False


class CoinbaseSession(ExchangeSession):
    """One Advanced Trade market-data connection. Call order as in ``arbd.exchange.adapter``."""

    adapter: CoinbaseAdapter

    def __init__(self, adapter: CoinbaseAdapter, plan: ConnectionPlan) -> None:
        super().__init__(adapter, plan)
        self._exchange = adapter.spec.id
        self._depth = adapter.settings.book_depth
        self._last_seq: int | None = None
        self._backwards = 0
        self._books: dict[str, _BookState] = {}
        self.subscribed: dict[str, list[str]] = {}
        """The latest ``subscriptions`` ack: Coinbase channel -> product ids."""
        self.heartbeat_counter: int | None = None
        self.repeated_trades = 0
        """market_trades entries skipped as already published (see ``adapter.trade_marks``)."""
        # (arbd channel, product id as delivered) -> symbols; in replay, a cache.
        self._routes: dict[tuple[str, str], list[str]] = {}
        # Coinbase channel -> stream ids to subscribe, in plan order, without duplicates.
        self._streams: dict[str, dict[str, None]] = {}
        self._replay = not plan.subscriptions
        self._replay_symbols = {i.native: i.symbol for i in adapter.instruments.values()}
        for sub in plan.subscriptions:
            channel = CHANNEL_NAMES.get(sub.channel)
            if channel is None:
                continue  # the daemon only plans the spec's channels
            stream = adapter.stream_id(sub.symbol)
            self._streams.setdefault(channel, {})[stream] = None
            for product_id in dict.fromkeys((stream, adapter.native(sub.symbol))):
                symbols = self._routes.setdefault((sub.channel, product_id), [])
                if sub.symbol not in symbols:
                    symbols.append(sub.symbol)
            if sub.channel == "book" and stream not in self._books:
                self._books[stream] = _BookState(stream, stream, self._routes[("book", stream)])
        self._handlers: dict[str, Callable[[msgspec.Raw, int | None, int, list[Event]], None]] = {
            "l2_data": self._on_l2,
            "ticker": self._on_ticker,
            "market_trades": self._on_trades,
            "candles": self._on_candles,
            "heartbeats": self._on_heartbeats,
            "subscriptions": self._on_subscriptions,
        }

    # -- driver-facing ----------------------------------------------------------------------

    def start(self, now_ns: int) -> None:
        """Queue ``heartbeats`` then one subscribe per Coinbase channel of the plan."""
        if not self._streams:
            return  # replay
        self.send(subscribe_frame("subscribe", "heartbeats", None))
        for channel, streams in self._streams.items():
            self.send(subscribe_frame("subscribe", channel, list(streams)))

    def resubscribe(self, subscriptions: Sequence[Subscription], now_ns: int) -> None:
        """Unsubscribe and subscribe again, per channel; books wait for their new snapshot."""
        by_channel: dict[str, dict[str, None]] = {}
        for sub in subscriptions:
            channel = CHANNEL_NAMES.get(sub.channel)
            if channel is None:
                continue
            stream = self.adapter.stream_id(sub.symbol)
            by_channel.setdefault(channel, {})[stream] = None
            if sub.channel == "book":
                state = self._books.get(stream)
                if state is not None:
                    if state.phase == "valid":  # not served until the new snapshot
                        state.announced = True
                        for symbol in state.symbols:
                            self.announce_resubscribing(symbol, now_ns)
                    state.phase = "resyncing"
                    state.book.clear()
        for channel, streams in by_channel.items():
            self._resend(channel, list(streams))

    def receive(self, data: bytes, is_text: bool, received_ns: int, out: list[Event]) -> None:
        """Handle one message. Raises (``msgspec.DecodeError``, ``ProtocolError``, ...) on
        garbage; see the module docstring for what a bad frame does to the books."""
        envelope = decode_envelope(data)
        if envelope.type == "error":
            self._on_error(envelope.message, envelope.reason)
            return
        channel = envelope.channel
        if channel is None:
            self.stats.ignored += 1
            return
        seq = envelope.sequence_num
        if seq is not None and not self._sequence_ok(seq, received_ns, out):
            return
        handler = self._handlers.get(channel)
        if handler is None:
            self.stats.ignored += 1
            return
        try:
            stamp = envelope.timestamp
            ts = rfc3339_ms(stamp) if stamp else None
            handler(envelope.events, ts, received_ns, out)
        except FRAME_ERRORS:
            if channel == "l2_data":  # an update was lost: no book can be trusted
                self._resync(
                    list(self._books.values()), "unreadable l2_data frame", received_ns, out
                )
            raise

    # -- control ----------------------------------------------------------------------------

    def _resend(self, channel: str, streams: list[str]) -> None:
        self.send(subscribe_frame("unsubscribe", channel, streams))
        self.send(subscribe_frame("subscribe", channel, streams))

    def _on_error(self, message: str | None, reason: str | None) -> None:
        self.stats.errors_reported += 1
        line = f"error: {message or ''}".rstrip()
        if reason:
            line += f" ({reason})"
        self.notices.append(line)
        # Coinbase error frames carry no request id; a refused product is named in the text
        # ("Failed to subscribe: FOO-USD is not a valid product"): refuse it on every channel.
        found = _INVALID_PRODUCT.search(f"{message or ''} {reason or ''}")
        if found is not None:
            product = found.group(1)
            for sub in self.plan.subscriptions:
                if product in (self.adapter.stream_id(sub.symbol), self.adapter.native(sub.symbol)):
                    self.refuse(sub, line)

    def _on_subscriptions(
        self, raw: msgspec.Raw, ts: int | None, received_ns: int, out: list[Event]
    ) -> None:
        for event in decode_subscriptions(raw):
            self.subscribed = event.subscriptions

    def _on_heartbeats(
        self, raw: msgspec.Raw, ts: int | None, received_ns: int, out: list[Event]
    ) -> None:
        for event in decode_heartbeats(raw):
            counter = event.heartbeat_counter
            if counter is not None:
                self.heartbeat_counter = int(counter)

    def _sequence_ok(self, seq: int, received_ns: int, out: list[Event]) -> bool:
        """Check ``seq`` against the connection counter; False means drop the frame."""
        last = self._last_seq
        if last is not None:
            if seq <= last:
                self.stats.ignored += 1
                self._backwards += 1
                if self._backwards >= _MAX_BACKWARDS and self.reconnect_reason is None:
                    self.reconnect_reason = f"sequence_num went backwards ({seq} after {last})"
                return False
            if seq != last + 1:
                self.stats.sequence_gaps += 1
                reason = f"sequence gap: sequence_num {seq} after {last}"
                self._resync(list(self._books.values()), reason, received_ns, out)
        self._backwards = 0
        self._last_seq = seq
        return True

    # -- routing ----------------------------------------------------------------------------

    def _route(self, channel: str, product_id: str) -> list[str] | None:
        """The symbols published for ``product_id`` data on ``channel``, or None."""
        symbols = self._routes.get((channel, product_id))
        if symbols is not None or not self._replay:
            return symbols
        symbol = self._replay_symbols.get(product_id)
        if symbol is None and not self._replay_symbols:
            base, sep, quote = product_id.partition("-")
            if sep and base and quote and "-" not in quote:
                symbol = normalize(base, quote)
        if symbol is None:
            return None
        symbols = self._routes[(channel, product_id)] = [symbol]
        return symbols

    # -- level2 -----------------------------------------------------------------------------

    def _on_l2(self, raw: msgspec.Raw, ts: int | None, received_ns: int, out: list[Event]) -> None:
        # Apply every event first, then check and publish each touched book once: the state
        # between two events of one message is not a state the exchange vouches for.
        touched: dict[str, bool] = {}  # product id -> a snapshot was applied
        for event in decode_l2(raw):
            product_id = event.product_id
            state = self._books.get(product_id)
            if state is None:
                symbols = self._route("book", product_id)
                if symbols is None:
                    self.stats.ignored += 1
                    continue
                stream = product_id if self._replay else self.adapter.stream_id(symbols[0])
                state = self._books[product_id] = _BookState(product_id, stream, symbols)
            kind = event.type
            if kind == "snapshot":
                bids, asks = _sides(event.updates)
                state.book.replace(bids, asks)
                state.phase = "valid"
                touched[product_id] = True
            elif kind == "update":
                if state.phase != "valid":
                    continue  # a snapshot is on its way; updates before it cannot apply
                bids, asks = _sides(event.updates)
                state.book.apply(bids, asks)
                touched.setdefault(product_id, False)
            else:
                self.stats.ignored += 1
        timestamp = ts if ts is not None else received_ns // 1_000_000
        depth = self._depth
        for product_id, snapshot in touched.items():
            state = self._books[product_id]
            book = state.book
            if book.is_crossed():
                self.stats.crossed_books += 1
                reason = "crossed book in snapshot" if snapshot else "crossed book"
                self._resync([state], reason, received_ns, out)
                continue
            if state.announced:
                state.announced = False
                out.extend(
                    self._status(symbol, "valid", "snapshot received", received_ns)
                    for symbol in state.symbols
                )
            bids, asks = book.top_bids(depth), book.top_asks(depth)
            out.extend(
                Book(
                    exchange=self._exchange,
                    symbol=symbol,
                    bids=bids,
                    asks=asks,
                    depth=depth,
                    timestamp=timestamp,
                    exchange_time=ts,
                    received_ns=received_ns,
                    sequence=None,
                )
                for symbol in state.symbols
            )

    def _resync(
        self, states: list[_BookState], reason: str, received_ns: int, out: list[Event]
    ) -> None:
        """Drop these books, announce each invalid (once), resubscribe their level2 streams."""
        if not states:
            return
        streams: dict[str, None] = {}
        for state in states:
            state.book.clear()
            state.phase = "resyncing"
            self.stats.book_resyncs += 1
            streams[state.stream] = None
            if not state.announced:
                state.announced = True
                for symbol in state.symbols:
                    out.append(self._status(symbol, "invalid", reason, received_ns))
                    out.append(self._status(symbol, "resyncing", reason, received_ns))
        self._resend("level2", list(streams))

    def _status(self, symbol: str, state: str, reason: str, received_ns: int) -> FeedStatus:
        return book_status(self._exchange, symbol, state, reason, received_ns)

    # -- ticker, trades, candles ------------------------------------------------------------

    def _on_ticker(
        self, raw: msgspec.Raw, ts: int | None, received_ns: int, out: list[Event]
    ) -> None:
        timestamp = ts if ts is not None else received_ns // 1_000_000
        for event in decode_tickers(raw):
            for ticker in event.tickers:
                symbols = self._route("price", ticker.product_id)
                bid, ask = ticker.best_bid, ticker.best_ask
                bid_size, ask_size = ticker.best_bid_quantity, ticker.best_ask_quantity
                if symbols is None or not (bid and ask and bid_size and ask_size):
                    self.stats.ignored += 1  # not ours, or a ticker without the BBO fields
                    continue
                out.extend(
                    Quote(
                        exchange=self._exchange,
                        symbol=symbol,
                        bid=bid,
                        ask=ask,
                        bid_size=bid_size,
                        ask_size=ask_size,
                        timestamp=timestamp,
                        exchange_time=ts,
                        received_ns=received_ns,
                        sequence=None,
                    )
                    for symbol in symbols
                )

    def _on_trades(
        self, raw: msgspec.Raw, ts: int | None, received_ns: int, out: list[Event]
    ) -> None:
        for event in decode_trades(raw):
            trades = event.trades
            ids = [_trade_number(t) for t in trades]
            pairs = list(zip(ids, trades, strict=True))
            if None not in ids:
                pairs.sort(key=_first)
            marks = self.adapter.trade_marks
            for number, trade in pairs:
                symbols = self._route("trades", trade.product_id)
                if symbols is None:
                    self.stats.ignored += 1
                    continue
                if number is not None:
                    # A (re)subscribe's snapshot repeats trades an earlier session published.
                    if number <= marks.get(trade.product_id, -1):
                        self.repeated_trades += 1
                        continue
                    marks[trade.product_id] = number
                when = rfc3339_ms(trade.time) if trade.time else ts
                side = _TAKER_SIDE.get(trade.side) if trade.side else None
                out.extend(
                    Trade(
                        exchange=self._exchange,
                        symbol=symbol,
                        price=trade.price,
                        size=trade.size,
                        side=side,
                        id=trade.trade_id,
                        timestamp=when if when is not None else received_ns // 1_000_000,
                        exchange_time=when,
                        received_ns=received_ns,
                        sequence=number,
                    )
                    for symbol in symbols
                )

    def _on_candles(
        self, raw: msgspec.Raw, ts: int | None, received_ns: int, out: list[Event]
    ) -> None:
        timestamp = ts if ts is not None else received_ns // 1_000_000
        for event in decode_candles(raw):
            for candle in event.candles:
                symbols = self._route("candles", candle.product_id)
                if symbols is None:
                    self.stats.ignored += 1
                    continue
                start = int(candle.start) * 1000
                # No close flag on the wire: a bucket is final once the exchange's own clock
                # (the envelope timestamp) is past its end.
                closed = ts is not None and start + _CANDLE_MS <= ts
                out.extend(
                    Candle(
                        exchange=self._exchange,
                        symbol=symbol,
                        interval=CANDLE_INTERVAL,
                        start=start,
                        open=candle.open,
                        high=candle.high,
                        low=candle.low,
                        close=candle.close,
                        volume=candle.volume,
                        closed=closed,
                        timestamp=timestamp,
                        exchange_time=ts,
                        received_ns=received_ns,
                    )
                    for symbol in symbols
                )


def _sides(updates: Sequence[L2Update]) -> tuple[list[Level], list[Level]]:
    """Split level2 updates into (bids, asks); ``offer`` is the ask side."""
    bids: list[Level] = []
    asks: list[Level] = []
    for update in updates:
        side = update.side
        level = (update.price_level, update.new_quantity)
        if side == "bid":
            bids.append(level)
        elif side in ("offer", "ask"):
            asks.append(level)
        else:
            raise ProtocolError(f"coinbase: unknown level2 side {side!r}")
    return bids, asks


def _trade_number(trade: MarketTrade) -> int | None:
    trade_id = trade.trade_id
    if trade_id and trade_id.isascii() and trade_id.isdigit():
        return int(trade_id)
    return None


def _first(pair: tuple[int | None, MarketTrade]) -> int:
    return pair[0] or 0
