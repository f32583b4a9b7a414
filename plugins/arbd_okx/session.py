"""One OKX v5 WebSocket connection, Sans-I/O (see ``arbd.exchange.adapter`` for the call order).

Frames it sends (text)::

    {"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}],"id":"1"}
    {"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT"}],"id":"2"}
    ping                                      (the keepalive: a text frame, not JSON)

Frames it understands (exchange-protocols.md §5)::

    pong
    {"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"accb8e21"}
    {"event":"unsubscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"d0b44253"}
    {"id":"1512","event":"error","code":"60012","msg":"Invalid request: ...","connId":"a4d3ae55"}
    {"event":"notice","code":"64008","msg":"The connection will soon be closed ...", ...}
    {"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["111.06","55154","0",
      "2"]],"bids":[["111.05","57745","0","2"]],"ts":"1670324386802","seqId":363996337}]}
    {"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":
      "130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897", ...}]}
    {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot"|"update","data":[{"asks":
      [...],"bids":[...],"ts":"1597026383085","checksum":0,"prevSeqId":-1,"seqId":123456}]}
    {"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1597026383085","8533.02",
      "8553.74","8527.17","8548.26","45247","529.58","5529.58","0"]]}

Anything else that parses (other events, channels or symbols) is counted in ``stats.ignored``.
Error events become notices and ``stats.errors_reported``; a subscribe refused with code 60018
("wrong URL or channel:<channel>,instId:<instId> doesn't exist") also refuses the subscription
it names for good (``refuse``). The service-upgrade notice (code 64008, sent 60 s before OKX
closes the connection) asks the driver for a reconnect. Book integrity lives in
:mod:`arbd_okx.books`.

Trades: ``side`` is the taker side; ``sequence`` is the numeric ``tradeId``. Quotes: ``sequence``
is the ``bbo-tbt`` ``seqId``. Candles (``confirm == "1"`` means closed) carry no event time, so
their ``timestamp`` is the receive time and ``start`` the bar's open time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple, cast

import msgspec

from arbd.exchange.adapter import (
    ConnectionPlan,
    ExchangeSession,
    HttpRequest,
    HttpResponse,
    leading_key,
)
from arbd.exchange.book import decode_levels
from arbd.exchange.symbols import normalize
from arbd.model import Candle, Event, Quote, Subscription, Trade
from arbd_okx import wire
from arbd_okx.books import BookState, BookSync

if TYPE_CHECKING:
    from arbd_okx.adapter import OkxAdapter

CHANNELS: Final = {"price": "bbo-tbt", "trades": "trades", "book": "books", "candles": "candle1m"}
"""Normalized channel -> the OKX channel that serves it."""
_FROM_OKX: Final = {okx: ours for ours, okx in CHANNELS.items()}
CANDLE_INTERVAL: Final = "1m"
REFUSAL_CODE: Final = "60018"
"""``Subscribe failed, wrong URL or channel:candle1m,instId:BTC-USDT doesn't exist. ...``: the
arg is not served (here). Other codes (60012 invalid request, rate limits, ...) refuse nothing."""
_NAMED_ARG: Final = re.compile(r"channel:(?P<channel>[^,\s]+),instId:(?P<instId>[^\s,]+)")
_MAX_PENDING_REQUESTS: Final = 1000
_MAX_PUSH_ROUTES: Final = 10_000


_Handler = Callable[["_PushRoute", wire.Push, int, list[Event]], None]
"""A channel's handler: (route, decoded push, receive time, out)."""


class _PushRoute(NamedTuple):
    """How a push of one (OKX channel, instId) that this session takes is handled."""

    decode: Callable[[bytes], wire.Push]
    """The typed decoder of the whole frame."""
    handle: _Handler
    """The session's handler for the channel."""
    native: str
    symbol: str


class OkxSession(ExchangeSession):
    """One OKX connection (public or business endpoint). See the module docstring."""

    adapter: OkxAdapter

    def __init__(self, adapter: OkxAdapter, plan: ConnectionPlan) -> None:
        super().__init__(adapter, plan)
        self._exchange = adapter.spec.id
        self._next_id = 1
        self._requests: dict[str, tuple[str, list[wire.Arg]]] = {}
        """Request id -> (op, args not answered yet), so an error event can name what it
        refused. OKX answers each arg on its own (an ack or an error, with the request's id)."""
        self.acknowledged: set[tuple[str, str]] = set()
        """(OKX channel, instId) pairs the server confirmed as subscribed."""
        self.last_pong_ns: int | None = None
        self._last_ns = 0
        self.books = BookSync(self)
        self._symbols: dict[str, str] = {}
        self._push_routes: dict[bytes, _PushRoute | None] = {}
        self._handlers: dict[str, _Handler] = {
            "books": self._emit_books,
            "bbo-tbt": self._emit_quotes,
            "trades": self._emit_trades,
            "candle1m": self._emit_candles,
        }
        self._wanted: set[tuple[str, str]] | None
        self._any_symbol = False
        if plan.subscriptions:
            self._wanted = set()
            for sub in plan.subscriptions:
                channel = CHANNELS.get(sub.channel)
                if channel is None:
                    continue
                native = adapter.native(sub.symbol)
                self._symbols[native] = sub.symbol
                self._wanted.add((channel, native))
                if channel == "books":
                    self.books.states[native] = BookState(native, sub.symbol, "subscribing")
        else:
            # Replay: every listed instrument (mechanical BASE-QUOTE mapping if none loaded).
            self._wanted = None
            self._symbols = {i.native: i.symbol for i in adapter.instruments.values()}
            self._any_symbol = not self._symbols

    # -- driver-facing ----------------------------------------------------------------------

    def start(self, now_ns: int) -> None:
        """Queue one subscribe frame carrying every subscription of the plan."""
        args = self._args(self.plan.subscriptions)
        if args:
            self.send_request("subscribe", args)

    def resubscribe(self, subscriptions: Sequence[Subscription], now_ns: int) -> None:
        """Unsubscribe and subscribe again; books among them start over after the new ack."""
        args = self._args(subscriptions)
        if not args:
            return
        for arg in args:
            if arg.channel == "books":
                self.books.resubscribing(arg.instId, now_ns)
        self.send_request("unsubscribe", args)
        self.send_request("subscribe", args)

    def keepalive(self, now_ns: int) -> None:
        """Queue the text frame ``ping`` (not JSON); OKX answers with the text ``pong``."""
        self.send("ping")

    def receive(self, data: bytes, is_text: bool, received_ns: int, out: list[Event]) -> None:
        """Handle one message. Raises (``msgspec`` errors, ``ProtocolError``...) on garbage."""
        self._last_ns = received_ns
        key = leading_key(data, wire.PUSH_PREFIX, b"}")
        if key is not None:
            # The common case, a data push: its arg (up to the closing brace) names the
            # channel and instrument, so the whole frame is decoded once, typed, and handed
            # to its channel's handler without a second look. The arg's bytes are the cache key.
            try:
                route = self._push_routes[key]
            except KeyError:
                route = self._push_route(key)
            if route is not None:
                try:
                    push = route.decode(data)
                except msgspec.ValidationError:
                    push = None  # not this shape after all: the general path explains why
                if push is not None and push.event is None:
                    route.handle(route, push, received_ns, out)
                    return
        elif data == b"pong":
            self.last_pong_ns = received_ns
            return
        frame = wire.decode_frame(data)
        if frame.event is not None:
            self._on_event(frame)
            return
        arg = frame.arg
        if arg is None or not len(frame.data):
            self.stats.ignored += 1
            return
        self._on_push(frame, arg, received_ns, out)

    def on_http(self, response: HttpResponse, out: list[Event]) -> None:
        """A REST book snapshot (the no-snapshot bootstrap); stale answers are dropped."""
        self._last_ns = max(self._last_ns, response.received_ns)
        self.books.on_http(response, out)

    def on_http_failed(self, request: HttpRequest, reason: str, out: list[Event]) -> None:
        self.books.on_http_failed(request, reason, self._last_ns, out)

    def waiting(self, subscription: Subscription) -> bool:
        """A book bootstrapping from REST (no-snapshot mode): updates are buffered while its
        snapshot request is queued or in flight, so the watchdog must not take it for stale.
        A failed or exhausted bootstrap leaves ``bootstrapping``, ending the wait."""
        if subscription.channel != "book":
            return False
        state = self.books.states.get(self.adapter.native(subscription.symbol))
        return state is not None and state.phase == "bootstrapping"

    # -- control frames ---------------------------------------------------------------------

    def send_request(self, op: str, args: list[wire.Arg]) -> None:
        """Queue ``{"op":op,"args":[...],"id":"N"}``; the id lets an error name the request."""
        request_id = str(self._next_id)
        self._next_id += 1
        if len(self._requests) >= _MAX_PENDING_REQUESTS:  # ids OKX never referred to again
            del self._requests[next(iter(self._requests))]
        self._requests[request_id] = (op, args)
        self.send(wire.encode(wire.Subscribe(op=op, args=args, id=request_id)).decode())

    def _args(self, subscriptions: Sequence[Subscription]) -> list[wire.Arg]:
        native = self.adapter.native
        return [
            wire.Arg(channel=CHANNELS[sub.channel], instId=native(sub.symbol))
            for sub in subscriptions
            if sub.channel in CHANNELS
        ]

    def _on_event(self, frame: wire.Frame) -> None:
        event, arg = frame.event, frame.arg
        if event == "subscribe" and arg is not None:
            self._answered(frame.id, arg)
            self.acknowledged.add((arg.channel, arg.instId))
            if arg.channel == "books":
                self.books.acknowledged(arg.instId)
        elif event == "unsubscribe" and arg is not None:
            self._answered(frame.id, arg)
            self.acknowledged.discard((arg.channel, arg.instId))
        elif event == "error":
            self._on_error(frame)
        elif event == "notice":
            self.notices.append(f"notice {frame.code or '?'}: {frame.msg or ''}".rstrip())
            if str(frame.code) == "64008":  # "closed soon for a service upgrade. Please reconnect."
                self.reconnect_reason = "service upgrade announced (64008)"
        else:
            self.stats.ignored += 1

    def _answered(self, request_id: str | None, arg: wire.Arg) -> None:
        """One arg of a request was answered: forget it, keep the request for the others (an
        ack for part of a request must not lose the rest before their errors arrive)."""
        if request_id is None or (request := self._requests.get(request_id)) is None:
            return
        op, args = request
        rest = [a for a in args if a != arg]
        if rest:
            self._requests[request_id] = (op, rest)
        else:
            del self._requests[request_id]

    def _on_error(self, frame: wire.Frame) -> None:
        """A notice naming the request; a 60018 refusal of a subscribe also refuses its arg.

        A 60018 names its arg in the text (``channel:X,instId:Y``); only that arg of the
        request is answered by it. An error naming no arg (60012 and the like) answers the
        whole request.
        """
        self.stats.errors_reported += 1
        msg = frame.msg or ""
        line = f"error {frame.code or '?'}: {msg}".rstrip()
        match = _NAMED_ARG.search(msg)
        named = wire.Arg(channel=match["channel"], instId=match["instId"]) if match else None
        request_id = frame.id
        op: str | None
        if request_id is not None and (request := self._requests.get(request_id)) is not None:
            op, args = request
            names = ",".join(f"{a.channel}:{a.instId}" for a in args)
            line += f" (request {request_id}: {op} {names})"
            if named is not None and named in args:
                self._answered(request_id, named)
            else:
                named = None  # not about one arg of that request
                del self._requests[request_id]
        else:
            # No id (as in the captured frame) or one forgotten: the text says the op.
            op = "subscribe" if msg.startswith("Subscribe failed") else None
        if str(frame.code) == REFUSAL_CODE and op == "subscribe" and named is not None:
            channel = _FROM_OKX.get(named.channel)
            symbol = self._symbol(named.channel, named.instId)
            if channel is not None and symbol is not None:
                self.refuse(Subscription(channel, symbol), msg)
        self.notices.append(line)

    # -- pushes -----------------------------------------------------------------------------

    def _symbol(self, channel: str, native: str) -> str | None:
        """The normalized symbol if this session takes (OKX channel, instId), else None."""
        wanted = self._wanted
        if wanted is not None:
            return self._symbols[native] if (channel, native) in wanted else None
        if channel not in _FROM_OKX:
            return None
        symbol = self._symbols.get(native)
        if symbol is None and self._any_symbol:
            parts = native.split("-")
            if len(parts) == 2 and all(parts):
                symbol = self._symbols[native] = normalize(parts[0], parts[1])
        return symbol

    def _on_push(
        self, frame: wire.Frame, arg: wire.Arg, received_ns: int, out: list[Event]
    ) -> None:
        okx_channel = arg.channel
        push: wire.Push
        if okx_channel in ("books", "bbo-tbt"):
            push = wire.BooksPush(action=frame.action, data=wire.decode_books(frame.data))
        elif okx_channel == "trades":
            push = wire.TradesPush(data=wire.decode_trades(frame.data))
        elif okx_channel == "candle1m":
            push = wire.CandlesPush(data=wire.decode_candles(frame.data))
        else:
            self.stats.ignored += 1
            return
        route = self._route(okx_channel, arg.instId)
        if route is None:
            self.stats.ignored += 1
            return
        route.handle(route, push, received_ns, out)

    def _push_route(self, key: bytes) -> _PushRoute | None:
        """The route of a push whose arg reads ``key`` (``{"channel":..,"instId":..``), cached;
        None (also cached) when the general path must look at it."""
        route: _PushRoute | None = None
        try:
            arg = wire.decode_arg(key + b"}")
        except msgspec.MsgspecError:
            arg = None
        if arg is not None:
            route = self._route(arg.channel, arg.instId)
        if len(self._push_routes) < _MAX_PUSH_ROUTES:
            self._push_routes[key] = route
        return route

    def _route(self, okx_channel: str, native: str) -> _PushRoute | None:
        """How pushes of (OKX channel, instId) are handled, or None if this session does not
        take them."""
        handle = self._handlers.get(okx_channel)
        symbol = None if handle is None else self._symbol(okx_channel, native)
        if handle is None or symbol is None:
            return None
        return _PushRoute(wire.decode_push[okx_channel].decode, handle, native, symbol)

    # Handlers: one per channel, so the hot path makes no channel comparisons. Each takes the
    # route (native and normalized symbol) and the decoded push.

    def _emit_books(
        self, route: _PushRoute, push: wire.Push, received_ns: int, out: list[Event]
    ) -> None:
        books = cast("list[wire.BookData]", push.data)
        self.books.on_push(route.native, route.symbol, books, received_ns, out, action=push.action)

    def _emit_quotes(
        self, route: _PushRoute, push: wire.Push, received_ns: int, out: list[Event]
    ) -> None:
        for item in cast("list[wire.BookData]", push.data):
            bids, asks = decode_levels(item.bids), decode_levels(item.asks)
            if not bids or not asks:
                self.stats.ignored += 1  # one side empty: no quote to give
                continue
            bid, ask = bids[0], asks[0]
            ts = item.ts
            out.append(
                Quote(
                    exchange=self._exchange,
                    symbol=route.symbol,
                    bid=bid.price,
                    ask=ask.price,
                    bid_size=bid.size,
                    ask_size=ask.size,
                    timestamp=received_ns // 1_000_000 if ts is None else ts,
                    exchange_time=ts,
                    received_ns=received_ns,
                    sequence=item.seqId,
                )
            )

    def _emit_trades(
        self, route: _PushRoute, push: wire.Push, received_ns: int, out: list[Event]
    ) -> None:
        exchange, symbol = self._exchange, route.symbol
        for trade in cast("list[wire.TradeData]", push.data):
            ts, side, trade_id = trade.ts, trade.side, trade.tradeId
            try:
                sequence: int | None = int(trade_id)
            except ValueError:  # OKX's ids are digits; anything else is an id, not a sequence
                sequence = None
            out.append(
                Trade(
                    exchange=exchange,
                    symbol=symbol,
                    price=trade.px,
                    size=trade.sz,
                    side="buy" if side == "buy" else "sell" if side == "sell" else None,
                    id=trade_id,
                    timestamp=received_ns // 1_000_000 if ts is None else ts,
                    exchange_time=ts,
                    received_ns=received_ns,
                    sequence=sequence,
                )
            )

    def _emit_candles(
        self, route: _PushRoute, push: wire.Push, received_ns: int, out: list[Event]
    ) -> None:
        # Rows are [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm].
        exchange, symbol, received_ms = self._exchange, route.symbol, received_ns // 1_000_000
        out.extend(
            Candle(
                exchange=exchange,
                symbol=symbol,
                interval=CANDLE_INTERVAL,
                start=int(row[0]),
                open=row[1],
                high=row[2],
                low=row[3],
                close=row[4],
                volume=row[5],
                closed=row[8] == "1",
                timestamp=received_ms,
                received_ns=received_ns,
            )
            for row in cast("list[list[str]]", push.data)
        )
