"""Binance spot wire shapes: one reusable msgspec decoder per message shape, and stream names.

Every WebSocket message is first decoded as an :class:`Envelope`, which covers, without looking
inside a payload:

* combined-stream data ``{"stream":"btcusdt@trade","data":{...}}`` (``data`` kept as raw bytes and
  decoded by the payload's own decoder once the stream name says what it is);
* acks ``{"result":null,"id":1}`` (``result`` is raw bytes, empty when absent);
* errors, both the observed ``{"error":{"code":2,"msg":"..."},"id":2}`` and the documented flat
  ``{"code":2,"msg":"..."}``;
* raw-stream payloads (a capture of a ``/ws/<stream>`` connection): ``e``, ``s`` and ``u`` say
  which payload it is.

Prices and quantities are JSON strings on Binance and are kept as the exchange's text; a number
where the protocol has a string is a ``msgspec.ValidationError`` (a frame error, counted and
skipped by the driver). Unknown fields are ignored everywhere.

Shapes decoded from every frame are ``gc=False``: decoded JSON cannot hold a reference cycle,
so the garbage collector need not track them (see docs/plugins.md).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from arbd.model import Level

Kind = Literal["price", "trades", "book", "candles"]

# Stream name suffixes (after "<symbol>@") the adapter subscribes to, per channel.
STREAM_SUFFIX: Final[dict[str, str]] = {
    "price": "bookTicker",
    "trades": "trade",
    "book": "depth@100ms",
    "candles": "kline_1m",
}
CANDLE_INTERVAL: Final = "1m"


def stream_name(channel: str, native: str) -> str:
    """``("book", "BTCUSDT")`` -> ``btcusdt@depth@100ms``. Symbols are lowercase in stream names."""
    return f"{native.lower()}@{STREAM_SUFFIX[channel]}"


def parse_stream(name: str) -> tuple[Kind, str] | None:
    """``btcusdt@depth@100ms`` -> ``("book", "btcusdt")``; None for a stream the adapter ignores.

    Accepts what a capture of another client might hold too: ``@depth`` (1000 ms) diffs and any
    ``@kline_<interval>``. Partial-book streams (``@depth5``...) are not diffs and are not used.
    """
    native, sep, suffix = name.partition("@")
    if not sep or not native:
        return None
    kind: Kind
    if suffix == "bookTicker":
        kind = "price"
    elif suffix == "trade":
        kind = "trades"
    elif suffix in {"depth@100ms", "depth"}:
        kind = "book"
    elif suffix.startswith("kline_"):
        kind = "candles"
    else:
        return None
    return kind, native.lower()


class ErrorBody(msgspec.Struct, gc=False):
    code: int | None = None
    msg: str | None = None


class Envelope(msgspec.Struct, gc=False):
    """Every message, decoded shallowly (see the module docstring)."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    """Empty when absent; ``b"null"`` when the server sent null."""
    result: msgspec.Raw = msgspec.Raw()
    id: int | str | None = None
    error: ErrorBody | None = None
    code: int | None = None
    msg: str | None = None
    e: str | None = None
    s: str | None = None
    u: int | None = None


class BookTicker(msgspec.Struct, gc=False):
    """``<symbol>@bookTicker``: no event type, no event time."""

    update_id: int = msgspec.field(name="u")
    symbol: str = msgspec.field(name="s")
    bid: str = msgspec.field(name="b")
    bid_size: str = msgspec.field(name="B")
    ask: str = msgspec.field(name="a")
    ask_size: str = msgspec.field(name="A")


class TradeEvent(msgspec.Struct, gc=False):
    """``<symbol>@trade``. ``m``: the buyer is the maker, so the taker sold."""

    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    trade_id: int = msgspec.field(name="t")
    price: str = msgspec.field(name="p")
    quantity: str = msgspec.field(name="q")
    trade_time: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")


class DepthUpdate(msgspec.Struct, gc=False):
    """``<symbol>@depth@100ms``: absolute level updates with update ids ``[U; u]``.

    The sides stay raw JSON (``[["price","qty"],...]``) for ``OrderBook.apply_raw``, which
    reads the text in place and makes strings only for the levels it keeps: decoding ~25
    levels into tuples of strings first was about 2.4 µs of a ~4 µs frame decode."""

    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    first_id: int = msgspec.field(name="U")
    last_id: int = msgspec.field(name="u")
    bids: msgspec.Raw = msgspec.field(name="b")
    asks: msgspec.Raw = msgspec.field(name="a")


class KlineBody(msgspec.Struct, gc=False):
    start: int = msgspec.field(name="t")
    interval: str = msgspec.field(name="i")
    open: str = msgspec.field(name="o")
    close: str = msgspec.field(name="c")
    high: str = msgspec.field(name="h")
    low: str = msgspec.field(name="l")
    volume: str = msgspec.field(name="v")
    closed: bool = msgspec.field(name="x")


class KlineEvent(msgspec.Struct, gc=False):
    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    kline: KlineBody = msgspec.field(name="k")


class DepthSnapshot(msgspec.Struct):
    """``GET /api/v3/depth`` answer."""

    last_update_id: int = msgspec.field(name="lastUpdateId")
    bids: list[Level]
    asks: list[Level]


class RestErrorBody(msgspec.Struct):
    """Binance REST error body ``{"code":-1121,"msg":"Invalid symbol."}``."""

    code: int | None = None
    msg: str | None = None


class Filter(msgspec.Struct):
    filter_type: str = msgspec.field(name="filterType")
    tick_size: str | None = msgspec.field(default=None, name="tickSize")
    step_size: str | None = msgspec.field(default=None, name="stepSize")


class SymbolInfo(msgspec.Struct):
    symbol: str
    status: str
    base_asset: str = msgspec.field(name="baseAsset")
    quote_asset: str = msgspec.field(name="quoteAsset")
    base_asset_precision: int | None = msgspec.field(default=None, name="baseAssetPrecision")
    quote_precision: int | None = msgspec.field(default=None, name="quotePrecision")
    filters: list[Filter] = msgspec.field(default_factory=list)


class ExchangeInfo(msgspec.Struct):
    """``GET /api/v3/exchangeInfo`` (only what the adapter reads)."""

    symbols: list[SymbolInfo]


class Request(msgspec.Struct):
    """``{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}``."""

    method: str
    params: list[str]
    id: int


class StreamFrame(msgspec.Struct, gc=False):
    """A combined-stream data frame of a known kind, decoded whole."""

    stream: str
    data: BookTicker | TradeEvent | DepthUpdate | KlineEvent


class _BookTickerFrame(StreamFrame):
    data: BookTicker


class _TradeFrame(StreamFrame):
    data: TradeEvent


class _DepthFrame(StreamFrame):
    data: DepthUpdate


class _KlineFrame(StreamFrame):
    data: KlineEvent


STREAM_PREFIX: Final = b'{"stream":"'
"""How Binance begins every combined-stream frame; the stream name follows, up to a quote."""

decode_stream_frame: Final[dict[str, msgspec.json.Decoder[StreamFrame]]] = {
    "price": msgspec.json.Decoder(_BookTickerFrame),
    "trades": msgspec.json.Decoder(_TradeFrame),
    "book": msgspec.json.Decoder(_DepthFrame),
    "candles": msgspec.json.Decoder(_KlineFrame),
}
"""One-pass decoders of a whole combined-stream frame, by the kind its stream name says."""

decode_envelope: Final = msgspec.json.Decoder(Envelope).decode
decode_book_ticker: Final = msgspec.json.Decoder(BookTicker).decode
decode_trade: Final = msgspec.json.Decoder(TradeEvent).decode
decode_depth: Final = msgspec.json.Decoder(DepthUpdate).decode
decode_kline: Final = msgspec.json.Decoder(KlineEvent).decode
decode_snapshot: Final = msgspec.json.Decoder(DepthSnapshot).decode
decode_rest_error: Final = msgspec.json.Decoder(RestErrorBody).decode
decode_exchange_info: Final = msgspec.json.Decoder(ExchangeInfo).decode
encode: Final = msgspec.json.Encoder().encode


def rest_error_text(status: int, body: bytes) -> str:
    """``HTTP 400 (-1121 Invalid symbol.)`` from a REST error answer, whatever its body."""
    try:
        error = decode_rest_error(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return f"HTTP {status}"
    if error.code is None and error.msg is None:
        return f"HTTP {status}"
    return f"HTTP {status} ({error.code} {error.msg or ''})".replace(" )", ")")
