"""Bybit v5 wire shapes: one reusable msgspec decoder per message shape.

Every WebSocket message is first decoded as an :class:`Envelope` whose ``data`` stays raw; only
topics the session routes get their ``data`` decoded with the topic's own decoder. So an unknown
topic (or one we did not subscribe) is ignored whatever its payload looks like, and a known topic
with a malformed payload raises ``msgspec.ValidationError`` for the driver to count.

All prices and sizes are JSON strings on the wire (reference §4.3) and stay text. Unknown fields
are ignored everywhere (msgspec's default).

Shapes decoded from every frame are ``gc=False``: decoded JSON cannot hold a reference cycle,
so the garbage collector need not track them (see docs/plugins.md).
"""

from __future__ import annotations

from typing import Final

import msgspec


class Envelope(msgspec.Struct, gc=False):
    """Any server message: a data push (``topic``) or a control answer (``op``/``success``).

    Data push (spot; ``ts`` before ``type``)::

        {"topic":"orderbook.50.BTCUSDT","ts":1687940967466,"type":"delta","data":{...},
         "cts":1687940967464}

    Control answer::

        {"success":true,"ret_msg":"subscribe","conn_id":"2324d924-...","req_id":"10001",
         "op":"subscribe"}
        {"success":true,"ret_msg":"pong","conn_id":"0970e817-...","op":"ping"}
    """

    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    data: msgspec.Raw = msgspec.Raw()
    op: str | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | int | None = None
    conn_id: str | None = None


class BookData(msgspec.Struct, gc=False):
    """``data`` of ``orderbook.{depth}.{symbol}``: absolute levels, size "0" deletes.

    The sides stay raw JSON for ``OrderBook.apply_raw`` / ``replace_raw``, which read the text
    in place and make strings only for the levels they keep."""

    u: int
    s: str | None = None
    b: msgspec.Raw = msgspec.Raw(b"[]")
    a: msgspec.Raw = msgspec.Raw(b"[]")
    seq: int | None = None


class TradeData(msgspec.Struct, gc=False):
    """One element of ``publicTrade.{symbol}`` ``data``. ``side`` (``S``) is the taker side."""

    time: int = msgspec.field(name="T")
    price: str = msgspec.field(name="p")
    size: str = msgspec.field(name="v")
    id: str | int = msgspec.field(name="i")
    side: str | None = msgspec.field(default=None, name="S")
    s: str | None = None
    seq: int | None = None


class KlineData(msgspec.Struct, gc=False):
    """One element of ``kline.{interval}.{symbol}`` ``data``; ``confirm`` means closed."""

    start: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    confirm: bool
    interval: str | None = None
    end: int | None = None
    timestamp: int | None = None


class Request(msgspec.Struct):
    """``{"op":"subscribe","args":["orderbook.50.BTCUSDT"],"req_id":"1"}``."""

    op: str
    args: list[str]
    req_id: str


class Ping(msgspec.Struct):
    """``{"op":"ping"}`` (``req_id`` is optional and not sent)."""

    op: str = "ping"


# -- REST: GET /v5/market/instruments-info?category=spot ---------------------------------------


class PriceFilter(msgspec.Struct, rename="camel"):
    tick_size: str


class LotSizeFilter(msgspec.Struct, rename="camel"):
    base_precision: str


class WireInstrument(msgspec.Struct, rename="camel"):
    symbol: str
    base_coin: str
    quote_coin: str
    price_filter: PriceFilter
    lot_size_filter: LotSizeFilter
    status: str = "Trading"


class InstrumentsResult(msgspec.Struct, rename="camel"):
    items: list[WireInstrument] = msgspec.field(default_factory=list, name="list")
    category: str = ""
    next_page_cursor: str = ""


class InstrumentsDocument(msgspec.Struct, rename="camel"):
    ret_code: int
    ret_msg: str = ""
    result: InstrumentsResult | None = None


class Push(msgspec.Struct, kw_only=True, gc=False):
    """A data push decoded whole, ``data`` typed by its topic (subclasses below)."""

    topic: str = ""
    type: str | None = None
    ts: int | None = None


class BookPush(Push, kw_only=True):
    data: BookData


class TradesPush(Push, kw_only=True):
    data: list[TradeData]


class KlinesPush(Push, kw_only=True):
    data: list[KlineData]


PUSH_PREFIX: Final = b'{"topic":"'
"""How Bybit begins every data push; the topic follows, up to a quote."""

decode_push: Final[dict[str, msgspec.json.Decoder[Push]]] = {
    "book": msgspec.json.Decoder(BookPush),
    "price": msgspec.json.Decoder(BookPush),
    "trades": msgspec.json.Decoder(TradesPush),
    "candles": msgspec.json.Decoder(KlinesPush),
}
"""One-pass decoders of a whole push, by the channel its (known) topic routes to."""

decode_envelope: Final = msgspec.json.Decoder(Envelope).decode
decode_book: Final = msgspec.json.Decoder(BookData).decode
decode_trades: Final = msgspec.json.Decoder(list[TradeData]).decode
decode_klines: Final = msgspec.json.Decoder(list[KlineData]).decode
decode_instruments: Final = msgspec.json.Decoder(InstrumentsDocument).decode
encode: Final = msgspec.json.Encoder().encode
