"""One Kraken WebSocket v2 connection: frames in, normalized events and frames-to-send out.

Frames it sends (text, JSON; one subscribe per channel carrying every symbol of the plan)::

    {"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD"],"event_trigger":"bbo"},"req_id":1}
    {"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"]},"req_id":2}
    {"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":25},"req_id":3}
    {"method":"subscribe","params":{"channel":"ohlc","symbol":["BTC/USD"],"interval":1},"req_id":4}
    {"method":"unsubscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":25},"req_id":5}
    {"method":"ping","req_id":6}

Frames it understands (verbatim from Kraken's v2 documentation)::

    {"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"ALGO/USD"},
     "success":true,"time_in":"2023-10-06T17:35:55.219022Z","time_out":"2023-10-06T17:35:55.219067Z"}
    {"error":"Currency pair not supported XBT/USD","method":"subscribe","success":false,
     "symbol":"XBT/USD","time_in":"...","time_out":"..."}
    {"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z",...}
    {"channel":"heartbeat"}
    {"channel":"status","data":[{"api_version":"v2","connection_id":13834774380200032777,
     "system":"online","version":"2.0.0"}],"type":"update"}
    {"channel":"ticker","type":"snapshot","data":[{"symbol":"ALGO/USD","bid":0.10025,"bid_qty":740.0,
     "ask":0.10036,"ask_qty":1361.44813783,...,"timestamp":"2023-09-25T09:04:31.742648Z"}]}
    {"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell","price":0.5117,
     "qty":40.0,"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}]}
    {"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD",
     "bids":[{"price":0.5666,"qty":4831.75496356}],"asks":[{"price":0.5668,"qty":4410.79769741}],
     "checksum":2439117997,"timestamp":"2023-10-06T17:35:55.440295Z"}]}
    {"channel":"ohlc","type":"update","timestamp":"2023-10-04T16:26:30.524394914Z","data":[{
     "symbol":"MATIC/USD","open":0.5624,"high":0.5628,"low":0.5622,"close":0.5627,"trades":12,
     "volume":30927.68066226,"vwap":0.5626,"interval_begin":"2023-10-04T16:25:00.000000000Z",
     "interval":5,"timestamp":"2023-10-04T16:30:00.000000Z"}]}

Errors are notices (``stats.errors_reported``); a subscribe rejected with ``Currency pair not
supported <symbol>`` also refuses that symbol's subscriptions for good (``refuse``), so the stale
watchdog does not recycle the connection over it.

Numbers become text padded to the instrument's precision (``740.0`` -> ``740.00000000`` for an
8-decimal size), the same text for events and for the checksum.

Book integrity: every snapshot and update is applied, the book truncated to the subscribed depth
(Kraken sends no deletes for levels that fall out of scope), and the CRC32 of its top 10 levels
compared with the message's ``checksum``. A mismatch or a crossed/locked book makes the book
invalid: ``FeedStatus`` ``invalid`` then ``resyncing`` once, nothing published, and the session
queues ``unsubscribe`` + ``subscribe`` of that book (Kraken answers with a fresh snapshot). The
next good snapshot makes it ``valid`` again.

Candles: a bar is ``closed`` once its interval has ended by the message's own time. A snapshot
(recent history) yields only each symbol's newest bar, not a flood of old ones.

Replay: a session whose plan has no subscriptions accepts every instrument the adapter loaded
(or, when none were, any ``BASE/QUOTE`` symbol, numbers then kept exactly as written), on every
channel; a subscribe ack's ``depth`` sets the book's truncation depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

from arbd.errors import ProtocolError
from arbd.exchange.adapter import ConnectionPlan, ExchangeSession
from arbd.exchange.book import OrderBook, book_status
from arbd.exchange.symbols import normalize
from arbd.model import Book, Candle, Event, FeedStatus, Level, Quote, Subscription, Trade
from arbd_kraken import wire
from arbd_kraken.checksum import CHECKSUM_LEVELS, Checksummer, decimal_text

if TYPE_CHECKING:
    import msgspec

    from arbd_kraken.adapter import KrakenAdapter

KRAKEN_CHANNEL: Final = {"price": "ticker", "trades": "trade", "book": "book", "candles": "ohlc"}
"""arbd channel -> v2 channel."""
_FROM_KRAKEN: Final = {kraken: ours for ours, kraken in KRAKEN_CHANNEL.items()}
UNSUPPORTED_PAIR: Final = "Currency pair not supported"
"""How Kraken words a per-symbol subscribe refusal: ``Currency pair not supported XBT/USD``."""
CANDLE_MINUTES: Final = 1
INTERVAL_NAMES: Final = {
    1: "1m",
    5: "5m",
    15: "15m",
    30: "30m",
    60: "1h",
    240: "4h",
    1440: "1d",
    10080: "1w",
    21600: "15d",
}
"""v2 ``ohlc`` intervals (minutes) -> candle interval names."""
_MAX_PENDING_REQUESTS: Final = 1000

_BookPhase = Literal["pending", "valid", "resyncing"]


class _BookState:
    """One symbol's book and where it stands (as in the simplex adapter).

    ``pending``: no snapshot yet; ``valid``: checksummed and uncrossed, published on every change;
    ``resyncing``: broken or being resubscribed, updates dropped until the next snapshot.
    ``announced``: ``invalid`` went out, so recovery announces ``valid``.
    """

    __slots__ = ("announced", "book", "depth", "native", "phase", "symbol")

    def __init__(self, native: str, symbol: str, depth: int) -> None:
        self.native = native
        self.symbol = symbol
        self.depth = depth
        self.book = OrderBook()
        self.phase: _BookPhase = "pending"
        self.announced = False


class KrakenSession(ExchangeSession):
    """One Kraken v2 connection. Call order as in ``arbd.exchange.adapter``."""

    adapter: KrakenAdapter

    def __init__(self, adapter: KrakenAdapter, plan: ConnectionPlan) -> None:
        super().__init__(adapter, plan)
        self._exchange = adapter.spec.id
        self._book_depth = adapter.book_subscribe_depth
        self._publish_depth = min(adapter.settings.book_depth, self._book_depth)
        self._next_id = 1
        self._requests: dict[int, tuple[str, str, list[str]]] = {}
        """req_id -> (method, v2 channel, symbols) until forgotten, so an error can name it.
        Kept after answers: Kraken acks or refuses each symbol of a request on its own."""
        self._books: dict[str, _BookState] = {}
        self._checksum = Checksummer()
        self._places: dict[str, tuple[int | None, int | None]] = {
            native: (i.price_precision, i.size_precision) for native, i in adapter.by_native.items()
        }
        self._warned: set[str] = set()
        self.acknowledged: set[tuple[str, str]] = set()
        """(v2 channel, symbol) pairs Kraken confirmed as subscribed."""
        self.system_status: str | None = None
        self.last_pong_req_id: int | None = None
        self.heartbeats = 0
        self._symbols: dict[str, str] = {}
        """native -> normalized, for symbols this session takes."""
        self._wanted: set[tuple[str, str]] | None
        self._any_symbol = False
        if plan.subscriptions:
            self._wanted = set()
            for sub in plan.subscriptions:
                native = adapter.native(sub.symbol)
                self._symbols[native] = sub.symbol
                self._wanted.add((KRAKEN_CHANNEL.get(sub.channel, sub.channel), native))
        else:
            self._wanted = None
            self._symbols = {i.native: i.symbol for i in adapter.instruments.values()}
            self._any_symbol = not self._symbols

    # -- driver-facing ----------------------------------------------------------------------

    def start(self, now_ns: int) -> None:
        """Queue one subscribe per channel, each carrying every symbol of the plan."""
        self._subscribe_all("subscribe", self.plan.subscriptions)

    def resubscribe(self, subscriptions: Sequence[Subscription], now_ns: int) -> None:
        """Unsubscribe and subscribe again; books among them wait for their fresh snapshot."""
        for sub in subscriptions:
            if sub.channel == "book":
                state = self._books.get(self.adapter.native(sub.symbol))
                if state is not None:
                    if state.phase == "valid":  # not served until the new snapshot
                        state.announced = True
                        self.announce_resubscribing(state.symbol, now_ns)
                    state.phase = "resyncing"
                    state.book.clear()
        self._subscribe_all("unsubscribe", subscriptions)
        self._subscribe_all("subscribe", subscriptions)

    def keepalive(self, now_ns: int) -> None:
        """Queue the app-level ``{"method":"ping","req_id":N}`` (Kraken answers ``pong``)."""
        self.send(wire.encode(wire.Ping(method="ping", req_id=self._take_id())).decode())

    def receive(self, data: bytes, is_text: bool, received_ns: int, out: list[Event]) -> None:
        """Handle one message. Raises (``msgspec`` errors, ``ProtocolError``) on garbage."""
        frame = wire.decode_frame(data)
        channel = frame.channel
        if channel is None:
            self._on_response(frame)
        elif channel == "book":
            self._on_book(frame, received_ns, out)
        elif channel == "ticker":
            self._on_ticker(frame, received_ns, out)
        elif channel == "trade":
            self._on_trades(frame, received_ns, out)
        elif channel == "ohlc":
            self._on_ohlc(frame, received_ns, out)
        elif channel == "heartbeat":
            self.heartbeats += 1
        elif channel == "status":
            self._on_status(frame)
        else:
            self.stats.ignored += 1

    # -- requests and responses -------------------------------------------------------------

    def _take_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def _subscribe_all(self, method: str, subscriptions: Sequence[Subscription]) -> None:
        by_channel: dict[str, list[str]] = {}
        for sub in subscriptions:
            channel = KRAKEN_CHANNEL.get(sub.channel)
            if channel is not None:
                by_channel.setdefault(channel, []).append(self.adapter.native(sub.symbol))
        for channel in KRAKEN_CHANNEL.values():
            if channel in by_channel:
                self._request(method, channel, by_channel[channel])

    def _request(self, method: str, channel: str, natives: list[str]) -> None:
        params = wire.Params(channel=channel, symbol=natives)
        if channel == "book":
            params.depth = self._book_depth
        elif channel == "ohlc":
            params.interval = CANDLE_MINUTES
        elif channel == "ticker":
            params.event_trigger = "bbo"  # a quote on every best bid/offer change
        request_id = self._take_id()
        if len(self._requests) >= _MAX_PENDING_REQUESTS:  # acks arrive per symbol: keep a window
            del self._requests[next(iter(self._requests))]
        self._requests[request_id] = (method, channel, natives)
        frame = wire.Request(method=method, params=params, req_id=request_id)
        self.send(wire.encode(frame).decode())

    def _on_response(self, frame: wire.Frame) -> None:
        for warning in frame.warnings or ():
            if warning not in self._warned:  # once per session: acks repeat them per symbol
                self._warned.add(warning)
                self.notices.append(f"warning: {warning}")
        method = frame.method
        if frame.success is False or frame.error is not None:
            self._on_error(frame)
        elif method in {"subscribe", "unsubscribe"}:
            self._on_ack(method, frame)
        elif method == "pong":
            self.last_pong_req_id = frame.req_id
        else:
            self.stats.ignored += 1

    def _on_ack(self, method: str, frame: wire.Frame) -> None:
        result = wire.decode_ack(frame.result) if frame.result else wire.AckResult()
        channel, native = result.channel, result.symbol
        if channel is None or native is None:
            return
        if method == "unsubscribe":
            self.acknowledged.discard((channel, native))
            return
        self.acknowledged.add((channel, native))
        if channel == "book" and result.depth:
            symbol = self._symbol("book", native)
            if symbol is not None:
                self._book_state(native, symbol).depth = result.depth

    def _on_error(self, frame: wire.Frame) -> None:
        self.stats.errors_reported += 1
        what = " ".join(part for part in (frame.method, frame.symbol) if part) or "request"
        error = frame.error or ""
        line = f"{what} failed: {error or 'no reason given'}"
        request = self._requests.get(frame.req_id) if frame.req_id is not None else None
        if request is not None:
            method, channel, natives = request
            line += f" (request {frame.req_id}: {method} {channel} {','.join(natives)})"
        if error.startswith(UNSUPPORTED_PAIR):
            self._refuse_pair(frame, error, request)
        self.notices.append(line)

    def _refuse_pair(
        self, frame: wire.Frame, error: str, request: tuple[str, str, list[str]] | None
    ) -> None:
        """``Currency pair not supported X``: refuse X's subscriptions the error is about.

        The rejection names the symbol (top-level ``symbol``, and at the end of the text); the
        request its ``req_id`` points to names the channel. Without a known request (no
        ``req_id``, as in the captures, or one forgotten) every channel of the symbol is
        refused: the pair is unsupported whatever the channel. Other per-symbol errors
        (``Already subscribed``, ``Subscription Not Found``) refuse nothing.
        """
        method = request[0] if request is not None else frame.method
        if method != "subscribe":
            return
        native = frame.symbol or error.removeprefix(UNSUPPORTED_PAIR).strip()
        symbol = self._symbols.get(native)
        if symbol is None:
            return
        if request is not None:
            channels = [request[1]] if native in request[2] else []
        else:
            channels = list(KRAKEN_CHANNEL.values())
        wanted = self._wanted
        for channel in channels:
            if wanted is None or (channel, native) in wanted:
                self.refuse(Subscription(_FROM_KRAKEN[channel], symbol), error)

    def _on_status(self, frame: wire.Frame) -> None:
        for item in wire.decode_status(_data(frame)):
            system = item.system
            if system is None or system == self.system_status:
                continue
            first = self.system_status is None
            self.system_status = system
            if system != "online" or not first:
                self.notices.append(f"system status {system}")

    # -- market data ------------------------------------------------------------------------

    def _symbol(self, channel: str, native: str) -> str | None:
        """The normalized symbol if this session takes (v2 channel, native), else None."""
        wanted = self._wanted
        if wanted is not None:
            return self._symbols[native] if (channel, native) in wanted else None
        symbol = self._symbols.get(native)
        if symbol is None and self._any_symbol:
            base, sep, quote = native.partition("/")
            if sep and base and quote and "/" not in quote:
                symbol = self._symbols[native] = normalize(base, quote)
        return symbol

    def _precision(self, native: str) -> tuple[int | None, int | None]:
        return self._places.get(native, (None, None))

    def _on_ticker(self, frame: wire.Frame, received_ns: int, out: list[Event]) -> None:
        for item in wire.decode_ticker(_data(frame)):
            symbol = self._symbol("ticker", item.symbol)
            bid, bid_qty, ask, ask_qty = item.bid, item.bid_qty, item.ask, item.ask_qty
            if symbol is None or bid is None or bid_qty is None or ask is None or ask_qty is None:
                self.stats.ignored += 1  # not ours, or a one-sided market: no quote to give
                continue
            price_places, qty_places = self._precision(item.symbol)
            ts = wire.epoch_ms(item.timestamp) if item.timestamp is not None else None
            out.append(
                Quote(
                    exchange=self._exchange,
                    symbol=symbol,
                    bid=decimal_text(bid, price_places),
                    ask=decimal_text(ask, price_places),
                    bid_size=decimal_text(bid_qty, qty_places),
                    ask_size=decimal_text(ask_qty, qty_places),
                    timestamp=ts if ts is not None else received_ns // 1_000_000,
                    exchange_time=ts,
                    received_ns=received_ns,
                )
            )

    def _on_trades(self, frame: wire.Frame, received_ns: int, out: list[Event]) -> None:
        for item in wire.decode_trades(_data(frame)):
            symbol = self._symbol("trade", item.symbol)
            if symbol is None:
                self.stats.ignored += 1
                continue
            price_places, qty_places = self._precision(item.symbol)
            ts = wire.epoch_ms(item.timestamp) if item.timestamp is not None else None
            side = item.side
            trade_id = item.trade_id
            out.append(
                Trade(
                    exchange=self._exchange,
                    symbol=symbol,
                    price=decimal_text(item.price, price_places),
                    size=decimal_text(item.qty, qty_places),
                    side="buy" if side == "buy" else "sell" if side == "sell" else None,
                    id=None if trade_id is None else str(trade_id),
                    timestamp=ts if ts is not None else received_ns // 1_000_000,
                    exchange_time=ts,
                    received_ns=received_ns,
                    sequence=trade_id,
                )
            )

    def _on_ohlc(self, frame: wire.Frame, received_ns: int, out: list[Event]) -> None:
        items = wire.decode_ohlc(_data(frame))
        if frame.type == "snapshot":  # recent history: only each symbol's newest bar
            newest: dict[str, wire.OhlcData] = {}
            for item in items:
                held = newest.get(item.symbol)
                if held is None or item.interval_begin > held.interval_begin:
                    newest[item.symbol] = item
            items = list(newest.values())
        ts = wire.epoch_ms(wire.decode_time(frame.timestamp)) if frame.timestamp else None
        now = ts if ts is not None else received_ns // 1_000_000
        for item in items:
            symbol = self._symbol("ohlc", item.symbol)
            if symbol is None:
                self.stats.ignored += 1
                continue
            price_places, qty_places = self._precision(item.symbol)
            start = wire.epoch_ms(item.interval_begin)
            out.append(
                Candle(
                    exchange=self._exchange,
                    symbol=symbol,
                    interval=INTERVAL_NAMES.get(item.interval, f"{item.interval}m"),
                    start=start,
                    open=decimal_text(item.open, price_places),
                    high=decimal_text(item.high, price_places),
                    low=decimal_text(item.low, price_places),
                    close=decimal_text(item.close, price_places),
                    volume=decimal_text(item.volume, qty_places),
                    closed=start + item.interval * 60_000 <= now,
                    timestamp=now,
                    exchange_time=ts,
                    received_ns=received_ns,
                )
            )

    # -- book -------------------------------------------------------------------------------

    def _book_state(self, native: str, symbol: str) -> _BookState:
        state = self._books.get(native)
        if state is None:
            state = self._books[native] = _BookState(native, symbol, self._book_depth)
        return state

    def _on_book(self, frame: wire.Frame, received_ns: int, out: list[Event]) -> None:
        kind = frame.type
        if kind not in {"snapshot", "update"}:
            self.stats.ignored += 1
            return
        for entry in wire.decode_book(_data(frame)):
            symbol = self._symbol("book", entry.symbol)
            if symbol is None:
                self.stats.ignored += 1
                continue
            state = self._book_state(entry.symbol, symbol)
            self._apply_book(state, kind == "snapshot", entry, received_ns, out)

    def _apply_book(
        self,
        state: _BookState,
        snapshot: bool,
        entry: wire.BookData,
        received_ns: int,
        out: list[Event],
    ) -> None:
        if not snapshot and state.phase != "valid":
            return  # a snapshot is on its way; updates before it cannot apply
        price_places, qty_places = self._precision(state.native)
        bids: list[Level] = [
            (decimal_text(level.price, price_places), decimal_text(level.qty, qty_places))
            for level in entry.bids
        ]
        asks: list[Level] = [
            (decimal_text(level.price, price_places), decimal_text(level.qty, qty_places))
            for level in entry.asks
        ]
        book = state.book
        if snapshot:
            book.replace(bids, asks)
        else:
            book.apply(bids, asks)
        # Kraken sends no deletes for levels pushed beyond the subscribed depth: drop them
        # before checksumming, or they come back into the top 10 after a delete.
        book.truncate(state.depth)
        depth = self._publish_depth
        top = max(depth, CHECKSUM_LEVELS)
        top_bids, top_asks = book.top_bids(top), book.top_asks(top)
        computed = self._checksum(top_asks, top_bids)
        if computed != entry.checksum:
            self.stats.checksum_failures += 1
            reason = f"checksum mismatch: computed {computed}, Kraken sent {entry.checksum}"
            self._invalidate(state, reason, received_ns, out)
            return
        if book.is_crossed():
            self.stats.crossed_books += 1
            reason = "crossed book in snapshot" if snapshot else "crossed book"
            self._invalidate(state, reason, received_ns, out)
            return
        if snapshot:
            state.phase = "valid"
            if state.announced:
                state.announced = False
                out.append(self._status(state, "valid", "snapshot received", received_ns))
        ts = wire.epoch_ms(entry.timestamp) if entry.timestamp is not None else None
        out.append(
            Book(
                exchange=self._exchange,
                symbol=state.symbol,
                bids=top_bids if depth == top else top_bids[:depth],
                asks=top_asks if depth == top else top_asks[:depth],
                depth=depth,
                timestamp=ts if ts is not None else received_ns // 1_000_000,
                exchange_time=ts,
                received_ns=received_ns,
            )
        )

    def _invalidate(
        self, state: _BookState, reason: str, received_ns: int, out: list[Event]
    ) -> None:
        """Announce the book invalid (once), drop it, and resubscribe for a fresh snapshot."""
        state.book.clear()
        state.phase = "resyncing"
        state.announced = True
        out.append(self._status(state, "invalid", reason, received_ns))
        out.append(self._status(state, "resyncing", reason, received_ns))
        self.stats.book_resyncs += 1
        self._request("unsubscribe", "book", [state.native])
        self._request("subscribe", "book", [state.native])

    def _status(self, book: _BookState, state: str, reason: str, received_ns: int) -> FeedStatus:
        return book_status(self._exchange, book.symbol, state, reason, received_ns)


def _data(frame: wire.Frame) -> msgspec.Raw:
    if not frame.data:
        raise ProtocolError(f"kraken: {frame.channel} message without data")
    return frame.data
