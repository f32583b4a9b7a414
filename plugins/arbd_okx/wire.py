"""OKX v5 wire shapes: one reusable msgspec decoder per message shape.

Every WebSocket frame is first decoded as a permissive :class:`Frame` (unknown fields ignored);
its ``data`` stays raw JSON and is decoded by the decoder for its channel, so each shape is parsed
once and typed. Prices and sizes are JSON strings on OKX and stay the exchange's own text;
``seqId``, ``prevSeqId`` and ``checksum`` are JSON integers; times are strings of milliseconds,
which the push decoders turn into integers themselves (msgspec's lax mode, ``strict=False``:
a string of digits decodes as an ``int`` field, in C, instead of ``int()`` per item here).

Shapes decoded from every frame are ``gc=False``: decoded JSON cannot hold a reference cycle,
so the garbage collector need not track them (see docs/plugins.md).
"""

from __future__ import annotations

from typing import Final

import msgspec

from arbd.exchange.book import WireLevel

# -- WebSocket --------------------------------------------------------------------------------


class Arg(msgspec.Struct, gc=False):
    """``{"channel":"books","instId":"BTC-USDT"}``; other keys (``instType``...) are ignored."""

    channel: str = ""
    instId: str = ""  # noqa: N815 - the wire name


class Frame(msgspec.Struct, gc=False):
    """Any server frame: an event (``event`` set) or a push (``arg`` + ``data``)."""

    event: str | None = None
    arg: Arg | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    """Raw JSON of the push's ``data`` array (empty when absent); decoded per channel."""
    code: str | int | None = None
    msg: str | None = None
    id: str | None = None
    connId: str | None = None  # noqa: N815 - the wire name


class BookData(msgspec.Struct, gc=False):
    """One ``data`` item of ``books`` / ``bbo-tbt``: levels are ``[px, sz, "0", orders]``.

    The sides stay raw JSON: an update goes to ``OrderBook.apply_raw``, which reads the text in
    place (half the cost of decoding ~25 levels into objects first); snapshots and quotes
    decode them with ``arbd.exchange.book.decode_levels``."""

    asks: msgspec.Raw
    bids: msgspec.Raw
    ts: int | None = None
    """Milliseconds; a string on the wire (see the module docstring)."""
    checksum: int | None = None
    prevSeqId: int | None = None  # noqa: N815 - the wire name
    seqId: int | None = None  # noqa: N815 - the wire name


class TradeData(msgspec.Struct, gc=False):
    tradeId: str  # noqa: N815 - the wire name
    px: str
    sz: str
    side: str | None = None
    ts: int | None = None
    """Milliseconds; a string on the wire (see the module docstring)."""
    # instId is in every trade too; the push's arg already said it, so it is skipped.


class Subscribe(msgspec.Struct, omit_defaults=True):
    """``{"id":"1","op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}``."""

    op: str
    args: list[Arg]
    id: str | None = None


class Push(msgspec.Struct, gc=False):
    """A data push decoded whole, ``data`` typed by its channel (subclasses below).

    The ``arg`` is not decoded again here: the session routes pushes by its text first."""

    data: list[BookData] | list[TradeData] | list[list[str]]
    action: str | None = None
    event: str | None = None
    """Never set on a push; checked so that an event frame is never taken for one."""


class BooksPush(Push):
    data: list[BookData]


class TradesPush(Push):
    data: list[TradeData]


class CandlesPush(Push):
    data: list[list[str]]


PUSH_PREFIX: Final = b'{"arg":'
"""How OKX begins every data push; its arg object follows, up to a closing brace."""

decode_push: Final[dict[str, msgspec.json.Decoder[Push]]] = {
    "books": msgspec.json.Decoder(BooksPush, strict=False),
    "bbo-tbt": msgspec.json.Decoder(BooksPush, strict=False),
    "trades": msgspec.json.Decoder(TradesPush, strict=False),
    "candle1m": msgspec.json.Decoder(CandlesPush, strict=False),
}
"""One-pass decoders of a whole push, by the channel name at its start."""

decode_frame = msgspec.json.Decoder(Frame).decode
decode_arg = msgspec.json.Decoder(Arg).decode
decode_books = msgspec.json.Decoder(list[BookData], strict=False).decode
decode_trades = msgspec.json.Decoder(list[TradeData], strict=False).decode
decode_candles = msgspec.json.Decoder(list[list[str]]).decode
"""``candle{bar}`` rows: ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``."""
encode = msgspec.json.Encoder().encode


# -- REST -------------------------------------------------------------------------------------


class RestBook(msgspec.Struct):
    """``GET /api/v5/market/books`` item. ``seqId`` is what the no-snapshot bootstrap needs."""

    asks: list[WireLevel]
    bids: list[WireLevel]
    ts: str | None = None
    seqId: int | str | None = None  # noqa: N815 - the wire name


class RestBooks(msgspec.Struct):
    code: str | int = "0"
    msg: str = ""
    data: list[RestBook] = []


class RestInstrument(msgspec.Struct):
    """``GET /api/v5/public/instruments?instType=SPOT`` item (only the fields arbd uses)."""

    instId: str  # noqa: N815 - the wire name
    baseCcy: str = ""  # noqa: N815 - the wire name
    quoteCcy: str = ""  # noqa: N815 - the wire name
    tickSz: str = ""  # noqa: N815 - the wire name
    lotSz: str = ""  # noqa: N815 - the wire name
    state: str = ""
    instType: str = "SPOT"  # noqa: N815 - the wire name


class RestInstruments(msgspec.Struct):
    code: str | int = "0"
    msg: str = ""
    data: list[RestInstrument] = []


decode_rest_books = msgspec.json.Decoder(RestBooks).decode
decode_rest_instruments = msgspec.json.Decoder(RestInstruments).decode
