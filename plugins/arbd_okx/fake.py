"""A fake OKX v5 exchange (public spot market data), after exchange-protocols.md §5.

One loopback port serves what the adapter talks to:

* ``/ws/v5/public``: ``books``, ``bbo-tbt``, ``trades``; ``/ws/v5/business``: ``candle1m``. A
  channel asked for on the other path is refused as OKX refuses it (code 60018). Other paths
  get a 404 handshake answer.
* ``GET /api/v5/public/instruments?instType=SPOT`` and ``GET /api/v5/market/books?instId=&sz=``.

Frames (real shapes, fields the adapter ignores included)::

    -> {"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}],"id":"1"}
    <- {"id":"1","event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},
       "connId":"9e3779b9"}
    <- {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":
       [["64000.1","0.01234","0","5"],...],"bids":[...],"ts":"1700000000000","checksum":0,
       "prevSeqId":-1,"seqId":1000}]}
    <- {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":
       [["64000.3","0","0","0"]],"bids":[...],"ts":"...","checksum":0,"prevSeqId":1000,"seqId":1004}]}
    <- {"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["64000.1","0.01234",
       "0","5"]],"bids":[["64000.0","0.2","0","3"]],"ts":"...","seqId":1004}]}
    <- {"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":
       "100001","px":"64000.1","sz":"0.005","side":"buy","ts":"...","count":"1","source":"0",
       "seqId":1004}]}
    <- {"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1700000000000","64000.0",
       "64000.2","63999.9","64000.1","0.015","960.0015","960.0015","0"]]}       (/business)
    -> ping                       <- pong                 (text frames, not JSON)
    <- {"event":"error","msg":"Subscribe failed, wrong URL or channel:candle1m,instId:BTC-USDT
       doesn't exist. Please use the correct URL, channel and parameters referring to API
       document.","code":"60018","connId":"9e3779b9"}        (a 2026-09 capture, on /public)
    <- {"event":"error","msg":"Invalid request: <the request>","code":"60012","connId":"..."}
    <- {"event":"notice","code":"64008","msg":"The connection will soon be closed for a service
       upgrade. Please reconnect.","connId":"..."}             (send_upgrade_notice)

Book rules as OKX's: sequence ids are per instrument and the same on every connection; each
update's ``prevSeqId`` is the ``seqId`` of the message before it (ids grow by varying steps, as
real ones do); a book unchanged for 60 market seconds gets an empty update with ``prevSeqId ==
seqId``; a maintenance reset (:meth:`OkxFake.reset_sequence`) sends ``seqId < prevSeqId``.
Sizes of ``"0"`` delete a level. ``checksum`` is the legacy CRC32 (signed) of the fake's own
book, top 25 levels interleaved ``bid:ask``, when ``checksum="crc"``; the default ``"zero"``
sends 0 as production has since 2026-06-23. ``ws_snapshot=False`` emulates OKX's announced
change: the first push is an empty snapshot to ignore, and the REST book carries ``seqId``.

Faults on top of :class:`~arbd.testing.marketfake.MarketFake`'s: ``skip_sequence`` loses one
update (the next one's ``prevSeqId`` shows the gap), ``corrupt_checksum`` sends one wrong
non-zero checksum, ``reject_symbol`` makes subscribes to a listed instrument fail with 60018,
``reset_sequence``, ``send_upgrade_notice`` and ``send_conn_count`` (an event the adapter does
not use). A connection that neither sent nor got anything for ``idle_timeout`` (30 s) is closed
with code 4004 "No data received in 30s.", as OKX does.

Guesses (no capture found): an unsubscribe refusal reads "Unsubscribe failed, ..."; every arg of
a request is judged on its own (good ones acked, each bad one an error); ``bbo-tbt`` and
``candle1m`` push their current state right after the ack (``trades`` only as trades happen).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final, Literal

import msgspec
import trio

from arbd.testing.connection import FakeConnection
from arbd.testing.fake import HttpAnswer
from arbd.testing.market import BookUpdate, Level
from arbd.testing.marketfake import (
    Bar,
    FakeMarket,
    Listing,
    MarketFake,
    Out,
    bar_close,
    listing,
)

PUBLIC_PATH: Final = "/ws/v5/public"
BUSINESS_PATH: Final = "/ws/v5/business"
CHANNELS: Final[dict[str, frozenset[str]]] = {
    PUBLIC_PATH: frozenset({"books", "bbo-tbt", "trades"}),
    BUSINESS_PATH: frozenset({"candle1m"}),
}
"""The channels each WebSocket path serves (the real ones carry many more)."""
BOOK_LEVELS: Final = 400
"""Depth of the ``books`` channel and the REST book's maximum ``sz``."""
CHECKSUM_LEVELS: Final = 25
BOOK_KEEPALIVE_AFTER: Final = 60.0
"""Market seconds without a book change after which OKX sends an empty update."""
CANDLE_EVERY: Final = 1.0
"""Market seconds between ``candle1m`` pushes (OKX: about one per second)."""
IDLE_CLOSE_REASON: Final = "No data received in 30s."
INST_TYPES: Final = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
NOT_FOUND: Final = (
    b'{"code":404,"data":{},"detailMsg":"","error_code":"404","error_message":"Not Found",'
    b'"msg":"Not Found"}'
)

OKX_DEFAULT_SYMBOLS: Final = (
    "BTC/USDT",
    "ETH/USDT",
    "SOL/USDT",
    "XRP/USDT",
    "BTC/USDC",
    "ETH/USDC",
)
"""Spot pairs OKX lists (no USD quotes: the global site has none)."""
OKX_LISTINGS: Final = (
    listing("BTC/USDT", tick="0.1", lot="0.00001"),
    listing("BTC/USDC", tick="0.1", lot="0.00001"),
)
"""OKX's own tick for BTC (0.1); the other listings keep the shared table's."""

ChecksumMode = Literal["zero", "crc"]

_encode = msgspec.json.Encoder().encode


class _Arg(msgspec.Struct):
    channel: str = ""
    instId: str = ""  # noqa: N815 - the wire name


class _Request(msgspec.Struct):
    op: str = ""
    args: list[_Arg] = []
    id: str | None = None


_decode_request = msgspec.json.Decoder(_Request).decode


def okx_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """OKX's legacy checksum: CRC32 of ``bid1px:bid1sz:ask1px:ask1sz:bid2px:...`` over the best
    25 levels per side (a side that runs out is skipped), as a signed 32-bit integer. Written
    here from the protocol text rather than imported from the adapter, so the two check each
    other."""
    parts: list[str] = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(bids):
            parts.extend(bids[i])
        if i < len(asks):
            parts.extend(asks[i])
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value & (1 << 31) else value


def _is_zero(size: str) -> bool:
    return not size.replace(".", "").strip("0")


def _level(price: str, size: str) -> list[str]:
    """``[px, sz, "0", orders]``: a deleted level is ``[px, "0", "0", "0"]``; the order count is
    made up from the size, so the same level always shows the same count."""
    if _is_zero(size):
        return [price, "0", "0", "0"]
    return [price, size, "0", str(1 + int(size.replace(".", "")) % 9)]


def _sorted(levels: Sequence[Level], *, descending: bool) -> list[list[str]]:
    ordered = sorted(levels, key=lambda level: Decimal(level[0]), reverse=descending)
    return [_level(price, size) for price, size in ordered]


def _conn_id(conn: FakeConnection) -> str:
    """An 8-hex-digit ``connId``, fixed per connection number (OKX's are random)."""
    return f"{(conn.id * 2654435769) & 0xFFFFFFFF:08x}"


class OkxFake(MarketFake):
    """The OKX fake. ``OkxFake()`` lists :data:`OKX_DEFAULT_SYMBOLS`; see the module docstring.

    Args:
        symbols: normalized symbols to list (default :data:`OKX_DEFAULT_SYMBOLS`).
        checksum: ``"zero"`` (production since 2026-06-23) or ``"crc"`` (the legacy CRC32).
        ws_snapshot: False: subscribing ``books`` gives an empty snapshot, then updates (OKX's
            announced no-snapshot mode; clients bootstrap from the REST book's ``seqId``).
        idle_timeout: close a connection silent both ways for this long (None: never).
        **options: :class:`~arbd.testing.marketfake.MarketFake`'s (``seed``, ``depth``,
            ``simulator``, ``offset_bps``, ``lag``, ``disconnect_after``, ``clock``...).
    """

    websocket_paths = (PUBLIC_PATH, BUSINESS_PATH)
    ws_path = PUBLIC_PATH
    checksums = True

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        checksum: ChecksumMode = "zero",
        ws_snapshot: bool = True,
        idle_timeout: float | None = 30.0,
        **options: Any,
    ) -> None:
        listings: tuple[Listing, ...] = (*OKX_LISTINGS, *options.pop("listings", ()))
        super().__init__(symbols, listings=listings, **options)
        self.checksum_mode: ChecksumMode = checksum
        self.ws_snapshot = ws_snapshot
        self.idle_timeout = idle_timeout
        self.rejected: set[str] = set()
        """Native symbols whose subscribes are refused (60018) although they are listed."""
        self.idle_closes = 0
        self.errors_sent = 0
        self._heard: dict[int, int] = {}
        """Connection number -> client messages received (the idle watchdog's input)."""
        # Per native symbol: the last bbo-tbt sent, market times of the last books and candle
        # pushes, quote turnover per candle start, pending maintenance resets.
        self._bbo: dict[str, tuple[Level, Level]] = {}
        self._book_at: dict[str, float] = {}
        self._candle_at: dict[str, float] = {}
        self._turnover: dict[str, dict[int, Decimal]] = {}
        self._reset_next: set[str] = set()

    def default_symbols(self) -> Sequence[str]:
        return OKX_DEFAULT_SYMBOLS

    # -- faults -----------------------------------------------------------------------------

    def reject_symbol(self, symbol: str) -> None:
        """Refuse later subscribes to ``symbol`` with OKX's 60018 error frame."""
        self.rejected.add(self.market(symbol).native)

    def reset_sequence(self, symbol: str) -> None:
        """The next book update of ``symbol`` restarts its ``seqId`` low (``seqId <
        prevSeqId``), as OKX's do during maintenance; later updates chain from there."""
        self._reset_next.add(self.market(symbol).native)

    def send_upgrade_notice(self, conn: FakeConnection) -> bool:
        """OKX's notice, sent 60 s before it closes a connection for a service upgrade."""
        msg = "The connection will soon be closed for a service upgrade. Please reconnect."
        return conn.send_text(self._event(conn, {"event": "notice", "code": "64008", "msg": msg}))

    def send_conn_count(self, conn: FakeConnection, channel: str = "books") -> bool:
        """A real OKX event the market-data adapter has no use for."""
        body = {"event": "channel-conn-count", "channel": channel, "connCount": "1"}
        return conn.send_text(self._event(conn, body))

    # -- connections ------------------------------------------------------------------------

    def on_connect(self, conn: FakeConnection) -> None:
        super().on_connect(conn)
        self._heard[conn.id] = 0
        if self.idle_timeout is not None:
            self.start_soon(self._close_when_idle, conn, self.idle_timeout)

    def on_disconnect(self, conn: FakeConnection) -> None:
        self._heard.pop(conn.id, None)

    async def _close_when_idle(self, conn: FakeConnection, quiet_for: float) -> None:
        """OKX closes a connection that has had no traffic for 30 s. Polls the traffic
        counters (a data frame sent, a client message) every ``quiet_for / 30``."""
        tick = quiet_for / 30
        seen = -1
        quiet_since = trio.current_time()
        while conn.open:
            traffic = conn.data_frames_sent + self._heard.get(conn.id, 0)
            if traffic != seen:
                seen, quiet_since = traffic, trio.current_time()
            elif trio.current_time() - quiet_since >= quiet_for:
                self.idle_closes += 1
                conn.close(4004, IDLE_CLOSE_REASON)
                self.notify()
                return
            await trio.sleep(tick)

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        self._heard[conn.id] = self._heard.get(conn.id, 0) + 1
        text = message if isinstance(message, str) else message.decode(errors="replace")
        if text == "ping":
            conn.send_text("pong")
            return
        try:
            request = _decode_request(text)
        except msgspec.DecodeError:
            self._error(conn, "60012", f"Invalid request: {text}", None)
            return
        if request.op not in ("subscribe", "unsubscribe") or not request.args:
            self._error(conn, "60012", f"Invalid request: {text}", request.id)
            return
        for arg in request.args:
            self._one_arg(conn, request.op, arg, request.id)

    def _one_arg(self, conn: FakeConnection, op: str, arg: _Arg, request_id: str | None) -> None:
        channel, native = arg.channel, arg.instId
        market = self.markets.get(native)
        if (
            channel not in CHANNELS.get(conn.path, frozenset())
            or market is None
            or native in self.rejected
        ):
            msg = (
                f"{op.capitalize()} failed, wrong URL or channel:{channel},instId:{native} "
                "doesn't exist. Please use the correct URL, channel and parameters referring to "
                "API document."
            )
            self._error(conn, "60018", msg, request_id)
            return
        topic = f"{channel}:{native}"
        body: dict[str, Any] = {"event": op, "arg": {"channel": channel, "instId": native}}
        if request_id is not None:
            body = {"id": request_id, **body}
        conn.send_text(self._event(conn, body))
        if op == "unsubscribe":
            conn.subscriptions.discard(topic)
            return
        conn.subscriptions.add(topic)
        # What OKX pushes right after the ack: the book snapshot, and the current state of
        # the snapshot-style channels (bbo-tbt, candles); trades only come as they happen.
        if channel == "books":
            conn.send_data(self.snapshot_frame(market))
        elif channel == "bbo-tbt":
            conn.send_data(self._bbo_frame(market, self.clock()))
        elif channel == "candle1m":
            bar = market.bar
            if bar is None:  # nothing traded yet: a flat bar at the mid
                ts = self.clock()
                mid = bar_close(None, market.book)
                bar = Bar(ts - ts % self.candle_interval_ms, mid, mid, mid, mid)
            conn.send_data(self._candle(market, bar, self._turnover.get(native, {})))

    def _error(self, conn: FakeConnection, code: str, msg: str, request_id: str | None) -> None:
        body: dict[str, Any] = {"event": "error", "msg": msg, "code": code}
        if request_id is not None:
            body = {"id": request_id, **body}
        self.errors_sent += 1
        conn.send_text(self._event(conn, body))

    @staticmethod
    def _event(conn: FakeConnection, body: dict[str, Any]) -> str:
        return _encode({**body, "connId": _conn_id(conn)}).decode()

    # -- market data ------------------------------------------------------------------------

    def round_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        """In OKX's push order on one connection: ``bbo-tbt``, ``books``, then trades; the
        candle goes to /business connections."""
        native = m.native
        frames: list[Out] = []
        books = self.book_frames(m, update, ts)
        best = m.book.best()
        if self._bbo.get(native) != best:  # bbo-tbt pushes on a change of the best levels
            self._bbo[native] = best
            frames.append((f"bbo-tbt:{native}", self._bbo_frame(m, ts)))
        frames += books
        for price, size, side in update.trades:
            trade = {
                "instId": native,
                "tradeId": str(m.next_trade_id()),
                "px": price,
                "sz": size,
                "side": side,
                "ts": str(ts),
                "count": "1",
                "source": "0",
                "seqId": m.seq,
            }
            frames.append((f"trades:{native}", self._push("trades", native, [trade])))
        frames += self._candle_frames(m, update, ts)
        return frames

    def _bbo_frame(self, m: FakeMarket, ts: int) -> str:
        (bid, bid_size), (ask, ask_size) = m.book.best()
        item = {
            "asks": [_level(ask, ask_size)],
            "bids": [_level(bid, bid_size)],
            "ts": str(ts),
            "seqId": m.seq,
        }
        return self._push("bbo-tbt", m.native, [item])

    def book_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        """The ``books`` update for ``update`` (already applied to the fake's book)."""
        now = self.sim.now
        bids = _sorted(update.bids, descending=True)
        asks = _sorted(update.asks, descending=False)
        prev = m.seq
        if bids or asks:
            m.seq += 1 + len(bids) + len(asks)  # real seqIds are not consecutive either
            if m.native in self._reset_next:
                self._reset_next.discard(m.native)
                m.seq = 1 + len(bids) + len(asks)
        elif now - self._book_at.get(m.native, 0.0) < BOOK_KEEPALIVE_AFTER:
            return []  # nothing changed: OKX pushes nothing
        # else: the no-change keepalive, seqId unchanged and prevSeqId == seqId
        self._book_at[m.native] = now
        if m.take_skip():
            return []  # lost: the next update's prevSeqId is this seqId
        checksum = self._checksum(m, corrupt=m.take_corrupt())
        item = {
            "asks": asks,
            "bids": bids,
            "ts": str(ts),
            "checksum": checksum,
            "prevSeqId": prev,
            "seqId": m.seq,
        }
        return [(f"books:{m.native}", self._push("books", m.native, [item], action="update"))]

    def snapshot_frame(self, m: FakeMarket) -> str:
        """What a ``books`` subscribe is answered with (after the ack)."""
        if self.ws_snapshot:
            bids, asks = m.book.snapshot(BOOK_LEVELS)
            checksum = self._checksum(m, corrupt=False)
        else:  # OKX's announced change: an empty snapshot, which clients are told to ignore
            bids, asks, checksum = [], [], 0
        item = {
            "asks": [_level(*level) for level in asks],
            "bids": [_level(*level) for level in bids],
            "ts": str(self.clock()),
            "checksum": checksum,
            "prevSeqId": -1,
            "seqId": m.seq,
        }
        return self._push("books", m.native, [item], action="snapshot")

    def _checksum(self, m: FakeMarket, *, corrupt: bool) -> int:
        if self.checksum_mode == "zero" and not corrupt:
            return 0
        bids, asks = m.book.snapshot(CHECKSUM_LEVELS)
        value = okx_checksum(bids, asks)
        if corrupt:  # a wrong value that is never 0 (0 means "no checksum")
            value = value + 1 if value != -1 else 1
        return value

    def _candle_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        interval = self.candle_interval_ms
        turnover = self._turnover.setdefault(m.native, {})
        start = ts - ts % interval
        turnover[start] = turnover.get(start, Decimal(0)) + sum(
            (Decimal(price) * Decimal(size) for price, size, _ in update.trades), Decimal(0)
        )
        bars = m.candle(ts, update.trades, interval)
        now = self.sim.now
        due = now - self._candle_at.get(m.native, -CANDLE_EVERY) >= CANDLE_EVERY
        frames: list[Out] = [
            (f"candle1m:{m.native}", self._candle(m, bar, turnover))
            for bar in bars
            if bar.closed or due
        ]
        if due:
            self._candle_at[m.native] = now
        for old in [key for key in turnover if key < start]:
            del turnover[old]
        return frames

    def _candle(self, m: FakeMarket, bar: Bar, turnover: dict[int, Decimal]) -> str:
        """``[ts, o, h, l, c, vol (base), volCcy (quote), volCcyQuote (quote), confirm]``."""
        quote_volume = format(turnover.get(bar.start_ms, Decimal(0)).normalize(), "f")
        row = [
            str(bar.start_ms),
            m.price(bar.open),
            m.price(bar.high),
            m.price(bar.low),
            m.price(bar.close),
            m.fmt_volume(bar),
            quote_volume,
            quote_volume,
            "1" if bar.closed else "0",
        ]
        return self._push("candle1m", m.native, [row])

    @staticmethod
    def _push(channel: str, native: str, data: list[Any], action: str | None = None) -> str:
        body: dict[str, Any] = {"arg": {"channel": channel, "instId": native}}
        if action is not None:
            body["action"] = action
        body["data"] = data
        return _encode(body).decode()

    # -- REST -------------------------------------------------------------------------------

    def handle_http(self, method: str, path: str, query: dict[str, str]) -> HttpAnswer:
        if path == "/api/v5/public/instruments" and method == "GET":
            return self._instruments(query)
        if path == "/api/v5/market/books" and method == "GET":
            return self._books(query)
        return 404, {}, NOT_FOUND

    def _instruments(self, query: dict[str, str]) -> HttpAnswer:
        inst_type = query.get("instType", "")
        if not inst_type:
            return _answer("50014", "Parameter instType can not be empty.", status=400)
        if inst_type not in INST_TYPES:
            return _answer("51000", "Parameter instType error")
        if inst_type != "SPOT":
            return _answer("0", "")  # the fake lists spot pairs only
        wanted = query.get("instId")
        rows = [
            _instrument_row(m)
            for native, m in self.markets.items()
            if wanted is None or native == wanted
        ]
        return _answer("0", "", rows)

    def _books(self, query: dict[str, str]) -> HttpAnswer:
        native = query.get("instId", "")
        if not native:
            return _answer("50014", "Parameter instId can not be empty.", status=400)
        market = self.markets.get(native)
        if market is None:
            return _answer(
                "51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist."
            )
        size = query.get("sz", "1")
        if not size.isdigit() or not 1 <= int(size) <= BOOK_LEVELS:
            return _answer("51000", "Parameter sz error")
        bids, asks = market.book.snapshot(int(size))
        item = {
            "asks": [_level(*level) for level in asks],
            "bids": [_level(*level) for level in bids],
            "ts": str(self.clock()),
            "seqId": market.seq,
        }
        return _answer("0", "", [item])


def _answer(code: str, msg: str, data: list[Any] | None = None, status: int = 200) -> HttpAnswer:
    """OKX's REST envelope; errors come with HTTP 200 as often as not, so clients read
    ``code``."""
    body = {"code": code, "data": data or [], "msg": msg}
    return status, {"Content-Type": "application/json"}, _encode(body)


def _instrument_row(m: FakeMarket) -> dict[str, str]:
    """One SPOT row with the fields OKX sends (contract fields empty on spot)."""
    item = m.listing
    return {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": item.base,
        "category": "1",
        "ctMult": "",
        "ctType": "",
        "ctVal": "",
        "ctValCcy": "",
        "expTime": "",
        "instFamily": "",
        "instId": m.native,
        "instType": "SPOT",
        "lever": "10",
        "listTime": "1606468572000",
        "lotSz": item.lot,
        "maxIcebergSz": "999999999999.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "999999999999",
        "maxMktAmt": "1000000",
        "maxMktSz": "1000000",
        "maxStopSz": "1000000",
        "maxTriggerSz": "999999999999.0000000000000000",
        "maxTwapSz": "999999999999.0000000000000000",
        "minSz": item.lot,
        "optType": "",
        "quoteCcy": item.quote,
        "ruleType": "normal",
        "settleCcy": "",
        "state": "live",
        "stk": "",
        "tickSz": item.tick,
        "uly": "",
    }
