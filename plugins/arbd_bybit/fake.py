"""A fake Bybit v5 public spot exchange on one loopback port (reference: exchange-protocols.md §4).

WebSocket ``/v5/public/spot`` and REST ``GET /v5/market/instruments-info?category=spot``, speaking
the real frames, including the fields arbd ignores. Client requests and the answers::

    {"req_id":"1","op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}
    {"success":true,"ret_msg":"subscribe","conn_id":"cv1bi0q9d7ru4h6ab8r0-6n1kc","req_id":"1",
     "op":"subscribe"}
    {"success":false,"ret_msg":"Invalid symbol :[orderbook.50.NOPEUSDT]","conn_id":"...",
     "req_id":"2","op":"subscribe"}
    {"success":false,"ret_msg":"error:handler not found,topic:orderbook.30.BTCUSDT",...}
    {"success":false,"ret_msg":"error:already subscribed,topic:orderbook.1.ETHUSDT",...}
    {"success":false,"ret_msg":"args size >10",...}
    {"op":"ping"}  ->  {"success":true,"ret_msg":"pong","conn_id":"...","op":"ping"}

Market data (spot puts ``ts`` before ``type`` on book topics)::

    {"topic":"orderbook.50.BTCUSDT","ts":1700000000000,"type":"delta","data":{"s":"BTCUSDT",
     "b":[["63999.00","0.01234"]],"a":[["64001.00","0"]],"u":1003,"seq":5000012},
     "cts":1699999999999}
    {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1700000000000,"data":[{
     "T":1699999999999,"s":"BTCUSDT","S":"Buy","v":"0.00100","p":"64001.00",
     "i":"2290000000000100001","BT":false,"RPI":false,"seq":5000012}]}
    {"topic":"kline.1.BTCUSDT","data":[{"start":1699999980000,"end":1700000039999,
     "interval":"1","open":"64000.00","close":"64001.00","high":"64001.00","low":"63999.00",
     "volume":"0.00100","turnover":"64.001","confirm":false,"timestamp":1700000000000}],
     "ts":1700000000000,"type":"snapshot"}

Order books follow the real rules: each depth topic (1, 50, 200, 1000) is a window onto the one
book the fake keeps, with its own update id ``u`` (+1 per message) and the shared cross sequence
``seq``. A subscribe is answered by a ``snapshot`` of the window; each round then sends a ``delta``
(absolute sizes, "0" deletes, a level leaving the window is deleted) when the window changed, and
nothing when it did not. ``orderbook.1`` is snapshot-only: a new ``u`` when the top changed, the
same snapshot again every 3 s when it did not. So the book a client rebuilds equals the fake's.

Faults, on top of :class:`~arbd.testing.fake.Faults` and :class:`MarketFake`'s:
``skip_sequence`` (a round's book messages are lost: their ``u`` is spent),
``send_crossed_book``, :meth:`BybitFake.restart_service` (snapshots with ``u`` = 1, what Bybit
sends after a service restart), :meth:`BybitFake.resend_snapshot` (Bybit re-sends a snapshot "if
there is a problem on Bybit's end"), ``reject_symbols`` (native symbols whose subscribes get the
real ``Invalid symbol`` error although REST lists them) and ``idle_timeout``: Bybit cuts a
connection with no ping and no stream data for 10 minutes (§4.4); it is dropped without a close
frame. There are no checksums on Bybit, so ``corrupt_checksum`` has nothing to act on.

Not modelled (arbd does not use them): ``tickers``, other kline intervals and ``orderbook.full``
(subscribes to them get the "handler not found" error), and the REST order book endpoints.
Where the real behaviour is not documented the fake picks one and says so: a request with one
bad topic fails as a whole (nothing of it is subscribed), unsubscribing a topic that is not
subscribed is acknowledged, and an unknown ``symbol`` filter on instruments-info gives an empty
list.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec
import trio

from arbd.testing.connection import FakeConnection
from arbd.testing.fake import HttpAnswer
from arbd.testing.market import BookUpdate, ExchangeBook, Level
from arbd.testing.marketfake import Bar, FakeMarket, Listing, MarketFake, Out

WS_PATH: Final = "/v5/public/spot"
INSTRUMENTS_PATH: Final = "/v5/market/instruments-info"
DEPTHS: Final = (1, 50, 200, 1000)
"""Spot ``orderbook.{depth}`` depths (§4.3)."""
KLINE_INTERVALS: Final = {"1": 60_000}
"""Kline intervals the fake serves (Bybit has more; arbd uses 1)."""
MAX_ARGS: Final = 10
"""Spot: at most 10 args per request (§4.5)."""
TOP_REPUSH_MS: Final = 3_000
"""``orderbook.1`` is re-pushed every 3 s when unchanged, with the same ``u`` (§4.3)."""
DEFAULT_SYMBOLS: Final = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BTC/USDC", "ETH/USDC")

_encode = msgspec.json.Encoder().encode

Window = dict[int, int]
"""Price in ticks -> size in lot units: one side of one depth's view of the book."""


class _Request(msgspec.Struct):
    op: str
    args: list[Any] = msgspec.field(default_factory=list)
    req_id: str | int | None = None


_decode_request: Final = msgspec.json.Decoder(_Request).decode


class _Text:
    """Price and size text of one book, cached: formatting is most of a round's cost, and the
    same levels appear in every depth's messages. Bounded: cleared when it grows too large."""

    limit: Final = 8_192

    def __init__(self, book: ExchangeBook) -> None:
        self.book = book
        self.prices: dict[int, str] = {}
        self.sizes: dict[int, str] = {}

    def price(self, ticks: int) -> str:
        text = self.prices.get(ticks)
        if text is None:
            if len(self.prices) >= self.limit:
                self.prices.clear()
            text = self.prices[ticks] = self.book.price(ticks)
        return text

    def size(self, units: int) -> str:
        text = self.sizes.get(units)
        if text is None:
            if len(self.sizes) >= self.limit:
                self.sizes.clear()
            text = self.sizes[units] = self.book.size(units)
        return text


@dataclass
class _BookState:
    """What one market's depth topics last published: the windows and their update ids."""

    text: _Text
    windows: dict[int, tuple[Window, Window]]
    u: dict[int, int]
    top_ts: int = 0
    """When ``orderbook.1`` was last pushed (ms)."""
    bar_start: int | None = None
    turnover: Decimal = field(default_factory=Decimal)
    """Quote volume of the current 1-minute bar (Bybit's kline ``turnover``)."""


def _windows(book: ExchangeBook) -> dict[int, tuple[Window, Window]]:
    """Every depth's view of ``book``: the best ``depth`` levels of each side."""
    bid_prices = sorted(book.bids, reverse=True)
    ask_prices = sorted(book.asks)
    return {
        depth: (
            {p: book.bids[p] for p in bid_prices[:depth]},
            {p: book.asks[p] for p in ask_prices[:depth]},
        )
        for depth in DEPTHS
    }


def _levels(text: _Text, side: Window, reverse: bool) -> list[Level]:
    return [(text.price(p), text.size(side[p])) for p in sorted(side, reverse=reverse)]


def _diff(text: _Text, old: Window, new: Window, reverse: bool) -> list[Level]:
    """Absolute changes turning ``old`` into ``new``, best first; "0" deletes a level (Bybit
    writes a plain "0", not the lot's decimals)."""
    prices = sorted(old.keys() | new.keys(), reverse=reverse)
    return [
        (text.price(p), text.size(new[p]) if p in new else "0")
        for p in prices
        if old.get(p) != new.get(p)
    ]


def conn_id(number: int) -> str:
    """A stable connection id shaped like Bybit's (``cv1bi0q9d7ru4h6ab8r0-6n1kc``)."""
    digest = hashlib.sha256(f"bybit-fake-{number}".encode()).digest()
    text = base64.b32hexencode(digest).decode().lower()
    return f"{text[:20]}-{text[20:25]}"


class BybitFake(MarketFake):
    """Bybit v5 public spot. ``BybitFake()`` lists :data:`DEFAULT_SYMBOLS` (BTC/USDT, ...).

    Args:
        symbols: normalized symbols to list (default :data:`DEFAULT_SYMBOLS`).
        depth: levels per side of the fake's book (50 by default; deeper topics then carry the
            whole book, as on a thin real market; pass 200+ to make ``orderbook.200`` a window).
        reject_symbols: native symbols (``ETHUSDT``) whose subscribes fail with Bybit's
            ``Invalid symbol`` error although REST lists them (a symbol being delisted).
        options: the keyword options of :class:`MarketFake` (seed, step, clock, simulator, ...).
    """

    ws_path = WS_PATH
    websocket_paths = (WS_PATH,)
    idle_timeout: float | None = 600.0
    """Seconds without a client message and without stream data before the connection is cut
    (§4.4: "cut off after 10 minutes"); None never cuts."""

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        depth: int = 50,
        reject_symbols: Sequence[str] = (),
        **options: Any,
    ) -> None:
        super().__init__(symbols, depth=depth, **options)
        self.reject_symbols: set[str] = set(reject_symbols)
        self.idle_closes = 0
        self._books: dict[str, _BookState] = {}
        for n, market in enumerate(self.markets.values()):
            # Each depth topic has its own update id; start them apart like real ones.
            self._books[market.native] = _BookState(
                text=_Text(market.book),
                windows=_windows(market.book),
                u={d: 1_000 * (i + 1) + n for i, d in enumerate(DEPTHS)},
            )
            market.seq = 5_000_000 + 1_000 * n
            market.trade_id = 2_290_000_000_000_000_000 + 100_000 * n
        self._client_messages: dict[int, int] = {}

    # -- MarketFake hooks -----------------------------------------------------------------------

    def default_symbols(self) -> Sequence[str]:
        return DEFAULT_SYMBOLS

    def native_symbol(self, item: Listing) -> str:
        return f"{item.base}{item.quote}"

    def round_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        """Book messages, then one ``publicTrade`` message with the round's trades, then the
        1-minute kline (the finished bar first when the minute turned)."""
        frames = self.book_frames(m, update, ts)
        native = m.native
        trades = [
            {
                "T": ts - 1,
                "s": native,
                "S": "Buy" if side == "buy" else "Sell",
                "v": size,
                "p": price,
                "i": str(m.next_trade_id()),
                "BT": False,
                "RPI": False,
                "seq": m.seq,
            }
            for price, size, side in update.trades
        ]
        if trades:
            topic = f"publicTrade.{native}"
            body = {"topic": topic, "type": "snapshot", "ts": ts, "data": trades}
            frames.append((topic, _encode(body).decode()))
        turnover = sum((Decimal(p) * Decimal(v) for p, v, _ in update.trades), Decimal())
        state = self._books[native]
        for bar in m.candle(ts, update.trades, self.candle_interval_ms):
            if bar.closed:  # the finished bar keeps the total it had when the minute turned
                total = state.turnover if state.bar_start == bar.start_ms else Decimal()
            else:
                if bar.start_ms != state.bar_start:
                    state.bar_start, state.turnover = bar.start_ms, Decimal()
                state.turnover += turnover
                total = state.turnover
            frames.append((f"kline.1.{native}", self._kline_frame(m, bar, total, ts)))
        return frames

    def book_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        """The book messages for the fake's book as it is now (``update`` is already in it)."""
        state = self._books[m.native]
        text = state.text
        windows = _windows(m.book)
        if windows[DEPTHS[-1]] != state.windows[DEPTHS[-1]]:
            m.seq += 1  # the cross sequence moves once per book change, whatever the depth
        frames: list[Out] = []
        deltas = False
        previous: tuple[Window, Window, Window, Window] | None = None
        bids: list[Level] = []
        asks: list[Level] = []
        for depth in DEPTHS:
            old, new = state.windows[depth], windows[depth]
            state.windows[depth] = new
            topic = f"orderbook.{depth}.{m.native}"
            if depth == 1:
                # Snapshot-only: a new u when the top moved, the same one again every 3 s.
                if new != old:
                    state.u[1] += 1
                elif ts - state.top_ts < TOP_REPUSH_MS:
                    continue
                state.top_ts = ts
                frames.append((topic, self._book_frame(m, depth, "snapshot", new, ts)))
                continue
            sides = (*old, *new)
            # A window as large as the book is the same as the previous one: same delta.
            if previous is None or any(
                len(a) != len(b) for a, b in zip(sides, previous, strict=True)
            ):
                bids = _diff(text, old[0], new[0], reverse=True)
                asks = _diff(text, old[1], new[1], reverse=False)
            previous = sides
            if not bids and not asks:
                continue  # Bybit sends no empty deltas
            state.u[depth] += 1
            deltas = True
            body = {
                "topic": topic,
                "ts": ts,
                "type": "delta",
                "data": {"s": m.native, "b": bids, "a": asks, "u": state.u[depth], "seq": m.seq},
                "cts": ts - 1,
            }
            frames.append((topic, _encode(body).decode()))
        if deltas and m.take_skip():
            return []  # every book message of this round is lost; their u are spent
        return frames

    def force_disconnect(self, conn: FakeConnection) -> None:
        # Bybit ends connections without a closing handshake (code 1006 on the client).
        conn.drop()

    # -- market data helpers --------------------------------------------------------------------

    def _book_frame(
        self, m: FakeMarket, depth: int, kind: str, window: tuple[Window, Window], ts: int
    ) -> str:
        state = self._books[m.native]
        body = {
            "topic": f"orderbook.{depth}.{m.native}",
            "ts": ts,
            "type": kind,
            "data": {
                "s": m.native,
                "b": _levels(state.text, window[0], reverse=True),
                "a": _levels(state.text, window[1], reverse=False),
                "u": state.u[depth],
                "seq": m.seq,
            },
            "cts": ts - 1,
        }
        return _encode(body).decode()

    def _kline_frame(self, m: FakeMarket, bar: Bar, turnover: Decimal, ts: int) -> str:
        body = {
            "topic": f"kline.1.{m.native}",
            "data": [
                {
                    "start": bar.start_ms,
                    "end": bar.start_ms + self.candle_interval_ms - 1,
                    "interval": "1",
                    "open": m.price(bar.open),
                    "close": m.price(bar.close),
                    "high": m.price(bar.high),
                    "low": m.price(bar.low),
                    "volume": m.fmt_volume(bar),
                    "turnover": _plain(turnover),
                    "confirm": bar.closed,
                    "timestamp": ts,
                }
            ],
            "ts": ts,
            "type": "snapshot",
        }
        return _encode(body).decode()

    def snapshot_frame(self, symbol: str, depth: int = 50) -> str:
        """The snapshot a subscribe to ``orderbook.{depth}.{symbol}`` is answered with now."""
        m = self.market(symbol)
        return self._book_frame(
            m, depth, "snapshot", self._books[m.native].windows[depth], self.clock()
        )

    def update_id(self, symbol: str, depth: int = 50) -> int:
        """The last ``u`` of ``orderbook.{depth}.{symbol}``."""
        return self._books[self.market(symbol).native].u[depth]

    # -- extra faults ---------------------------------------------------------------------------

    def resend_snapshot(self, symbol: str) -> int:
        """Send a fresh snapshot (same book, next ``u``) on every depth topic of ``symbol``, as
        Bybit does after a problem on its side; returns frames sent."""
        return self._snapshots(self.market(symbol), restart=False)

    def restart_service(self, symbol: str) -> int:
        """Snapshots with ``u`` = 1 on every depth topic of ``symbol``: a service restart."""
        return self._snapshots(self.market(symbol), restart=True)

    def _snapshots(self, m: FakeMarket, *, restart: bool) -> int:
        state = self._books[m.native]
        ts = self.clock()
        frames: list[Out] = []
        for depth in DEPTHS:
            state.u[depth] = 1 if restart else state.u[depth] + 1
            topic = f"orderbook.{depth}.{m.native}"
            frames.append((topic, self._book_frame(m, depth, "snapshot", state.windows[depth], ts)))
        return self.broadcast(frames)

    # -- WebSocket ------------------------------------------------------------------------------

    def on_connect(self, conn: FakeConnection) -> None:
        super().on_connect(conn)
        self._client_messages[conn.id] = 0
        if self.idle_timeout is not None:
            self.start_soon(self._cut_when_idle, conn, self.idle_timeout)

    def on_disconnect(self, conn: FakeConnection) -> None:
        self._client_messages.pop(conn.id, None)

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        self._client_messages[conn.id] = self._client_messages.get(conn.id, 0) + 1
        try:
            request = _decode_request(message)
        except msgspec.DecodeError as exc:
            # What Bybit's decoder says is its own; the shape (success false, no op) is what
            # matters to a client.
            self._answer(conn, "", None, ok=False, msg=f"Failed to decode incoming data:{exc}")
            return
        op, req_id = request.op, request.req_id
        if op == "ping":
            self._answer(conn, "ping", req_id, ok=True, msg="pong")
        elif op == "subscribe":
            self._subscribe(conn, request)
        elif op == "unsubscribe":
            if len(request.args) > MAX_ARGS:
                self._answer(conn, op, req_id, ok=False, msg=f"args size >{MAX_ARGS}")
                return
            for topic in request.args:
                conn.subscriptions.discard(str(topic))
            self._answer(conn, op, req_id, ok=True, msg="unsubscribe")
        else:
            self._answer(conn, op, req_id, ok=False, msg="error:invalid op")

    def _subscribe(self, conn: FakeConnection, request: _Request) -> None:
        req_id = request.req_id
        topics = [str(t) for t in request.args]
        if len(topics) > MAX_ARGS:
            self._answer(conn, "subscribe", req_id, ok=False, msg=f"args size >{MAX_ARGS}")
            return
        for topic in topics:
            problem = self._topic_problem(topic, conn)
            if problem is not None:  # the whole request fails; nothing of it is subscribed
                self._answer(conn, "subscribe", req_id, ok=False, msg=problem)
                return
        conn.subscriptions.update(topics)
        self._answer(conn, "subscribe", req_id, ok=True, msg="subscribe")
        ts = self.clock()
        for topic in topics:  # "Once you have subscribed successfully, you will receive a snapshot"
            kind, _, rest = topic.partition(".")
            if kind == "orderbook":
                depth, _, native = rest.partition(".")
                m = self.markets[native]
                window = self._books[native].windows[int(depth)]
                conn.send_data(self._book_frame(m, int(depth), "snapshot", window, ts))

    def _topic_problem(self, topic: str, conn: FakeConnection) -> str | None:
        """Bybit's ``ret_msg`` for a topic it refuses, or None."""
        kind, _, rest = topic.partition(".")
        if kind == "orderbook":
            param, _, native = rest.partition(".")
            known = param in {str(d) for d in DEPTHS}
        elif kind == "kline":
            param, _, native = rest.partition(".")
            known = param in KLINE_INTERVALS
        else:
            native, known = rest, kind == "publicTrade"
        if not known or not native:
            return f"error:handler not found,topic:{topic}"
        if native not in self.markets or native in self.reject_symbols:
            return f"Invalid symbol :[{topic}]"
        if topic in conn.subscriptions:
            return f"error:already subscribed,topic:{topic}"
        return None

    def _answer(
        self, conn: FakeConnection, op: str, req_id: str | int | None, *, ok: bool, msg: str
    ) -> None:
        body: dict[str, object] = {"success": ok, "ret_msg": msg, "conn_id": conn_id(conn.id)}
        if req_id is not None:
            body["req_id"] = req_id
        body["op"] = op
        conn.send_text(_encode(body).decode())

    async def _cut_when_idle(self, conn: FakeConnection, limit: float) -> None:
        """Drop ``conn`` once neither the client sent anything nor data went out for ``limit``."""
        tick = limit / 10
        seen = (-1, -1)
        quiet_since = trio.current_time()
        while conn.open:
            await trio.sleep(tick)
            activity = (self._client_messages.get(conn.id, 0), conn.data_frames_sent)
            if activity != seen:
                seen, quiet_since = activity, trio.current_time()
            elif trio.current_time() - quiet_since >= limit and conn.open:
                self.idle_closes += 1
                conn.drop()
                self.notify()
                return

    # -- REST -----------------------------------------------------------------------------------

    def handle_http(self, method: str, path: str, query: dict[str, str]) -> HttpAnswer:
        if path != INSTRUMENTS_PATH or method != "GET":
            return super().handle_http(method, path, query)
        category = query.get("category", "")
        if category != "spot":
            # Other categories exist on Bybit; this fake is spot only and answers like a bad one.
            return self._rest(10001, "Illegal category", {})
        wanted = query.get("symbol")
        items = [
            self._instrument(n, m)
            for n, m in enumerate(self.markets.values(), start=1)
            if wanted is None or m.native == wanted
        ]
        # Spot is not paginated: "limit, cursor are invalid"; the whole list comes at once.
        return self._rest(0, "OK", {"category": "spot", "list": items})

    def _rest(self, code: int, msg: str, result: dict[str, object]) -> HttpAnswer:
        body = {
            "retCode": code,
            "retMsg": msg,
            "result": result,
            "retExtInfo": {},
            "time": self.clock(),
        }
        return 200, {}, _encode(body)

    def _instrument(self, symbol_id: int, m: FakeMarket) -> dict[str, object]:
        item = m.listing
        return {
            "symbolId": symbol_id,
            "symbol": m.native,
            "baseCoin": item.base,
            "quoteCoin": item.quote,
            "innovation": "0",
            "status": "Trading",
            "marginTrading": "utaOnly",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": item.lot,
                "quotePrecision": "0.00000001",
                "minOrderQty": item.lot,
                "maxOrderQty": "8300",
                "minOrderAmt": "5",
                "maxOrderAmt": "8000000",
                "maxLimitOrderQty": "8300",
                "maxMarketOrderQty": "4150",
                "postOnlyMaxLimitOrderSize": "60000",
            },
            "priceFilter": {"tickSize": item.tick},
            "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
            "symbolType": "",
        }


def _plain(value: Decimal) -> str:
    """Decimal text without exponent or trailing zeros ("64.001", "0")."""
    return format(value.normalize(), "f")
