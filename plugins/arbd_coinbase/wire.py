"""Coinbase Advanced Trade wire types: one reusable msgspec decoder per message shape.

Every market-data message is an envelope ``{"channel", "client_id", "timestamp",
"sequence_num", "events"}``; ``events`` is kept as ``msgspec.Raw`` and decoded a second time with
the decoder of its channel, so an unknown channel costs one envelope decode and is ignored.
Unknown fields are ignored everywhere; a field of the wrong type is a ``msgspec.ValidationError``
(the driver counts the frame and skips it). All prices and sizes are JSON strings on this
exchange and stay strings: the text Coinbase wrote is the text that is published.

Shapes decoded from every frame are ``gc=False``: decoded JSON cannot hold a reference cycle,
so the garbage collector need not track them (see docs/plugins.md).
"""

from __future__ import annotations

from datetime import date
from typing import Final

import msgspec

# -- server messages --------------------------------------------------------------------------


class Envelope(msgspec.Struct, gc=False):
    """Any server message. Error frames are flat: ``{"type":"error","message":"..."}``."""

    channel: str | None = None
    timestamp: str | None = None
    sequence_num: int | None = None
    events: msgspec.Raw = msgspec.Raw(b"[]")
    type: str | None = None
    message: str | None = None
    reason: str | None = None


class L2Update(msgspec.Struct, gc=False):
    side: str
    price_level: str
    new_quantity: str
    event_time: str | None = None


class L2Event(msgspec.Struct, gc=False):
    type: str
    product_id: str
    updates: list[L2Update] = msgspec.field(default_factory=list)


class Ticker(msgspec.Struct, gc=False):
    product_id: str
    price: str | None = None
    best_bid: str | None = None
    best_bid_quantity: str | None = None
    best_ask: str | None = None
    best_ask_quantity: str | None = None


class TickerEvent(msgspec.Struct, gc=False):
    type: str | None = None
    tickers: list[Ticker] = msgspec.field(default_factory=list)


class MarketTrade(msgspec.Struct, gc=False):
    product_id: str
    price: str
    size: str
    side: str | None = None
    trade_id: str | None = None
    time: str | None = None


class TradesEvent(msgspec.Struct, gc=False):
    type: str | None = None
    trades: list[MarketTrade] = msgspec.field(default_factory=list)


class WireCandle(msgspec.Struct, gc=False):
    product_id: str
    start: str | int
    open: str
    high: str
    low: str
    close: str
    volume: str


class CandlesEvent(msgspec.Struct, gc=False):
    type: str | None = None
    candles: list[WireCandle] = msgspec.field(default_factory=list)


class HeartbeatEvent(msgspec.Struct, gc=False):
    current_time: str | None = None
    heartbeat_counter: int | str | None = None
    """A string in the docs example, an integer in the AsyncAPI (reference §8.5): both taken."""


class SubscriptionsEvent(msgspec.Struct, gc=False):
    subscriptions: dict[str, list[str]] = msgspec.field(default_factory=dict)


decode_envelope = msgspec.json.Decoder(Envelope).decode
decode_l2 = msgspec.json.Decoder(list[L2Event]).decode
decode_tickers = msgspec.json.Decoder(list[TickerEvent]).decode
decode_trades = msgspec.json.Decoder(list[TradesEvent]).decode
decode_candles = msgspec.json.Decoder(list[CandlesEvent]).decode
decode_heartbeats = msgspec.json.Decoder(list[HeartbeatEvent]).decode
decode_subscriptions = msgspec.json.Decoder(list[SubscriptionsEvent]).decode


# -- client messages --------------------------------------------------------------------------


class Subscribe(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``{"type":"subscribe","product_ids":[...],"channel":"level2"}``; one channel per message.

    ``product_ids`` is left out for ``heartbeats``, which is subscribed without products.
    """

    type: str
    product_ids: list[str] | None = None
    channel: str


_encode = msgspec.json.Encoder().encode


def subscribe_frame(op: str, channel: str, product_ids: list[str] | None) -> str:
    return _encode(Subscribe(type=op, product_ids=product_ids, channel=channel)).decode()


# -- REST: GET /api/v3/brokerage/market/products ----------------------------------------------


class WireProduct(msgspec.Struct):
    """One entry of the public products list (Advanced Trade ``Product`` schema)."""

    product_id: str
    base_currency_id: str = ""
    quote_currency_id: str = ""
    base_increment: str = ""
    quote_increment: str = ""
    price_increment: str = ""
    status: str = ""
    product_type: str = ""
    alias: str | None = None
    """"Product id for the corresponding unified book" (``BTC-USDC`` -> ``BTC-USD``); ``""``
    when the product is its own book; absent from older or hand-written documents."""


class Products(msgspec.Struct):
    products: list[WireProduct]
    num_products: int | None = None


decode_products = msgspec.json.Decoder(Products).decode


# -- RFC 3339 timestamps ----------------------------------------------------------------------

_EPOCH: Final = date(1970, 1, 1)
_day_ms: dict[str, int] = {}


def rfc3339_ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 time, truncated, in integer arithmetic.

    ``"2023-02-09T20:32:50.714964855Z"`` -> ``1675974770714``. Any number of fraction digits
    (Coinbase writes nanoseconds), ``Z`` or a ``±HH:MM`` offset. Raises ``ValueError`` for
    anything else. A float round trip would turn ``.714964855`` into ``.714`` or ``.715``
    depending on the date; this never does.
    """
    if len(text) < 20 or text[10] not in "Tt " or text[13] != ":" or text[16] != ":":
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    day = text[:10]
    base = _day_ms.get(day)
    if base is None:
        base = (date.fromisoformat(day) - _EPOCH).days * 86_400_000
        if len(_day_ms) > 64:  # a long-running process sees one new day at a time
            _day_ms.clear()
        _day_ms[day] = base
    clock = text[11:13] + text[14:16] + text[17:19]
    if not (clock.isascii() and clock.isdigit()):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    hours, minutes, seconds = int(clock[0:2]), int(clock[2:4]), int(clock[4:6])
    if hours > 23 or minutes > 59 or seconds > 60:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    millis = 0
    rest = text[19:]
    if rest[:1] == ".":
        end = 1
        while end < len(rest) and "0" <= rest[end] <= "9":
            end += 1
        if end == 1:
            raise ValueError(f"not an RFC 3339 time: {text!r}")
        millis = int(rest[1:end][:3].ljust(3, "0"))
        rest = rest[end:]
    if rest in ("Z", "z"):
        offset = 0
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":" and rest[1:3].isdigit():
        if not rest[4:6].isdigit():
            raise ValueError(f"not an RFC 3339 time: {text!r}")
        offset = (int(rest[1:3]) * 60 + int(rest[4:6])) * 60_000
        if rest[0] == "-":
            offset = -offset
    else:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    return base + ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis - offset
