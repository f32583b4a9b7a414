"""A fake Binance spot market-data server: stream.binance.com and api.binance.com on one port.

WebSocket paths, as on ``wss://stream.binance.com:9443``:

``/stream``  combined streams: every event is wrapped as ``{"stream":"<name>","data":<event>}``;
             ``/stream?streams=btcusdt@trade/ethusdt@bookTicker`` subscribes on connect.
``/ws``      raw streams: events unwrapped (``SET_PROPERTY ["combined", true]`` wraps them).

(Raw ``/ws/<streamName>`` paths are not served: the adapter never uses them.)

Control frames (JSON text; ``id`` echoed; a request is validated as a whole, so one bad stream
name fails it and subscribes nothing)::

    > {"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth@100ms"],"id":1}
    < {"result":null,"id":1}
    > {"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":2}
    < {"result":null,"id":2}
    > {"method":"LIST_SUBSCRIPTIONS","id":3}
    < {"result":["btcusdt@depth@100ms"],"id":3}
    > {"method":"SET_PROPERTY","params":["combined",true],"id":4}     GET_PROPERTY ["combined"]
    > {"method":"SUBSCRIBE","params":["btcusdt@nonsense"],"id":5}
    < {"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":5}
    > not json
    < {"error":{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"},"id":null}

Errors use the wrapped form seen on the wire (reference §1.2/§8.8), with the documented codes:
0 unknown property, 1 bad property value, 2 invalid request (unknown method, bad id, invalid
stream, too many parameters), 3 invalid JSON. A well-formed stream name of a symbol Binance does
not list is acked and stays silent, as the real server does (3rd-party report, JKorf/Binance.Net
#620); to reject a listed symbol's streams use :meth:`BinanceFake.reject_symbol`.

Data (compact JSON, prices and sizes as 8-decimal strings like the real feed), per round and
symbol in this order::

    {"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":100001,
     "p":"64000.01000000","q":"0.01200000","T":1700000000000,"m":false,"M":true}}
    {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000000,"s":"BTCUSDT",
     "U":1001,"u":1012,"b":[["63999.99000000","0.41000000"]],"a":[["64000.50000000","0.00000000"]]}}
    {"stream":"btcusdt@bookTicker","data":{"u":1012,"s":"BTCUSDT","b":"63999.99000000",
     "B":"0.41000000","a":"64000.01000000","A":"1.20000000"}}
    {"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1700000000000,"s":"BTCUSDT","k":{
     "t":1699999980000,"T":1700000039999,"s":"BTCUSDT","i":"1m","f":100001,"L":100007,
     "o":"64000.01000000","c":"64000.02000000","h":"64000.05000000","l":"63999.98000000",
     "v":"0.31000000","n":7,"x":false,"q":"19840.00620000","V":"0.12000000",
     "Q":"7680.00120000","B":"0"}}}

* depth: one update id per changed level; an event covers ``U..u`` and the next starts at
  ``u + 1`` (a round without changes sends none). ``FakeMarket.seq`` is the last update id, which
  ``GET /api/v3/depth`` returns as ``lastUpdateId`` with the book at exactly that id, so the
  documented snapshot procedure (reference §1.4) lines up. No checksum (spot has none).
* bookTicker: sent when the best bid or ask (price or size) changed; ``u`` is the book's id.
* kline_1m: every ``kline_push_interval`` market seconds (Binance: 2 s), and at once, closed
  (``"x":true``), when the minute turns.
* Streams that are valid on Binance but not simulated here (``@aggTrade``, ``@depth5``, ...) are
  acked and send nothing.

REST (``api.binance.com``): ``GET /api/v3/exchangeInfo`` (optionally ``?symbol=`` or
``?symbols=["A","B"]``) in the real shape with ``PRICE_FILTER.tickSize`` / ``LOT_SIZE.stepSize``,
and ``GET /api/v3/depth?symbol=&limit=`` (default 100, at most 5000)::

    {"lastUpdateId":1012,"bids":[["63999.99000000","0.41000000"]],"asks":[["64000.01000000",...]]}

Bad requests get Binance's error bodies: ``400 {"code":-1121,"msg":"Invalid symbol."}``,
``-1102`` (missing symbol), ``-1100`` (illegal characters in ``limit``). Answers carry
``x-mbx-used-weight`` / ``x-mbx-used-weight-1m`` (the weight used in the current minute).

Request weight is enforced as Binance does, per fixed minute of the trio clock (the fake's
stands for one IP): exchangeInfo costs 20, depth by ``limit`` (``arbd_binance.limits``). A
request that would take the minute past ``weight_limit`` (6000) is not served: it gets ``429``
with ``Retry-After`` (seconds to the next minute) and Binance's ``-1003`` body::

    {"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per
     1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."}

(the message as Binance's error-code list words it; the real server escalates to 418 bans for
clients that keep going, which this fake does not model). ``weight_refusals`` counts these;
``weight_log`` holds ``(trio time, weight)`` of every request served. Weight is charged when
the request is answered, after ``faults.http_delay`` (a constant delay shifts every charge
alike, so what fits per minute is unchanged).

Keepalive and limits, as documented: a WebSocket ping frame every ``ping_interval`` (20 s); if no
pong has come ``pong_timeout`` (60 s) after a ping the connection is dropped. More than
``max_incoming_per_second`` (5) incoming messages (text, binary, ping and pong frames) within any
1 s closes the connection with ``1008 Too many requests`` (the close reported by binance-connector
users). At most ``max_streams`` (1024) streams per connection.

Faults besides the base ones: :meth:`skip_sequence` (spend a depth event's update ids without
sending it), :meth:`send_crossed_book`, :meth:`reject_symbol`, :meth:`send_shutdown`
(``serverShutdown``), :meth:`send_event` (any event on any stream name). :meth:`corrupt_checksum`
raises: Binance spot books carry no checksum.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec
import trio

from arbd.testing.connection import FakeConnection, trim
from arbd.testing.fake import HttpAnswer
from arbd.testing.market import BookUpdate, Level
from arbd.testing.marketfake import Bar, FakeMarket, Listing, MarketFake, Out
from arbd_binance.limits import EXCHANGE_INFO_WEIGHT, REST_WEIGHT_PER_MINUTE, depth_weight

DEFAULT_SYMBOLS: Final = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BTC/USDC")
"""Includes the adapter's defaults (BTC/USDT, ETH/USDT); BTC/USDC is there because its native
name ``BTCUSDC`` shows why symbols must come from exchangeInfo rather than string splitting."""

METHODS: Final = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
INVALID_STREAM: Final = "Invalid request: invalid stream"

_KLINE_INTERVALS: Final = "1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M"
_STREAM_RE: Final = re.compile(
    r"(?P<symbol>[a-z0-9]+)@(?P<kind>trade|aggTrade|bookTicker|ticker|miniTicker|avgPrice"
    r"|depth(?:5|10|20)?(?:@100ms|@1000ms)?|ticker_(?:1h|4h|1d)"
    rf"|kline_(?:{_KLINE_INTERVALS})(?:@\+08:00)?)"
)
_ALL_MARKET_STREAMS: Final = frozenset(
    {"!miniTicker@arr", "!ticker@arr", "!ticker_1h@arr", "!ticker_4h@arr", "!ticker_1d@arr"}
)
# Streams this fake fills with data (the adapter's four), by stream-name suffix.
TRADE, DEPTH, TICKER, KLINE = "trade", "depth@100ms", "bookTicker", "kline_1m"

_encode = msgspec.json.Encoder().encode


def pad8(text: str) -> str:
    """Binance's price/size text: 8 decimals (``"64000.1"`` -> ``"64000.10000000"``)."""
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(8, '0')}" if len(frac) <= 8 else text


def stream_of(m: FakeMarket, suffix: str) -> str:
    return f"{m.native.lower()}@{suffix}"


def too_much_weight(limit: int) -> str:
    """The message of Binance's ``-1003`` answer (HTTP 429) to a request over the weight limit."""
    return (
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API."
    )


class RequestError(Exception):
    """A control frame Binance answers with ``{"error":{"code":..,"msg":..},"id":..}``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass
class _Peer:
    """What the fake keeps per connection."""

    combined: bool
    incoming: deque[float] = field(default_factory=deque)
    """Arrival times (trio clock) of the messages counted in the last second."""
    control_frames: int = 0
    """Pings and pongs already counted against the message limit."""


@dataclass
class _KlineStats:
    """What a kline reports beyond OHLCV (``Bar``): trade ids, quote and taker volumes."""

    start: int
    first_id: int = -1
    last_id: int = -1
    quote: Decimal = Decimal(0)
    taker_base: Decimal = Decimal(0)
    taker_quote: Decimal = Decimal(0)


@dataclass
class _Extra:
    """Binance-specific state of one market."""

    ticker: tuple[Level, Level] | None = None
    """The best bid/ask last sent on bookTicker."""
    kline: _KlineStats | None = None
    kline_due: float = 0.0
    """Market time of the next periodic kline push."""


class BinanceFake(MarketFake):
    """Binance spot. ``BinanceFake()`` lists :data:`DEFAULT_SYMBOLS`; the adapter's ``ws_url`` is
    the bare host (its ``stream_url`` appends ``/stream``). See the module docstring.

    Args (besides :class:`MarketFake`'s): ``reject_symbols``: symbols (normalized or native)
    whose streams the fake refuses as invalid (the error-frame switch).
    """

    websocket_paths = ("/stream", "/ws")
    ws_path = ""
    ping_interval: float | None = 20.0
    pong_timeout: float = 60.0
    max_incoming_per_second: int = 5
    max_streams: int = 1024
    kline_push_interval: float = 2.0
    """Market seconds between pushes of the current kline (Binance: 2000 ms for ``1m``)."""
    weight_limit: int = REST_WEIGHT_PER_MINUTE
    """REST weight served per minute; beyond it, 429 (see the module docstring)."""

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        reject_symbols: Iterable[str] = (),
        **options: Any,
    ) -> None:
        super().__init__(symbols, **options)
        self.extra: dict[str, _Extra] = {native: _Extra() for native in self.markets}
        self.rejected: set[str] = set()
        """Native symbols whose streams are answered with ``invalid stream``."""
        for symbol in reject_symbols:
            self.reject_symbol(symbol)
        self.rate_limit_closes = 0
        self.pong_timeouts = 0
        self.errors_sent = 0
        self._peers: dict[int, _Peer] = {}
        self._weight_minute = -1
        self._weight_used = 0
        self.weight_refusals = 0
        self.weight_log: list[tuple[float, int]] = []
        """``(trio time, weight)`` of each REST request served (the newest ``max_history``)."""

    def default_symbols(self) -> Sequence[str]:
        return DEFAULT_SYMBOLS

    def native_symbol(self, item: Listing) -> str:
        return f"{item.base}{item.quote}"

    # -- switches and faults ----------------------------------------------------------------

    def reject_symbol(self, symbol: str, rejected: bool = True) -> None:
        """Answer every later SUBSCRIBE/UNSUBSCRIBE naming ``symbol``'s streams with
        ``{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":N}``."""
        native = self.market(symbol).native
        if rejected:
            self.rejected.add(native)
        else:
            self.rejected.discard(native)

    def corrupt_checksum(self, symbol: str) -> None:
        raise NotImplementedError("Binance spot depth streams carry no checksum")

    def send_event(self, conn: FakeConnection, stream: str, data: dict[str, Any]) -> bool:
        """Send ``data`` as an event of ``stream`` (wrapped or raw, per the connection) as
        market data: subscribed or not, known to the adapter or not."""
        return conn.send_data(self._frame(stream, _encode(data).decode())(conn))

    def send_shutdown(self, conn: FakeConnection) -> bool:
        """Announce a server shutdown on ``conn`` (``!serverShutdown``); the connection stays
        open (close or drop it next, as the real server does shortly after)."""
        data = _encode({"e": "serverShutdown", "E": self.clock()}).decode()
        return conn.send_text(self._frame("!serverShutdown", data)(conn))

    # -- connections ------------------------------------------------------------------------

    def on_connect(self, conn: FakeConnection) -> None:
        peer = _Peer(combined=conn.path == "/stream")
        self._peers[conn.id] = peer
        if peer.combined and conn.query.get("streams"):
            # Streams named in the URL: valid ones are subscribed, as far as the limit allows
            # (a handshake cannot be answered with an error frame).
            names = conn.query["streams"].split("/")
            valid = [n for n in names if self._stream_error(n) is None]
            conn.subscriptions.update(valid[: self.max_streams])
        if self.ping_interval is not None:
            self.start_soon(self._keepalive, conn, self.ping_interval)
        super().on_connect(conn)

    def on_disconnect(self, conn: FakeConnection) -> None:
        self._peers.pop(conn.id, None)

    def notify(self) -> None:
        # Every received frame ends in notify(); pings and pongs have no hook of their own, so
        # this is where they are counted against the message limit.
        for conn in list(self.connections):
            peer = self._peers.get(conn.id)
            if peer is not None and conn.open:
                self._count_control_frames(conn, peer)
        super().notify()

    def _count_control_frames(self, conn: FakeConnection, peer: _Peer) -> bool:
        seen = conn.pings_received + conn.pongs_received
        new, peer.control_frames = seen - peer.control_frames, seen
        return self._count(conn, peer, new) if new > 0 else True

    def _count(self, conn: FakeConnection, peer: _Peer, n: int) -> bool:
        """Count ``n`` incoming messages now; close the connection past the limit."""
        now = trio.current_time()
        window = peer.incoming
        window.extend([now] * n)
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) <= self.max_incoming_per_second:
            return True
        window.clear()
        self.rate_limit_closes += 1
        conn.close(1008, "Too many requests")
        return False

    async def _keepalive(self, conn: FakeConnection, interval: float) -> None:
        """Ping every ``interval``; drop the connection when a ping stays unanswered for
        ``pong_timeout`` (any pong counts: the fake cannot see pong payloads)."""
        waiting_since: float | None = None
        pongs = conn.pongs_received
        next_ping = trio.current_time() + interval
        while conn.open:
            wake = next_ping
            if waiting_since is not None:
                wake = min(wake, waiting_since + self.pong_timeout)
            await trio.sleep_until(wake)
            if not conn.open:
                return
            now = trio.current_time()
            if conn.pongs_received != pongs:
                pongs, waiting_since = conn.pongs_received, None
            if waiting_since is not None and now >= waiting_since + self.pong_timeout:
                self.pong_timeouts += 1
                conn.drop()
                return
            if now >= next_ping:
                conn.send_ping(str(self.clock()).encode())
                if waiting_since is None:
                    waiting_since = now
                next_ping = now + interval

    # -- control frames ---------------------------------------------------------------------

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        peer = self._peers.get(conn.id)
        if peer is None or not conn.open:
            return
        if not self._count_control_frames(conn, peer) or not self._count(conn, peer, 1):
            return
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        request_id: object = None
        try:
            try:
                request = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RequestError(
                    3, f"Invalid JSON: expected value at line {exc.lineno} column {exc.colno}"
                ) from None
            if not isinstance(request, dict):
                raise RequestError(2, "Invalid request: expected a JSON object")
            request_id = request.get("id")
            if not _valid_id(request_id):
                request_id = None
                raise RequestError(2, "Invalid request: request ID must be an unsigned integer")
            result = self._answer(conn, peer, request, text)
        except RequestError as exc:
            self.errors_sent += 1
            body = {"error": {"code": exc.code, "msg": exc.msg}, "id": request_id}
            conn.send_text(_encode(body).decode())
            return
        conn.send_text(_encode({"result": result, "id": request_id}).decode())

    def _answer(
        self, conn: FakeConnection, peer: _Peer, request: dict[str, Any], text: str
    ) -> object:
        """The ``result`` of one request, or raises :class:`RequestError`."""
        method = request.get("method")
        if method is None:
            raise RequestError(
                2, f"Invalid request: missing field `method` at line 1 column {len(text)}"
            )
        if method not in METHODS:
            expected = ", ".join(f"`{m}`" for m in METHODS)
            end = text.find(json.dumps(method)) + len(json.dumps(method))
            raise RequestError(
                2,
                f"Invalid request: unknown variant `{method}`, expected one of {expected} "
                f"at line 1 column {end}",
            )
        params = request.get("params", [])
        if not isinstance(params, list):
            raise RequestError(2, "Invalid request: params must be an array")
        if method == "LIST_SUBSCRIPTIONS":
            return sorted(conn.subscriptions)
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return self._property(peer, method, params)
        for name in params:
            error = self._stream_error(name)
            if error is not None:
                raise RequestError(2, error)
        if method == "SUBSCRIBE":
            if len(conn.subscriptions | set(params)) > self.max_streams:
                # The wording is the fake's: the real text for this case is not documented.
                raise RequestError(2, f"Invalid request: too many streams (max {self.max_streams})")
            conn.subscriptions.update(params)
        else:
            conn.subscriptions.difference_update(params)
        return None

    def _property(self, peer: _Peer, method: str, params: list[Any]) -> object:
        wanted = 2 if method == "SET_PROPERTY" else 1
        if len(params) > wanted:
            raise RequestError(2, "Invalid request: too many parameters")
        if not params or not isinstance(params[0], str):
            raise RequestError(2, "Invalid request: property name must be a string")
        if params[0] != "combined":
            raise RequestError(0, "Unknown property")
        if method == "GET_PROPERTY":
            return peer.combined
        if len(params) < 2 or not isinstance(params[1], bool):
            raise RequestError(1, "Invalid value type: expected Boolean")
        peer.combined = params[1]
        return None

    def _stream_error(self, name: object) -> str | None:
        if not isinstance(name, str):
            return INVALID_STREAM
        if name in _ALL_MARKET_STREAMS:
            return None
        match = _STREAM_RE.fullmatch(name)
        if match is None or match["symbol"].upper() in self.rejected:
            return INVALID_STREAM
        return None

    # -- REST -------------------------------------------------------------------------------

    def handle_http(self, method: str, path: str, query: dict[str, str]) -> HttpAnswer:
        if method != "GET":
            return super().handle_http(method, path, query)
        if path == "/api/v3/exchangeInfo":
            status, body = self._exchange_info(query)
            return self._rest(status, body, EXCHANGE_INFO_WEIGHT)
        if path == "/api/v3/depth":
            status, body, weight = self._depth(query)
            return self._rest(status, body, weight)
        return super().handle_http(method, path, query)

    def _rest(self, status: int, body: object, weight: int) -> HttpAnswer:
        now = trio.current_time()
        minute = int(now // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        if self._weight_used + weight > self.weight_limit:
            self.weight_refusals += 1
            headers["Retry-After"] = str(math.ceil((minute + 1) * 60 - now))
            status, body = 429, {"code": -1003, "msg": too_much_weight(self.weight_limit)}
        else:
            self._weight_used += weight
            self.weight_log.append((now, weight))
            trim(self.weight_log, self.max_history)
        used = str(self._weight_used)
        headers["x-mbx-used-weight"] = headers["x-mbx-used-weight-1m"] = used
        return status, headers, _encode(body)

    def _exchange_info(self, query: dict[str, str]) -> tuple[int, object]:
        markets = list(self.markets.values())
        if "symbol" in query or "symbols" in query:
            wanted = _wanted_symbols(query)
            if wanted is None:
                return 400, {
                    "code": -1100,
                    "msg": "Illegal characters found in parameter 'symbols'; legal range "
                    'is \'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$\'.',
                }
            if any(s not in self.markets for s in wanted):
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            markets = [self.markets[s] for s in wanted]
        return 200, {
            "timezone": "UTC",
            "serverTime": self.clock(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
            "symbols": [_symbol_info(m) for m in markets],
        }

    def _depth(self, query: dict[str, str]) -> tuple[int, object, int]:
        native = query.get("symbol", "")
        if not native:
            msg = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            return 400, {"code": -1102, "msg": msg}, 1
        raw_limit = query.get("limit", "100")
        if not raw_limit.isdigit() or len(raw_limit) > 20:
            msg = "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            return 400, {"code": -1100, "msg": msg}, 1
        limit = min(5000, max(1, int(raw_limit)))  # beyond 5000: truncated to 5000
        m = self.markets.get(native)
        if m is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}, depth_weight(limit)
        bids, asks = m.book.snapshot(limit)
        body = {
            "lastUpdateId": m.seq,
            "bids": [[pad8(p), pad8(q)] for p, q in bids],
            "asks": [[pad8(p), pad8(q)] for p, q in asks],
        }
        return 200, body, depth_weight(limit)

    # -- market data ------------------------------------------------------------------------

    def _frame(self, stream: str, data: str) -> Callable[[FakeConnection], str]:
        """A frame wrapped for combined-stream connections and raw for the others."""
        wrapped = f'{{"stream":"{stream}","data":{data}}}'

        def render(conn: FakeConnection) -> str:
            peer = self._peers.get(conn.id)
            return wrapped if peer is None or peer.combined else data

        return render

    def round_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        out: list[Out] = []
        ids: list[int] = []
        trade_stream = stream_of(m, TRADE)
        for price, size, side in update.trades:
            trade_id = m.next_trade_id()
            ids.append(trade_id)
            trade = {
                "e": "trade",
                "E": ts,
                "s": m.native,
                "t": trade_id,
                "p": pad8(price),
                "q": pad8(size),
                "T": ts,
                "m": side == "sell",  # the buyer is the maker: the taker sold
                "M": True,
            }
            out.append((trade_stream, self._frame(trade_stream, _encode(trade).decode())))
        out.extend(self.book_frames(m, update, ts))
        out.extend(self._ticker_frames(m))
        out.extend(self._kline_frames(m, update, ids, ts))
        return out

    def book_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        changes = len(update.bids) + len(update.asks)
        if not changes:
            return []  # Binance sends no diff event for an interval without changes
        first = m.seq + 1
        m.seq += changes
        if m.take_skip():
            return []  # lost: the next event's U reveals the gap
        event = {
            "e": "depthUpdate",
            "E": ts,
            "s": m.native,
            "U": first,
            "u": m.seq,
            "b": _levels(update.bids, reverse=True),
            "a": _levels(update.asks, reverse=False),
        }
        name = stream_of(m, DEPTH)
        return [(name, self._frame(name, _encode(event).decode()))]

    def _ticker_frames(self, m: FakeMarket) -> list[Out]:
        extra = self.extra[m.native]
        best = m.book.best()
        if best == extra.ticker:
            return []
        extra.ticker = best
        (bid, bid_size), (ask, ask_size) = best
        ticker = {
            "u": m.seq,
            "s": m.native,
            "b": pad8(bid),
            "B": pad8(bid_size),
            "a": pad8(ask),
            "A": pad8(ask_size),
        }
        name = stream_of(m, TICKER)
        return [(name, self._frame(name, _encode(ticker).decode()))]

    def _kline_frames(
        self, m: FakeMarket, update: BookUpdate, ids: list[int], ts: int
    ) -> list[Out]:
        interval = self.candle_interval_ms
        bars = m.candle(ts, update.trades, interval)
        extra = self.extra[m.native]
        current = bars[-1]
        closed_stats = None
        if extra.kline is None or extra.kline.start != current.start_ms:
            closed_stats, extra.kline = extra.kline, _KlineStats(current.start_ms)
        stats = extra.kline
        for trade_id, (price, size, side) in zip(ids, update.trades, strict=True):
            if stats.first_id < 0:
                stats.first_id = trade_id
            stats.last_id = trade_id
            notional = Decimal(price) * Decimal(size)
            stats.quote += notional
            if side == "buy":
                stats.taker_base += Decimal(size)
                stats.taker_quote += notional
        name = stream_of(m, KLINE)
        out: list[Out] = []
        now = self.sim.now
        if len(bars) > 1 and closed_stats is not None:
            out.append((name, self._frame(name, self._kline(m, bars[0], closed_stats, ts))))
        if len(bars) > 1 or now >= extra.kline_due:
            extra.kline_due = now + self.kline_push_interval
            out.append((name, self._frame(name, self._kline(m, current, stats, ts))))
        return out

    def _kline(self, m: FakeMarket, bar: Bar, stats: _KlineStats, ts: int) -> str:
        body = {
            "e": "kline",
            "E": ts,
            "s": m.native,
            "k": {
                "t": bar.start_ms,
                "T": bar.start_ms + self.candle_interval_ms - 1,
                "s": m.native,
                "i": "1m",
                "f": stats.first_id,
                "L": stats.last_id,
                "o": pad8(m.price(bar.open)),
                "c": pad8(m.price(bar.close)),
                "h": pad8(m.price(bar.high)),
                "l": pad8(m.price(bar.low)),
                "v": pad8(m.fmt_volume(bar)),
                "n": bar.trades,
                "x": bar.closed,
                "q": f"{stats.quote:.8f}",
                "V": f"{stats.taker_base:.8f}",
                "Q": f"{stats.taker_quote:.8f}",
                "B": "0",
            },
        }
        return _encode(body).decode()


def _levels(levels: list[Level], *, reverse: bool) -> list[list[str]]:
    """Levels best first (bids descending, asks ascending), as 8-decimal text."""
    ordered = sorted(levels, key=lambda level: Decimal(level[0]), reverse=reverse)
    return [[pad8(price), pad8(size)] for price, size in ordered]


def _wanted_symbols(query: dict[str, str]) -> list[str] | None:
    """``?symbol=BTCUSDT`` or ``?symbols=["BTCUSDT","ETHUSDT"]``; None if the list is malformed."""
    if "symbol" in query:
        return [query["symbol"]]
    try:
        wanted = json.loads(query["symbols"])
    except json.JSONDecodeError:
        return None
    if not isinstance(wanted, list) or not all(isinstance(s, str) for s in wanted):
        return None
    return wanted


def _valid_id(value: object) -> bool:
    """Binance accepts a 64-bit int, an alphanumeric string of up to 36 characters, or null."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, str) and len(value) <= 36 and value.isalnum()


def _symbol_info(m: FakeMarket) -> dict[str, Any]:
    item = m.listing
    tick, lot = pad8(item.tick), pad8(item.lot)
    return {
        "symbol": m.native,
        "status": "TRADING",
        "baseAsset": item.base,
        "baseAssetPrecision": 8,
        "quoteAsset": item.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": "9000.00000000", "stepSize": lot},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "100.00000000",
                "stepSize": "0.00000000",
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


__all__ = ["DEFAULT_SYMBOLS", "BinanceFake", "pad8"]
