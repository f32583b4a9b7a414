"""One Bybit v5 public spot WebSocket connection (Sans-I/O). See ``arbd_bybit.adapter``.

Book integrity (reference §4.3, §8.11): a ``snapshot`` (sent after every successful subscribe,
and re-sent by Bybit "if there is a problem on Bybit's end") replaces the book; so does any
message with ``u == 1`` (a snapshot after a service restart). A ``delta`` must carry
``u == last_u + 1``; anything else is a gap. A gap or a crossed/locked book makes the book
invalid: ``FeedStatus`` ``invalid`` then ``resyncing`` is emitted once, the book is never
published while invalid, and the session queues ``unsubscribe`` + ``subscribe`` of that topic
(Bybit answers a subscribe with a fresh snapshot; the unsubscribe first makes the subscribe a
new one rather than a repeat of a live topic). Deltas that arrive before the snapshot are
dropped silently. The next snapshot makes the book valid again (``FeedStatus`` ``valid``).

Replay: a session whose plan has no subscriptions accepts every known topic kind for every
instrument in ``adapter.instruments`` (``orderbook.1`` as price, deeper ``orderbook.N`` as book,
``publicTrade``, ``kline.1``). Without loaded instruments nothing can be mapped (Bybit symbols
carry no separator), so everything is ignored. A live session also takes a book topic of
another depth for a symbol whose book it wants (a capture recorded with another ``book_depth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from arbd.exchange.adapter import ConnectionPlan, ExchangeSession, leading_key
from arbd.exchange.book import OrderBook, book_status
from arbd.model import Candle, Event, FeedStatus, Quote, Subscription, Trade
from arbd_bybit.wire import (
    PUSH_PREFIX,
    BookPush,
    Envelope,
    KlinesPush,
    Ping,
    Push,
    Request,
    TradesPush,
    decode_book,
    decode_envelope,
    decode_klines,
    decode_push,
    decode_trades,
    encode,
)

if TYPE_CHECKING:
    from arbd_bybit.adapter import BybitAdapter

CANDLE_INTERVAL: Final = "1m"
MAX_ARGS_PER_REQUEST: Final = 10
"""Spot: at most 10 args per subscribe request (§4.5)."""
_MAX_PENDING_REQUESTS: Final = 1000
_PING: Final = encode(Ping()).decode()

_Phase = Literal["pending", "valid", "resyncing"]


class _Route:
    """One subscribed topic: where its data goes and, for order books, their state.

    ``phase`` (book and price topics): ``pending`` before the first snapshot, ``valid`` while
    chained and uncrossed, ``resyncing`` after a break until the next snapshot. ``announced``:
    an ``invalid`` status went out, so recovery announces ``valid``.
    """

    __slots__ = ("announced", "book", "channel", "depth", "phase", "symbol", "topic")

    def __init__(self, topic: str, channel: str, symbol: str, depth: int) -> None:
        self.topic = topic
        self.channel = channel
        self.symbol = symbol
        self.depth = depth
        """Levels the topic carries (order books); the book is truncated to this."""
        self.book = OrderBook()
        self.phase: _Phase = "pending"
        self.announced = False


def _parse_topic(topic: str) -> tuple[str, str, int] | None:
    """``orderbook.50.BTCUSDT`` -> ("book", "BTCUSDT", 50); None for topics arbd does not use."""
    kind, _, rest = topic.partition(".")
    if kind == "orderbook":
        depth, _, native = rest.partition(".")
        if not depth.isdigit() or not native:
            return None
        return ("price" if depth == "1" else "book"), native, int(depth)
    if kind == "publicTrade" and rest:
        return "trades", rest, 0
    if kind == "kline":
        interval, _, native = rest.partition(".")
        return ("candles", native, 0) if interval == "1" and native else None
    return None


def _named_topics(ret_msg: str) -> set[str]:
    """Topics a failure names: ``Invalid symbol :[a,b]`` or ``error:...,topic:a``."""
    if ret_msg.startswith("Invalid symbol"):
        inside = ret_msg.partition("[")[2].partition("]")[0]
        return {t.strip() for t in inside.split(",") if t.strip()}
    _, marker, topic = ret_msg.partition(",topic:")
    return {topic.strip()} if marker and topic.strip() else set()


class BybitSession(ExchangeSession):
    """One Bybit spot connection. Call order as in ``arbd.exchange.adapter``.

    Frames it sends (text JSON; at most 10 args each)::

        {"op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"],"req_id":"1"}
        {"op":"unsubscribe","args":["orderbook.50.BTCUSDT"],"req_id":"2"}
        {"op":"ping"}

    Frames it understands (reference §4.2-§4.4)::

        {"success":true,"ret_msg":"subscribe","conn_id":"2324d924-...","req_id":"10001",
         "op":"subscribe"}
        {"success":false,"ret_msg":"error:handler not found,topic:dcp.future","conn_id":"...",
         "req_id":"dcp.future","op":"subscribe"}
        {"success":true,"ret_msg":"pong","conn_id":"0970e817-...","op":"ping"}
        {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1687940967466,"data":{"s":"BTCUSDT",
         "b":[["30247.20","30.028"],["30240.00","0"]],"a":[["30248.70","0"],["30249.30","0.892"]],
         "u":177400507,"seq":66544703342},"cts":1687940967464}
        {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{
         "T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick",
         "i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,"seq":1783284617}]}
        {"topic":"kline.5.BTCUSDT","data":[{"start":1672324800000,"end":1672325099999,
         "interval":"5","open":"16649.5","close":"16677","high":"16677","low":"16608",
         "volume":"2.081","turnover":"34666.4005","confirm":false,"timestamp":1672324988882}],
         "ts":1672324988882,"type":"snapshot"}
    """

    adapter: BybitAdapter

    def __init__(self, adapter: BybitAdapter, plan: ConnectionPlan) -> None:
        super().__init__(adapter, plan)
        self._exchange = adapter.spec.id
        self._depth = adapter.book_depth
        self._next_id = 1
        self._requests: dict[str, tuple[str, list[str]]] = {}
        """req_id -> (op, args) until answered, so a failure can name what it was about."""
        self.acknowledged: set[str] = set()
        """Topics Bybit confirmed as subscribed (from acks of our own requests)."""
        self.pongs = 0
        self.last_pong_ns: int | None = None
        # Keyed by the topic's bytes as on the wire: the fast path makes no text per frame.
        self._routes: dict[bytes, _Route] = {}
        # native -> normalized for accepted symbols; (channel, native) pairs this session wants
        # (None: a replay session, which takes every listed instrument).
        self._symbols: dict[str, str] = {}
        self._wanted: set[tuple[str, str]] | None = None
        if plan.subscriptions:
            self._wanted = set()
            for sub in plan.subscriptions:
                topic = adapter.topic(sub)
                depth = 1 if sub.channel == "price" else adapter.book_topic_depth
                self._routes[topic.encode()] = _Route(topic, sub.channel, sub.symbol, depth)
                native = adapter.native(sub.symbol)
                self._symbols[native] = sub.symbol
                self._wanted.add((sub.channel, native))
        else:
            self._symbols = {i.native: i.symbol for i in adapter.instruments.values()}

    # -- driver-facing ----------------------------------------------------------------------

    def start(self, now_ns: int) -> None:
        """Queue subscribe frames (10 topics each) for every subscription of the plan."""
        topics = [self.adapter.topic(sub) for sub in self.plan.subscriptions]
        if topics:
            self._request("subscribe", topics)

    def resubscribe(self, subscriptions: Sequence[Subscription], now_ns: int) -> None:
        """Unsubscribe and subscribe again; books among them wait for their fresh snapshot."""
        topics = [self.adapter.topic(sub) for sub in subscriptions]
        if not topics:
            return
        for topic in topics:
            route = self._routes.get(topic.encode())
            if route is not None and route.channel == "book":
                if route.phase == "valid":  # it stops being served until the new snapshot
                    route.announced = True
                    self.announce_resubscribing(route.symbol, now_ns)
                route.phase = "resyncing"
                route.book.clear()
        self._request("unsubscribe", topics)
        self._request("subscribe", topics)

    def keepalive(self, now_ns: int) -> None:
        """Queue ``{"op":"ping"}``; Bybit answers ``{"success":true,"ret_msg":"pong",...}``."""
        self.send(_PING)

    def receive(self, data: bytes, is_text: bool, received_ns: int, out: list[Event]) -> None:
        """Handle one message. Raises ``msgspec.DecodeError`` (a ``ValidationError``) on garbage."""
        topic_key = leading_key(data, PUSH_PREFIX)
        if topic_key is not None:
            # The common case, a data push of a known topic: the whole frame is decoded once,
            # typed by the channel the topic routes to.
            route = self._routes.get(topic_key)
            if route is not None:
                try:
                    push = decode_push[route.channel].decode(data)
                except msgspec.ValidationError:
                    push = None  # not this shape after all: the general path explains why
                if push is not None:
                    self._on_push(push, route, received_ns, out)
                    return
        env = decode_envelope(data)
        topic = env.topic
        if topic is not None:
            route = self._route(topic)
            if route is None:
                self.stats.ignored += 1
                return
            kind, ts, channel = env.type, env.ts, route.channel
            general: Push
            if channel in ("book", "price"):
                general = BookPush(topic=topic, type=kind, ts=ts, data=decode_book(env.data))
            elif channel == "trades":
                general = TradesPush(topic=topic, type=kind, ts=ts, data=decode_trades(env.data))
            else:
                general = KlinesPush(topic=topic, type=kind, ts=ts, data=decode_klines(env.data))
            self._on_push(general, route, received_ns, out)
            return
        op = env.op or env.ret_msg
        if env.success is False:
            self._on_failure(env)
        elif op in {"subscribe", "unsubscribe"}:
            self._on_ack(env, op)
        elif op in {"ping", "pong"}:
            self.pongs += 1
            self.last_pong_ns = received_ns
        else:
            self.stats.ignored += 1

    # -- control frames ---------------------------------------------------------------------

    def _request(self, op: str, topics: list[str]) -> None:
        for i in range(0, len(topics), MAX_ARGS_PER_REQUEST):
            args = topics[i : i + MAX_ARGS_PER_REQUEST]
            req_id = str(self._next_id)
            self._next_id += 1
            if len(self._requests) >= _MAX_PENDING_REQUESTS:  # a server that never answers
                del self._requests[next(iter(self._requests))]
            self._requests[req_id] = (op, args)
            self.send(encode(Request(op=op, args=args, req_id=req_id)).decode())

    def _pop_request(self, env: Envelope) -> tuple[str, list[str]] | None:
        req_id = env.req_id
        return None if req_id is None else self._requests.pop(str(req_id), None)

    def _on_ack(self, env: Envelope, op: str) -> None:
        request = self._pop_request(env)
        if request is None:
            return
        if op == "subscribe":
            self.acknowledged.update(request[1])
        else:
            self.acknowledged.difference_update(request[1])

    def _on_failure(self, env: Envelope) -> None:
        """Report a refused request; for a subscribe, ask again for the topics it did not name.

        Bybit refuses a subscribe as a whole: one bad topic (``Invalid symbol :[topic]``,
        ``error:handler not found,topic:...``) leaves every other topic of that request
        unsubscribed too. So the others are requested again without the named ones (and, for
        ``Invalid symbol``, without every topic of that symbol); bounded, as each retry is
        strictly smaller. ``error:already subscribed,topic:X`` means X is live.

        The topics left out for ``Invalid symbol`` or ``handler not found`` (a symbol or a topic
        Bybit does not serve) are refused for good (``refuse``, with Bybit's ``ret_msg``), so
        the stale watchdog leaves them alone instead of recycling the connection over them.
        """
        self.stats.errors_reported += 1
        what = env.op or "request"
        reason = env.ret_msg or ""
        line = f"{what} failed: {reason or 'no reason given'}"
        request = self._pop_request(env)
        if request is not None:
            op, args = request
            line += f" (request {env.req_id}: {op} {','.join(args)})"
            named = _named_topics(reason) & set(args)
            if op == "subscribe" and named:
                if reason.startswith("error:already subscribed"):
                    self.acknowledged.update(named)
                elif reason.startswith("Invalid symbol"):
                    # The symbol is refused, so its other topics in the request would be too.
                    natives = {topic.rpartition(".")[2] for topic in named}
                    named.update(t for t in args if t.rpartition(".")[2] in natives)
                    self._refuse_topics(named, reason)
                elif reason.startswith("error:handler not found"):
                    self._refuse_topics(named, reason)
                rest = [topic for topic in args if topic not in named]
                if rest:
                    self._request("subscribe", rest)
        self.notices.append(line)

    def _refuse_topics(self, topics: set[str], reason: str) -> None:
        for topic in sorted(topics):
            route = self._route(topic)
            if route is not None:
                self.refuse(Subscription(route.channel, route.symbol), reason)

    # -- data frames ------------------------------------------------------------------------

    def _route(self, topic: str) -> _Route | None:
        """The route of a topic; topics outside the plan get one only if they serve it.

        Outside the plan but served: any topic in a replay session for a listed instrument, and
        a book topic of another depth than configured for a wanted book (a capture recorded
        with another ``book_depth``). Everything else is None (ignored).
        """
        key = topic.encode()
        route = self._routes.get(key)
        if route is not None:
            return route
        parsed = _parse_topic(topic)
        if parsed is None:
            return None
        channel, native, depth = parsed
        wanted = self._wanted
        if wanted is not None and (channel, native) not in wanted:
            return None
        symbol = self._symbols.get(native)
        if symbol is None:
            return None
        route = self._routes[key] = _Route(topic, channel, symbol, depth)
        return route

    def _on_push(self, push: Push, route: _Route, received_ns: int, out: list[Event]) -> None:
        ts = push.ts
        timestamp = ts if ts is not None else received_ns // 1_000_000
        if isinstance(push, BookPush):
            if route.channel == "book":
                self._on_book(push, route, received_ns, out)
            else:
                self._on_price(push, route, timestamp, received_ns, out)
        elif isinstance(push, TradesPush):
            self._on_trades(push, route, received_ns, out)
        elif isinstance(push, KlinesPush):
            self._on_klines(push, route, timestamp, received_ns, out)

    def _on_price(
        self, env: BookPush, route: _Route, timestamp: int, received_ns: int, out: list[Event]
    ) -> None:
        """``orderbook.1``: snapshot-only on spot (re-pushed every 3 s with the same ``u``).

        A delta, should one come, is applied to the one-level book. A one-sided or crossed
        top of book is not published (no ``Quote`` can say it); the next push replaces it.
        """
        data = env.data
        book = route.book
        if env.type == "delta" and data.u != 1:
            book.apply_raw(data.b, data.a, data.u)
        else:
            book.replace_raw(data.b, data.a, data.u)
        book.truncate(1)
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            self.stats.ignored += 1
            return
        if book.is_crossed():
            self.stats.crossed_books += 1
            return
        out.append(
            Quote(
                exchange=self._exchange,
                symbol=route.symbol,
                bid=bid[0],
                ask=ask[0],
                bid_size=bid[1],
                ask_size=ask[1],
                timestamp=timestamp,
                exchange_time=env.ts,
                received_ns=received_ns,
                sequence=data.u,
            )
        )

    def _on_trades(
        self, env: TradesPush, route: _Route, received_ns: int, out: list[Event]
    ) -> None:
        for t in env.data:
            trade_id = t.id if isinstance(t.id, str) else str(t.id)
            side = t.side
            out.append(
                Trade(
                    exchange=self._exchange,
                    symbol=route.symbol,
                    price=t.price,
                    size=t.size,
                    side="buy" if side == "Buy" else "sell" if side == "Sell" else None,
                    id=trade_id,
                    timestamp=t.time,
                    exchange_time=t.time,
                    received_ns=received_ns,
                    # Spot trade ids are decimal digits; other products use UUIDs.
                    sequence=int(trade_id) if trade_id.isascii() and trade_id.isdigit() else None,
                )
            )

    def _on_klines(
        self, env: KlinesPush, route: _Route, timestamp: int, received_ns: int, out: list[Event]
    ) -> None:
        for k in env.data:
            stated = k.timestamp if k.timestamp is not None else env.ts
            out.append(
                Candle(
                    exchange=self._exchange,
                    symbol=route.symbol,
                    interval=CANDLE_INTERVAL,
                    start=k.start,
                    open=k.open,
                    high=k.high,
                    low=k.low,
                    close=k.close,
                    volume=k.volume,
                    closed=k.confirm,
                    timestamp=stated if stated is not None else timestamp,
                    exchange_time=stated,
                    received_ns=received_ns,
                )
            )

    def _on_book(self, env: BookPush, route: _Route, received_ns: int, out: list[Event]) -> None:
        data = env.data
        u = data.u
        book = route.book
        kind = env.type
        if kind == "snapshot" or u == 1:  # u == 1: a snapshot after a service restart
            book.replace_raw(data.b, data.a, u)
            book.truncate(route.depth)
            if book.is_crossed():
                self.stats.crossed_books += 1
                self._invalidate(route, "crossed book in snapshot", received_ns, out)
                return
            route.phase = "valid"
            if route.announced:
                route.announced = False
                out.append(self._status(route, "valid", "snapshot received", received_ns))
        elif kind == "delta":
            if route.phase != "valid":
                return  # a snapshot is on its way; deltas before it cannot apply
            last = book.sequence
            if last is None or u != last + 1:
                self.stats.sequence_gaps += 1
                self._invalidate(
                    route, f"sequence gap: delta u {u} after u {last}", received_ns, out
                )
                return
            book.apply_raw(data.b, data.a, u)
            # Bybit deletes levels leaving the window; truncating guards against stale depth.
            book.truncate(route.depth)
            if book.is_crossed():
                self.stats.crossed_books += 1
                self._invalidate(route, "crossed book", received_ns, out)
                return
        else:
            self.stats.ignored += 1
            return
        out.append(
            book.event(
                self._exchange,
                route.symbol,
                self._depth,
                received_ns=received_ns,
                exchange_time=env.ts,
                sequence=u,
            )
        )

    def _invalidate(self, route: _Route, reason: str, received_ns: int, out: list[Event]) -> None:
        """Announce the book invalid, drop it, and resubscribe its topic for a fresh snapshot."""
        route.book.clear()
        route.phase = "resyncing"
        route.announced = True
        out.append(self._status(route, "invalid", reason, received_ns))
        out.append(self._status(route, "resyncing", reason, received_ns))
        self.stats.book_resyncs += 1
        self._request("unsubscribe", [route.topic])
        self._request("subscribe", [route.topic])

    def _status(self, route: _Route, state: str, reason: str, received_ns: int) -> FeedStatus:
        return book_status(self._exchange, route.symbol, state, reason, received_ns)
