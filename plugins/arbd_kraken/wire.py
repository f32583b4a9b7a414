"""Kraken WebSocket v2 and REST wire shapes, one reusable msgspec decoder per shape.

Every server frame is first decoded as a permissive :class:`Frame` (unknown fields ignored) whose
``data``, ``result`` and ``timestamp`` stay raw (an empty ``msgspec.Raw`` when absent); the
channel or method then picks the decoder for them. Prices and quantities
decode as ``decimal.Decimal`` straight from the JSON number text (msgspec keeps every digit as
written: ``0.10000000`` stays ``Decimal('0.10000000')``); a float would lose trailing zeros and
break the checksum. Timestamps decode as RFC 3339 datetimes (Kraken writes ``...Z`` with up to
nine fractional digits).

Shapes decoded from every frame are ``gc=False``: decoded JSON cannot hold a reference cycle,
so the garbage collector need not track them (see docs/plugins.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

import msgspec

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, by integer arithmetic (no float rounding)."""
    if moment.tzinfo is None:  # Kraken always writes "Z"; read a bare time as UTC too
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


# -- server frames ----------------------------------------------------------------------------


class Frame(msgspec.Struct, gc=False):
    """Any v2 frame: a channel message (``channel``, ``type``, ``data``) or a method response
    (``method``, ``success``, ``result`` / ``error``, ``req_id``, ``time_in``/``time_out``)."""

    channel: str | None = None
    type: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    timestamp: msgspec.Raw = msgspec.Raw()
    """Top-level on ``ohlc`` messages only (decoded there, with ``decode_time``)."""
    method: str | None = None
    success: bool | None = None
    result: msgspec.Raw = msgspec.Raw()
    error: str | None = None
    symbol: str | None = None
    """A per-symbol subscribe rejection names the symbol here."""
    req_id: int | None = None
    warnings: list[str] | None = None


class AckResult(msgspec.Struct, gc=False):
    """``result`` of a successful subscribe/unsubscribe: one per symbol."""

    channel: str | None = None
    symbol: str | None = None
    depth: int | None = None


class WireLevel(msgspec.Struct, gc=False):
    price: Decimal
    qty: Decimal


class BookData(msgspec.Struct, kw_only=True, gc=False):
    symbol: str
    bids: list[WireLevel] = msgspec.field(default_factory=list)
    asks: list[WireLevel] = msgspec.field(default_factory=list)
    checksum: int
    timestamp: datetime | None = None


class TickerData(msgspec.Struct, kw_only=True, gc=False):
    symbol: str
    bid: Decimal | None = None
    bid_qty: Decimal | None = None
    ask: Decimal | None = None
    ask_qty: Decimal | None = None
    timestamp: datetime | None = None


class TradeData(msgspec.Struct, kw_only=True, gc=False):
    symbol: str
    side: str | None = None
    price: Decimal
    qty: Decimal
    trade_id: int | None = None
    timestamp: datetime | None = None


class OhlcData(msgspec.Struct, kw_only=True, gc=False):
    symbol: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    interval_begin: datetime
    interval: int


class StatusData(msgspec.Struct, kw_only=True, gc=False):
    """``connection_id`` (beyond 2**53) is left undecoded: nothing here needs it."""

    system: str | None = None
    api_version: str | None = None
    version: str | None = None


decode_time: Final = msgspec.json.Decoder(datetime).decode
decode_frame: Final = msgspec.json.Decoder(Frame).decode
decode_ack: Final = msgspec.json.Decoder(AckResult).decode
decode_book: Final = msgspec.json.Decoder(list[BookData]).decode
decode_ticker: Final = msgspec.json.Decoder(list[TickerData]).decode
decode_trades: Final = msgspec.json.Decoder(list[TradeData]).decode
decode_ohlc: Final = msgspec.json.Decoder(list[OhlcData]).decode
decode_status: Final = msgspec.json.Decoder(list[StatusData]).decode


# -- client frames ----------------------------------------------------------------------------


class Params(msgspec.Struct, omit_defaults=True):
    channel: str
    symbol: list[str]
    depth: int | None = None
    interval: int | None = None
    event_trigger: str | None = None


class Request(msgspec.Struct):
    method: str
    params: Params
    req_id: int


class Ping(msgspec.Struct):
    method: str
    req_id: int


encode: Final = msgspec.json.Encoder().encode


# -- REST AssetPairs --------------------------------------------------------------------------


class AssetPair(msgspec.Struct):
    """One ``result`` entry of ``GET /0/public/AssetPairs`` (the fields used here)."""

    altname: str | None = None
    wsname: str | None = None
    """``XBT/USD``: the v1 WebSocket name; v2 spells the assets ``BTC``, ``DOGE``."""
    pair_decimals: int | None = None
    lot_decimals: int | None = None
    tick_size: str | None = None
    ordermin: str | None = None
    status: str | None = None


class AssetPairs(msgspec.Struct):
    error: list[str] = msgspec.field(default_factory=list)
    result: dict[str, AssetPair] | None = None


decode_asset_pairs: Final = msgspec.json.Decoder(AssetPairs).decode
