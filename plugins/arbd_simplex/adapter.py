"""The simplex exchange adapter: the smallest complete arbd adapter (see docs/simplex-protocol.md).

Pure and synchronous, like every adapter: frames in, normalized events and frames-to-send out.
One connection carries any number of ``channel:NATIVE`` subscriptions (``book:BTC-USDT``);
native symbols are ``BASE-QUOTE``.

Book integrity: a ``snapshot`` replaces the book; a ``delta`` must chain (its ``prev`` equals the
last applied ``seq``). A gap or a crossed book makes the book invalid: one ``FeedStatus``
``invalid`` then ``resyncing`` is emitted, the book is never published while invalid, and the
session queues ``unsubscribe`` + ``subscribe`` of that book (the server answers every subscribe
with a fresh snapshot). The next snapshot makes it valid again (``FeedStatus`` ``valid``).

Replay: a session whose plan has no subscriptions (``arbd replay`` with a capture) accepts data
for every symbol in ``adapter.instruments`` (or, when none were loaded, any ``BASE-QUOTE``
symbol, mapped mechanically) on every channel, and still builds and checks books.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

import msgspec

from arbd.errors import ProtocolError, RestError
from arbd.exchange.adapter import (
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSession,
    ExchangeSpec,
    HttpRequest,
    HttpResponse,
    Instrument,
    Keepalive,
)
from arbd.exchange.book import OrderBook, book_status
from arbd.exchange.symbols import check_symbols, normalize
from arbd.model import CHANNELS, Candle, Event, FeedStatus, Level, Quote, Subscription, Trade

EXCHANGE: Final = "simplex"
CANDLE_INTERVAL: Final = "1m"
"""Simplex candles are one-minute bars (``start`` is minute-aligned)."""
_MAX_PENDING_REQUESTS: Final = 1000


# -- wire types -------------------------------------------------------------------------------


class _Frame(msgspec.Struct):
    """Every server frame, decoded by one reusable decoder.

    A single permissive struct rather than a tagged union: control frames are keyed by ``op``,
    data frames by ``ch``, and msgspec unions need one tag field. Unknown fields are ignored;
    a field of the wrong type is a ``msgspec.ValidationError`` (the driver counts and skips it).
    """

    op: str | None = None
    ch: str | None = None
    s: str | None = None
    type: str | None = None
    seq: int | None = None
    prev: int | None = None
    ts: int | None = None
    id: int | str | None = None
    args: list[str] | None = None
    code: str | None = None
    msg: str | None = None
    # price
    b: str | None = None
    bid_size: str | None = msgspec.field(default=None, name="B")
    a: str | None = None
    ask_size: str | None = msgspec.field(default=None, name="A")
    # trades
    p: str | None = None
    q: str | None = None
    side: str | None = None
    # book
    bids: list[Level] | None = None
    asks: list[Level] | None = None
    # candles
    start: int | None = None
    o: str | None = None
    h: str | None = None
    l: str | None = None  # noqa: E741 - the wire name
    c: str | None = None
    v: str | None = None
    closed: bool | None = None


class _Request(msgspec.Struct):
    op: str
    args: list[str]
    id: int


class _Ping(msgspec.Struct):
    op: str
    ts: int


class _WireInstrument(msgspec.Struct):
    symbol: str
    base: str
    quote: str
    tick: str
    lot: str


class _Instruments(msgspec.Struct):
    instruments: list[_WireInstrument]


_decode_frame = msgspec.json.Decoder(_Frame).decode
_decode_instruments = msgspec.json.Decoder(_Instruments).decode
_encode = msgspec.json.Encoder().encode


def _precision(step: str) -> int:
    """Decimal places of a tick or lot size: "0.01" -> 2, "0.50" -> 1, "1" -> 0, "10" -> 0."""
    try:
        exponent = Decimal(step).normalize().as_tuple().exponent
    except InvalidOperation:
        raise ProtocolError(f"simplex: bad step size {step!r}") from None
    return max(0, -exponent) if isinstance(exponent, int) else 0


def native_symbol(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC-USDT`` (the protocol's rule; instruments may say otherwise)."""
    return symbol.replace("/", "-")


# -- adapter ----------------------------------------------------------------------------------


class SimplexAdapter(ExchangeAdapter):
    """The simplex test exchange. REST instruments, one WebSocket per 50 streams.

    ``GET {rest_url}/api/instruments`` answers::

        {"instruments":[{"symbol":"BTC-USDT","base":"BTC","quote":"USDT","tick":"0.01",
                         "lot":"0.0001"}]}
    """

    spec = ExchangeSpec(
        id=EXCHANGE,
        name="Simplex (test exchange)",
        ws_url="ws://127.0.0.1:1/ws",
        rest_url="http://127.0.0.1:1",
        channels=("price", "trades", "book", "candles"),
        continuous_channels=("price", "book"),
        max_streams_per_connection=50,
        max_outgoing_per_second=50.0,
        keepalive=Keepalive(
            protocol_ping_interval=20.0,
            pong_timeout=10.0,
            app_ping_interval=15.0,
            idle_timeout=60.0,
        ),
        rotate_after=None,
        stale_action="resubscribe",
        taker_fee_pct=0.1,
        maker_fee_pct=0.1,
        default_symbols=("BTC/USDT", "ETH/USDT"),
        enabled_by_default=False,
    )

    def instrument_requests(self) -> list[HttpRequest]:
        url = f"{self.settings.rest_url.rstrip('/')}/api/instruments"
        return [HttpRequest(url=url, purpose="instruments")]

    def load_instruments(self, responses: Sequence[HttpResponse]) -> None:
        """Fill ``instruments`` from the ``/api/instruments`` answer.

        Raises ``RestError`` for a missing or non-200 answer, ``ProtocolError`` for a body that
        does not parse, ``ConfigError`` for a configured symbol the exchange does not list.
        """
        response = next((r for r in responses if r.request.purpose == "instruments"), None)
        if response is None:
            raise RestError("simplex: no answer to GET /api/instruments")
        if response.status != 200:
            raise RestError(
                f"simplex: GET /api/instruments answered HTTP {response.status}", response.status
            )
        try:
            document = _decode_instruments(response.body)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"simplex: bad /api/instruments document: {exc}") from None
        instruments: dict[str, Instrument] = {}
        for item in document.instruments:
            symbol = normalize(item.base, item.quote)
            instruments[symbol] = Instrument(
                symbol=symbol,
                native=item.symbol,
                base=item.base.upper(),
                quote=item.quote.upper(),
                tick_size=item.tick,
                lot_size=item.lot,
                price_precision=_precision(item.tick),
                size_precision=_precision(item.lot),
            )
        check_symbols(EXCHANGE, self.settings.symbols, instruments)
        self.instruments = instruments

    def native(self, symbol: str) -> str:
        instrument = self.instruments.get(symbol)
        return instrument.native if instrument is not None else native_symbol(symbol)

    def new_session(self, plan: ConnectionPlan) -> SimplexSession:
        return SimplexSession(self, plan)


# -- session ----------------------------------------------------------------------------------

_BookPhase = Literal["pending", "valid", "resyncing"]


class _BookState:
    """One symbol's book and where it stands.

    ``pending``: no snapshot yet (deltas are ignored: the subscribe's snapshot is on its way).
    ``valid``: chained and uncrossed; published on every change.
    ``resyncing``: broken or being resubscribed; deltas ignored until the next snapshot.
    ``announced``: an ``invalid``/``resyncing`` status went out, so recovery announces ``valid``.
    """

    __slots__ = ("announced", "book", "native", "phase", "symbol")

    def __init__(self, native: str, symbol: str) -> None:
        self.native = native
        self.symbol = symbol
        self.book = OrderBook()
        self.phase: _BookPhase = "pending"
        self.announced = False


class SimplexSession(ExchangeSession):
    """One simplex WebSocket connection. Call order as in ``arbd.exchange.adapter``.

    Frames it sends (text, JSON)::

        {"op":"subscribe","args":["trades:BTC-USDT","book:BTC-USDT"],"id":1}
        {"op":"unsubscribe","args":["book:BTC-USDT"],"id":2}
        {"op":"ping","ts":1700000000000}

    Frames it understands::

        {"op":"subscribed","args":["trades:BTC-USDT"],"id":1}
        {"op":"error","code":"bad_symbol","msg":"unknown symbol FOO-BAR","id":1}
        {"op":"pong","ts":1700000000000}
        {"op":"shutdown","msg":"server restarting"}
        {"ch":"price","s":"BTC-USDT","seq":41,"ts":1700000000123,"b":"64000.10","B":"0.5",
         "a":"64000.20","A":"1.25"}
        {"ch":"trades","s":"BTC-USDT","seq":7,"ts":1700000000124,"p":"64000.15","q":"0.010",
         "side":"buy","id":"7"}
        {"ch":"book","s":"BTC-USDT","type":"snapshot","seq":100,"ts":1700000000125,
         "bids":[["64000.10","0.5"]],"asks":[["64000.20","1.25"]]}
        {"ch":"book","s":"BTC-USDT","type":"delta","seq":101,"prev":100,"ts":1700000000126,
         "bids":[["64000.10","0"]],"asks":[]}
        {"ch":"candles","s":"BTC-USDT","ts":1700000000127,"start":1699999980000,"o":"1",
         "h":"2","l":"0.5","c":"1.5","v":"10","closed":false}
    """

    adapter: SimplexAdapter

    def __init__(self, adapter: SimplexAdapter, plan: ConnectionPlan) -> None:
        super().__init__(adapter, plan)
        self._exchange = adapter.spec.id
        self._depth = adapter.settings.book_depth
        self._next_id = 1
        self._books: dict[str, _BookState] = {}
        self._requests: dict[int, tuple[str, list[str]]] = {}
        """Request id -> (op, args) until acknowledged, so an error frame can name them."""
        self.acknowledged: set[str] = set()
        """``channel:NATIVE`` args the server confirmed as subscribed."""
        self.last_pong_ts: int | None = None
        # native -> normalized for accepted symbols; (channel, native) pairs this session wants.
        self._symbols: dict[str, str] = {}
        self._wanted: set[tuple[str, str]] | None
        self._any_symbol = False
        if plan.subscriptions:
            self._wanted = set()
            for sub in plan.subscriptions:
                native = adapter.native(sub.symbol)
                self._symbols[native] = sub.symbol
                self._wanted.add((sub.channel, native))
        else:
            # Replay: everything the exchange lists (mechanical mapping if nothing was loaded).
            self._wanted = None
            self._symbols = {i.native: i.symbol for i in adapter.instruments.values()}
            self._any_symbol = not self._symbols

    # -- driver-facing ----------------------------------------------------------------------

    def start(self, now_ns: int) -> None:
        """Queue one subscribe frame carrying every subscription of the plan."""
        native = self.adapter.native
        args = [f"{sub.channel}:{native(sub.symbol)}" for sub in self.plan.subscriptions]
        if args:
            self._request("subscribe", args)

    def resubscribe(self, subscriptions: Sequence[Subscription], now_ns: int) -> None:
        """Unsubscribe and subscribe again; books among them wait for their fresh snapshot."""
        args = [f"{sub.channel}:{self.adapter.native(sub.symbol)}" for sub in subscriptions]
        if not args:
            return
        for sub in subscriptions:
            if sub.channel == "book":
                state = self._books.get(self.adapter.native(sub.symbol))
                if state is not None:
                    if state.phase == "valid":  # not served until the new snapshot
                        state.announced = True
                        self.announce_resubscribing(state.symbol, now_ns)
                    state.phase = "resyncing"
                    state.book.clear()
        self._request("unsubscribe", args)
        self._request("subscribe", args)

    def keepalive(self, now_ns: int) -> None:
        """Queue the app-level ping ``{"op":"ping","ts":<ms>}``; the server echoes ``ts``."""
        self.send(_encode(_Ping(op="ping", ts=now_ns // 1_000_000)).decode())

    def receive(self, data: bytes, is_text: bool, received_ns: int, out: list[Event]) -> None:
        """Handle one message. Raises (``msgspec.DecodeError``, ``ProtocolError``) on garbage."""
        frame = _decode_frame(data)
        if frame.ch is not None:
            self._on_data(frame, received_ns, out)
            return
        op = frame.op
        if op in {"subscribed", "unsubscribed"}:
            self._on_ack(frame)
        elif op == "pong":
            self.last_pong_ts = frame.ts
        elif op == "error":
            self._on_error(frame)
        elif op == "shutdown":
            self.reconnect_reason = "server shutdown"
            self.notices.append(f"server announced shutdown: {frame.msg or ''}".rstrip())
        else:
            self.stats.ignored += 1

    # -- control frames ---------------------------------------------------------------------

    def _request(self, op: str, args: list[str]) -> None:
        request_id = self._next_id
        self._next_id += 1
        if len(self._requests) >= _MAX_PENDING_REQUESTS:  # a server that never acks
            del self._requests[next(iter(self._requests))]
        self._requests[request_id] = (op, args)
        self.send(_encode(_Request(op=op, args=args, id=request_id)).decode())

    def _on_ack(self, frame: _Frame) -> None:
        args = frame.args or []
        if isinstance(frame.id, int):
            request = self._requests.pop(frame.id, None)
            if request is not None:
                # A partial ack: an error for the rest follows with the same id.
                rest = [a for a in request[1] if a not in args]
                if rest:
                    self._requests[frame.id] = (request[0], rest)
        if frame.op == "subscribed":
            self.acknowledged.update(args)
        else:
            self.acknowledged.difference_update(args)

    def _on_error(self, frame: _Frame) -> None:
        self.stats.errors_reported += 1
        line = f"error {frame.code or '?'}: {frame.msg or ''}".rstrip()
        request = self._requests.pop(frame.id, None) if isinstance(frame.id, int) else None
        if request is not None:
            op, args = request
            line += f" (request {frame.id}: {op} {','.join(args)})"
            if op == "subscribe" and frame.code in ("bad_symbol", "bad_channel"):
                self._refuse(args, frame.msg or frame.code)
        self.notices.append(line)

    def _refuse(self, args: list[str], reason: str) -> None:
        """The error names the offending stream's channel or symbol: refuse those streams."""
        for arg in args:
            channel, _, native = arg.partition(":")
            symbol = self._symbols.get(native)
            if symbol is not None and (native in reason.split() or channel in reason.split()):
                self.refuse(Subscription(channel, symbol), reason)

    # -- data frames ------------------------------------------------------------------------

    def _symbol(self, channel: str, native: str) -> str | None:
        """The normalized symbol if this session takes (channel, native), else None."""
        wanted = self._wanted
        if wanted is not None:
            return self._symbols[native] if (channel, native) in wanted else None
        if channel not in CHANNELS:
            return None
        symbol = self._symbols.get(native)
        if symbol is None and self._any_symbol:
            base, sep, quote = native.partition("-")
            if sep and base and quote:
                symbol = self._symbols[native] = normalize(base, quote)
        return symbol

    def _on_data(self, f: _Frame, received_ns: int, out: list[Event]) -> None:
        channel, native = f.ch, f.s
        if native is None or channel is None:
            raise ProtocolError("simplex: data frame without a symbol")
        symbol = self._symbol(channel, native)
        if symbol is None:
            self.stats.ignored += 1
            return
        ts = f.ts
        timestamp = ts if ts is not None else received_ns // 1_000_000
        if channel == "price":
            if f.b is None or f.a is None or f.bid_size is None or f.ask_size is None:
                raise ProtocolError(f"simplex: price frame for {native} lacks b/B/a/A")
            out.append(
                Quote(
                    exchange=self._exchange,
                    symbol=symbol,
                    bid=f.b,
                    ask=f.a,
                    bid_size=f.bid_size,
                    ask_size=f.ask_size,
                    timestamp=timestamp,
                    exchange_time=ts,
                    received_ns=received_ns,
                    sequence=f.seq,
                )
            )
        elif channel == "trades":
            if f.p is None or f.q is None:
                raise ProtocolError(f"simplex: trade frame for {native} lacks p/q")
            side = f.side
            out.append(
                Trade(
                    exchange=self._exchange,
                    symbol=symbol,
                    price=f.p,
                    size=f.q,
                    side="buy" if side == "buy" else "sell" if side == "sell" else None,
                    id=None if f.id is None else str(f.id),
                    timestamp=timestamp,
                    exchange_time=ts,
                    received_ns=received_ns,
                    sequence=f.seq,
                )
            )
        elif channel == "book":
            state = self._books.get(native)
            if state is None:
                state = self._books[native] = _BookState(native, symbol)
            self._on_book(f, state, received_ns, out)
        else:  # candles (_symbol admits only known channels)
            if (
                f.start is None
                or f.o is None
                or f.h is None
                or f.l is None
                or f.c is None
                or f.v is None
                or f.closed is None
            ):
                raise ProtocolError(f"simplex: candle frame for {native} lacks a field")
            out.append(
                Candle(
                    exchange=self._exchange,
                    symbol=symbol,
                    interval=CANDLE_INTERVAL,
                    start=f.start,
                    open=f.o,
                    high=f.h,
                    low=f.l,
                    close=f.c,
                    volume=f.v,
                    closed=f.closed,
                    timestamp=timestamp,
                    exchange_time=ts,
                    received_ns=received_ns,
                )
            )

    def _on_book(self, f: _Frame, state: _BookState, received_ns: int, out: list[Event]) -> None:
        seq = f.seq
        if seq is None:
            raise ProtocolError(f"simplex: book frame for {state.native} without seq")
        book = state.book
        kind = f.type
        if kind == "snapshot":
            book.replace(f.bids or (), f.asks or (), seq)
            if book.is_crossed():
                self.stats.crossed_books += 1
                self._invalidate(state, "crossed book in snapshot", received_ns, out)
                return
            state.phase = "valid"
            if state.announced:
                state.announced = False
                out.append(self._status(state, "valid", "snapshot received", received_ns))
        elif kind == "delta":
            if state.phase != "valid":
                return  # a snapshot is on its way; deltas before it cannot apply
            if f.prev != book.sequence:
                self.stats.sequence_gaps += 1
                reason = f"sequence gap: delta prev {f.prev} after seq {book.sequence}"
                self._invalidate(state, reason, received_ns, out)
                return
            book.apply(f.bids or (), f.asks or (), seq)
            if book.is_crossed():
                self.stats.crossed_books += 1
                self._invalidate(state, "crossed book", received_ns, out)
                return
        else:
            self.stats.ignored += 1
            return
        out.append(
            book.event(
                self._exchange,
                state.symbol,
                self._depth,
                received_ns=received_ns,
                exchange_time=f.ts,
                sequence=seq,
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
        arg = [f"book:{state.native}"]
        self._request("unsubscribe", arg)
        self._request("subscribe", arg)

    def _status(self, book: _BookState, state: str, reason: str, received_ns: int) -> FeedStatus:
        return book_status(self._exchange, book.symbol, state, reason, received_ns)
