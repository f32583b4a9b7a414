"""The Binance spot adapter: combined streams, SUBSCRIBE frames, REST-snapshot books. Pure.

Streams, one per ``Subscription`` (so ``max_streams_per_connection`` = Binance's 1024 streams per
connection counts them exactly)::

    price    <symbol>@bookTicker      Quote   sequence = u, timestamp = receive time (no E)
    trades   <symbol>@trade           Trade   sequence = id = t, time = T, side from m
    book     <symbol>@depth@100ms     Book    see ``arbd_binance.book`` (REST snapshot procedure)
    candles  <symbol>@kline_1m        Candle  closed = x

Subscribing: every connection opens ``<ws_url>/stream`` (combined-stream mode, so each event
arrives wrapped as ``{"stream":"btcusdt@trade","data":{...}}`` and names its stream) and sends
``{"method":"SUBSCRIBE","params":[...],"id":N}`` frames, up to ``MAX_PARAMS_PER_FRAME`` stream
names each. Why frames rather than ``/stream?streams=a/b/c`` in the URL: a connection carries up to
1024 streams, about 25 KB of names, while Binance's servers reject request URLs beyond about 8 KB
(3rd-party measurement: 8004 characters); and recovering a stale stream needs SUBSCRIBE frames
anyway, so one mechanism serves both. Binance allows 5 incoming messages per second per
connection (pings, pongs and JSON frames alike) and disconnects beyond that: the spec's
``max_outgoing_per_second = 4`` (one below, leaving room for our pongs) makes the driver pace
our frames, and packing many stream names per frame keeps a full connection's subscription to
a few frames. We never ping (Binance pings us every 20 s and the WebSocket layer answers; client
pings would count against the limit).

Frames understood besides data: acks ``{"result":null,"id":1}``; errors in the observed form
``{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":2}`` and the documented flat
form ``{"code":2,"msg":"..."}`` (a notice naming the request, ``stats.errors_reported``; an
``invalid stream`` answer to a SUBSCRIBE is narrowed down to the streams it is about, which are
refused: ``BinanceSession._isolate_invalid``); and
``{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}`` (or the raw
``{"e":"serverShutdown",...}``), which sets ``reconnect_reason``. Raw-stream payloads (no
``stream`` wrapper, as a capture of a ``/ws/<stream>`` connection holds) are understood too.
Anything else that parses is counted in ``stats.ignored``.

Symbols: ``BTCUSDT`` natively, ``btcusdt`` in stream names, mapped to ``BTC/USDT`` only through
``GET /api/v3/exchangeInfo`` ``baseAsset``/``quoteAsset`` (never by splitting the string:
``BTCUSDC``, ``1000SATSUSDT``). Only ``TRADING`` symbols are listed.

Replay: a session whose plan has no subscriptions accepts every stream of every listed instrument
(streams of unlisted symbols are ignored: Binance names cannot be split safely).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import msgspec

from arbd.errors import ProtocolError
from arbd.exchange.adapter import (
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSession,
    ExchangeSpec,
    HttpRequest,
    HttpResponse,
    Keepalive,
    leading_key,
)
from arbd.exchange.symbols import check_symbols
from arbd.model import CHANNELS, Candle, Event, Quote, Subscription, Trade
from arbd_binance.book import DepthBooks
from arbd_binance.instruments import parse_instruments
from arbd_binance.limits import EXCHANGE_INFO_WEIGHT, REST_WEIGHT_PER_MINUTE
from arbd_binance.wire import (
    STREAM_PREFIX,
    BookTicker,
    DepthUpdate,
    Envelope,
    Kind,
    KlineEvent,
    Request,
    TradeEvent,
    decode_book_ticker,
    decode_depth,
    decode_envelope,
    decode_kline,
    decode_stream_frame,
    decode_trade,
    encode,
    parse_stream,
    stream_name,
)

EXCHANGE: Final = "binance"
MAX_PARAMS_PER_FRAME: Final = 100
"""Stream names per SUBSCRIBE frame. Binance documents no number; a 3rd-party report saw one
SUBSCRIBE of ~440 names fail silently, so stay well below (1024 streams = 11 frames, ~2 s)."""
INVALID_STREAM: Final = "invalid stream"
"""In the message of the error (code 2) Binance answers a SUBSCRIBE with an invalid stream."""
_MAX_PENDING_REQUESTS: Final = 1000
_MAX_STREAM_CACHE: Final = 8192
_RAW_KINDS: Final[dict[str, Kind]] = {"trade": "trades", "depthUpdate": "book", "kline": "candles"}

_Target = tuple[Kind, str, str]
"""(channel, normalized symbol, native symbol) of a stream this session takes."""


def stream_url(ws_url: str) -> str:
    """The combined-stream endpoint under ``ws_url``: ``wss://host:9443`` -> ``.../stream``.

    A URL already ending in ``/stream`` is kept; a raw-stream ``/ws`` path is replaced.
    """
    parts = urlsplit(ws_url)
    path = parts.path.rstrip("/")
    if not path.endswith("/stream"):
        path = path.removesuffix("/ws") + "/stream"
    return urlunsplit(parts._replace(path=path))


# -- adapter ----------------------------------------------------------------------------------


class BinanceAdapter(ExchangeAdapter):
    """Binance spot. Instruments from ``GET {rest_url}/api/v3/exchangeInfo``, e.g.::

    {"timezone":"UTC","serverTime":1700000000000,"rateLimits":[],"exchangeFilters":[],
     "symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC",
                 "baseAssetPrecision":8,"quoteAsset":"USDT","quotePrecision":8,
                 "filters":[{"filterType":"PRICE_FILTER","minPrice":"0.01000000",
                             "maxPrice":"1000000.00000000","tickSize":"0.01000000"},
                            {"filterType":"LOT_SIZE","minQty":"0.00001000",
                             "maxQty":"9000.00000000","stepSize":"0.00001000"}]}]}
    """

    spec = ExchangeSpec(
        id=EXCHANGE,
        name="Binance (spot)",
        ws_url="wss://stream.binance.com:9443",
        rest_url="https://api.binance.com",
        channels=CHANNELS,
        continuous_channels=("price", "book"),
        max_streams_per_connection=1024,
        max_outgoing_per_second=4.0,
        rest_weight_per_minute=REST_WEIGHT_PER_MINUTE,
        keepalive=Keepalive(
            protocol_ping_interval=None,  # Binance pings every 20 s; client pings count as messages
            app_ping_interval=None,
            idle_timeout=60.0,  # three missed server pings
        ),
        rotate_after=24 * 3600.0,  # "expect to be disconnected at the 24 hour mark"
        stale_action="resubscribe",
        taker_fee_pct=0.1,
        maker_fee_pct=0.1,
        default_symbols=("BTC/USDT", "ETH/USDT"),
        enabled_by_default=True,
    )

    def instrument_requests(self) -> list[HttpRequest]:
        url = f"{self.settings.rest_url.rstrip('/')}/api/v3/exchangeInfo"
        return [HttpRequest(url=url, purpose="instruments", weight=EXCHANGE_INFO_WEIGHT)]

    def load_instruments(self, responses: Sequence[HttpResponse]) -> None:
        """Fill ``instruments`` with every ``TRADING`` symbol of the exchangeInfo answer.

        Raises ``RestError`` for a missing or non-200 answer, ``ProtocolError`` for a body that
        does not parse, ``ConfigError`` for a configured symbol the exchange does not list.
        """
        instruments = parse_instruments(responses)
        check_symbols(EXCHANGE, self.settings.symbols, instruments)
        self.instruments = instruments

    def native(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTCUSDT`` (from the instruments; joining, never splitting)."""
        instrument = self.instruments.get(symbol)
        return instrument.native if instrument is not None else symbol.replace("/", "").upper()

    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionPlan]:
        """At most 1024 streams (= subscriptions) per connection, each on ``<ws_url>/stream``."""
        url = stream_url(self.settings.ws_url)
        return [
            msgspec.structs.replace(plan, url=url)
            for plan in super().plan_connections(subscriptions)
        ]

    def new_session(self, plan: ConnectionPlan) -> BinanceSession:
        return BinanceSession(self, plan)


# -- session ----------------------------------------------------------------------------------


class BinanceSession(ExchangeSession):
    """One Binance combined-stream connection. Call order as in ``arbd.exchange.adapter``.

    Frames it sends (text)::

        {"method":"SUBSCRIBE","params":["btcusdt@bookTicker","btcusdt@depth@100ms"],"id":1}
        {"method":"UNSUBSCRIBE","params":["btcusdt@depth@100ms"],"id":2}

    Data frames it understands (verbatim from Binance's documentation, wrapped)::

        {"stream":"bnbusdt@bookTicker","data":{"u":400900217,"s":"BNBUSDT","b":"25.35190000",
         "B":"31.21000000","a":"25.36520000","A":"40.66000000"}}
        {"stream":"bnbbtc@trade","data":{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,
         "p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}}
        {"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1672515782136,
         "s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}
        {"stream":"bnbbtc@kline_1m","data":{"e":"kline","E":1672515782136,"s":"BNBBTC",
         "k":{"t":1672515780000,"T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":200,
         "o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,
         "q":"1.0000","V":"500","Q":"0.500","B":"123456"}}}
    """

    adapter: BinanceAdapter

    def __init__(self, adapter: BinanceAdapter, plan: ConnectionPlan) -> None:
        super().__init__(adapter, plan)
        self._exchange = adapter.spec.id
        self._next_id = 1
        self._requests: dict[int, tuple[str, list[str]]] = {}
        """Request id -> (method, params) until answered, so an error frame can name them."""
        self.acknowledged: set[str] = set()
        """Stream names the server confirmed (SUBSCRIBE acked, UNSUBSCRIBE not yet)."""
        self.books = DepthBooks(
            exchange=self._exchange,
            rest_url=adapter.settings.rest_url,
            depth=adapter.settings.book_depth,
            stats=self.stats,
            notices=self.notices,
            request=self.request,
        )
        # lower-case native -> (normalized, native) for the symbols this session accepts, and the
        # (channel, lower-case native) pairs it wants (None in replay: every known stream).
        self._natives: dict[str, tuple[str, str]] = {}
        self._wanted: set[tuple[str, str]] | None
        self._streams: list[str] = []
        # stream name (as on the wire) -> what it carries, None for a stream not ours
        self._cache: dict[bytes, _Target | None] = {}
        self._last_received_ns = 0
        if plan.subscriptions:
            self._wanted = set()
            for sub in plan.subscriptions:
                native = adapter.native(sub.symbol)
                self._natives[native.lower()] = (sub.symbol, native)
                self._wanted.add((sub.channel, native.lower()))
                self._streams.append(stream_name(sub.channel, native))
        else:
            self._wanted = None
            for instrument in adapter.instruments.values():
                self._natives[instrument.native.lower()] = (instrument.symbol, instrument.native)

    # -- driver-facing ----------------------------------------------------------------------

    def start(self, now_ns: int) -> None:
        """Queue SUBSCRIBE frames for every stream of the plan (many names per frame)."""
        self._request_all("SUBSCRIBE", self._streams)

    def resubscribe(self, subscriptions: Sequence[Subscription], now_ns: int) -> None:
        """UNSUBSCRIBE then SUBSCRIBE the streams again; waiting books may fetch a snapshot."""
        names = []
        for sub in subscriptions:
            native = self.adapter.native(sub.symbol)
            names.append(stream_name(sub.channel, native))
            if sub.channel == "book":
                state = self.books.books.get(native)
                if state is not None:
                    self.books.rearm(state)
        self._request_all("UNSUBSCRIBE", names)
        self._request_all("SUBSCRIBE", names)

    def receive(self, data: bytes, is_text: bool, received_ns: int, out: list[Event]) -> None:
        """Handle one message. Raises (``msgspec`` errors, ``ProtocolError``) on garbage."""
        self._last_received_ns = received_ns
        stream_key = leading_key(data, STREAM_PREFIX)
        if stream_key is not None:
            # The common case, a combined-stream data frame: the stream name says what the
            # payload is, so the whole frame is decoded once, typed.
            target = self._cache.get(stream_key)
            if target is not None:
                try:
                    frame = decode_stream_frame[target[0]].decode(data)
                except msgspec.ValidationError:
                    frame = None  # not this shape after all: the general path explains why
                if frame is not None:
                    self._emit(target, frame.data, received_ns, out)
                    return
        envelope = decode_envelope(data)
        stream = envelope.stream
        if stream is not None:
            payload = envelope.data
            if not len(payload):
                raise ProtocolError(f"binance: stream {stream!r} frame without data")
            try:
                target = self._cache[stream.encode()]
            except KeyError:
                target = self._resolve_stream(stream)
            if target is None:
                self._other_stream(payload)
            else:
                self._on_data(target, payload, received_ns, out)
        elif envelope.error is not None or envelope.code is not None:
            self._on_error(envelope)
        elif len(envelope.result) and envelope.id is not None:
            self._on_ack(envelope)
        elif envelope.e == "serverShutdown":
            self._shutdown()
        else:
            self._on_raw(envelope, data, received_ns, out)

    def on_http(self, response: HttpResponse, out: list[Event]) -> None:
        self.books.on_response(response, out)

    def waiting(self, subscription: Subscription) -> bool:
        """A book whose diff events are buffered while its snapshot request is queued or in
        flight (under the REST weight budget, 200 snapshots take minutes): not stale."""
        if subscription.channel != "book":
            return False
        state = self.books.books.get(self.adapter.native(subscription.symbol))
        return state is not None and state.in_flight

    def on_http_failed(self, request: HttpRequest, reason: str, out: list[Event]) -> None:
        # A failure comes without a time: use the last frame's (snapshots are asked for on one).
        self.books.on_failed(request, reason, self._last_received_ns, out)

    # -- control frames ---------------------------------------------------------------------

    def _request_all(self, method: str, names: Iterable[str]) -> None:
        names = list(names)
        for start in range(0, len(names), MAX_PARAMS_PER_FRAME):
            self._request(method, names[start : start + MAX_PARAMS_PER_FRAME])

    def _request(self, method: str, params: list[str]) -> None:
        request_id = self._next_id
        self._next_id += 1
        if len(self._requests) >= _MAX_PENDING_REQUESTS:  # a server that never answers
            del self._requests[next(iter(self._requests))]
        self._requests[request_id] = (method, params)
        self.send(encode(Request(method=method, params=params, id=request_id)).decode())

    def _on_ack(self, envelope: Envelope) -> None:
        request = self._requests.pop(envelope.id, None) if isinstance(envelope.id, int) else None
        if request is None:
            return
        method, params = request
        if method == "SUBSCRIBE":
            self.acknowledged.update(params)
        elif method == "UNSUBSCRIBE":
            self.acknowledged.difference_update(params)

    def _on_error(self, envelope: Envelope) -> None:
        self.stats.errors_reported += 1
        error = envelope.error
        code = error.code if error is not None else envelope.code
        msg = (error.msg if error is not None else envelope.msg) or ""
        line = f"error {code}: {msg}".rstrip()
        rid = envelope.id
        request = self._requests.pop(rid, None) if isinstance(rid, int) else None
        if request is not None:
            method, params = request
            shown = ",".join(params[:5]) + (
                f",... ({len(params)} streams)" if len(params) > 5 else ""
            )
            line += f" (request {rid}: {method} {shown})"
            if method == "SUBSCRIBE" and code == 2 and INVALID_STREAM in msg:
                retries = self._isolate_invalid(params, msg)
                if retries:
                    line += f"; asking again in {retries} smaller requests to find it"
        elif rid is not None:
            line += f" (request {rid})"
        self.notices.append(line)

    def _isolate_invalid(self, params: list[str], reason: str) -> int:
        """Find the stream(s) an ``invalid stream`` error is about; returns the requests sent.

        Binance judges a SUBSCRIBE as a whole: one invalid stream fails it, nothing of it is
        subscribed, and the error does not say which stream it was. A request of one stream
        names it: refuse that subscription for good (the stale watchdog would otherwise wait for
        it and recycle the connection). A bigger one is asked again in parts, the healthy ones
        then being acked at once: split by symbol first (halves of the request's symbols, a
        symbol's streams kept together, as a refused symbol refuses all its streams), then a
        lone symbol's streams one by one. Each part is strictly smaller, so this ends.
        """
        if len(params) == 1:
            target = self._resolve_stream(params[0])
            if target is not None:
                self.refuse(Subscription(target[0], target[1]), reason)
            return 0
        natives = list(dict.fromkeys(name.partition("@")[0] for name in params))
        if len(natives) > 1:
            first = set(natives[: len(natives) // 2])
            parts = [
                [name for name in params if name.partition("@")[0] in first],
                [name for name in params if name.partition("@")[0] not in first],
            ]
        else:
            parts = [[name] for name in params]
        for part in parts:
            self._request("SUBSCRIBE", part)
        return len(parts)

    def _shutdown(self) -> None:
        self.reconnect_reason = "server shutdown"
        self.notices.append("server announced shutdown (serverShutdown): reconnecting")

    def _other_stream(self, payload: msgspec.Raw) -> None:
        """A stream this session does not take: ``!serverShutdown``, or ignored."""
        try:
            inner = decode_envelope(payload)
        except msgspec.DecodeError:
            inner = None
        if inner is not None and inner.e == "serverShutdown":
            self._shutdown()
        else:
            self.stats.ignored += 1

    # -- data frames ------------------------------------------------------------------------

    def _target(self, kind: Kind, native: str) -> _Target | None:
        entry = self._natives.get(native)
        if entry is None:
            return None
        wanted = self._wanted
        if wanted is not None and (kind, native) not in wanted:
            return None
        return kind, entry[0], entry[1]

    def _resolve_stream(self, stream: str) -> _Target | None:
        parsed = parse_stream(stream)
        target = None if parsed is None else self._target(*parsed)
        if len(self._cache) < _MAX_STREAM_CACHE:
            self._cache[stream.encode()] = target
        return target

    def _on_raw(self, envelope: Envelope, data: bytes, received_ns: int, out: list[Event]) -> None:
        """A raw-stream payload (no ``stream`` wrapper): the event type says what it is."""
        event_type, native = envelope.e, envelope.s
        kind: Kind | None
        if event_type is not None:
            kind = _RAW_KINDS.get(event_type)
        else:  # bookTicker: no event type, but an update id and a symbol
            kind = "price" if envelope.u is not None else None
        target = None if kind is None or native is None else self._target(kind, native.lower())
        if target is None:
            self.stats.ignored += 1
            return
        self._on_data(target, data, received_ns, out)

    def _on_data(
        self, target: _Target, payload: bytes | msgspec.Raw, received_ns: int, out: list[Event]
    ) -> None:
        kind = target[0]
        decode = (
            decode_depth
            if kind == "book"
            else decode_book_ticker
            if kind == "price"
            else decode_trade
            if kind == "trades"
            else decode_kline
        )
        self._emit(target, decode(payload), received_ns, out)

    def _emit(
        self,
        target: _Target,
        payload: DepthUpdate | BookTicker | TradeEvent | KlineEvent,
        received_ns: int,
        out: list[Event],
    ) -> None:
        _, symbol, native = target
        exchange = self._exchange
        if isinstance(payload, DepthUpdate):
            self.books.on_diff(self.books.state(native, symbol), payload, received_ns, out)
        elif isinstance(payload, BookTicker):
            ticker = payload
            out.append(
                Quote(
                    exchange=exchange,
                    symbol=symbol,
                    bid=ticker.bid,
                    ask=ticker.ask,
                    bid_size=ticker.bid_size,
                    ask_size=ticker.ask_size,
                    timestamp=received_ns // 1_000_000,
                    exchange_time=None,
                    received_ns=received_ns,
                    sequence=ticker.update_id,
                )
            )
        elif isinstance(payload, TradeEvent):
            trade = payload
            out.append(
                Trade(
                    exchange=exchange,
                    symbol=symbol,
                    price=trade.price,
                    size=trade.quantity,
                    # m: the buyer is the maker, so the taker (the aggressor) sold.
                    side="sell" if trade.buyer_is_maker else "buy",
                    id=str(trade.trade_id),
                    timestamp=trade.trade_time,
                    exchange_time=trade.trade_time,
                    received_ns=received_ns,
                    sequence=trade.trade_id,
                )
            )
        else:
            event = payload
            k = event.kline
            out.append(
                Candle(
                    exchange=exchange,
                    symbol=symbol,
                    interval=k.interval,
                    start=k.start,
                    open=k.open,
                    high=k.high,
                    low=k.low,
                    close=k.close,
                    volume=k.volume,
                    closed=k.closed,
                    timestamp=event.event_time,
                    exchange_time=event.event_time,
                    received_ns=received_ns,
                )
            )
