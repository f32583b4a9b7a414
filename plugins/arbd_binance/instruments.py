"""Binance spot instruments from ``GET /api/v3/exchangeInfo`` (pure).

Only what arbd needs is read: ``symbol``, ``status`` (only ``TRADING`` symbols are listed),
``baseAsset`` / ``quoteAsset`` (the only safe way to name ``BTCUSDT`` as ``BTC/USDT``; the string
is never split), ``PRICE_FILTER.tickSize`` and ``LOT_SIZE.stepSize`` (kept as Binance's text,
e.g. ``"0.01000000"``). A filter that is missing or disabled (``"0.00000000"``) falls back to
``quotePrecision`` / ``baseAssetPrecision``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import msgspec

from arbd.errors import ProtocolError, RestError
from arbd.exchange.adapter import HttpResponse, Instrument
from arbd.exchange.symbols import normalize
from arbd_binance.wire import SymbolInfo, decode_exchange_info, rest_error_text


def parse_instruments(responses: Sequence[HttpResponse]) -> dict[str, Instrument]:
    """Normalized symbol -> instrument, from the answer whose purpose is ``instruments``.

    Raises ``RestError`` for a missing or non-200 answer, ``ProtocolError`` for a body that does
    not parse.
    """
    response = next((r for r in responses if r.request.purpose == "instruments"), None)
    if response is None:
        raise RestError("binance: no answer to GET /api/v3/exchangeInfo")
    if response.status != 200:
        text = rest_error_text(response.status, response.body)
        raise RestError(f"binance: GET /api/v3/exchangeInfo answered {text}", response.status)
    try:
        document = decode_exchange_info(response.body)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"binance: bad exchangeInfo document: {exc}") from None
    instruments: dict[str, Instrument] = {}
    for info in document.symbols:
        if info.status == "TRADING":
            instrument = _instrument(info)
            instruments[instrument.symbol] = instrument
    return instruments


def _precision(step: str) -> int:
    """Decimal places of a step: "0.01000000" -> 2, "1.00000000" -> 0."""
    exponent = Decimal(step).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _step(text: str | None, precision: int | None, what: str, symbol: str) -> str:
    """A filter's step size, or ``10**-precision`` when the filter is missing or disabled (0)."""
    try:
        if text is not None and Decimal(text) > 0:
            return text
    except InvalidOperation:
        raise ProtocolError(f"binance: {symbol}: bad {what} {text!r}") from None
    if precision is None:
        raise ProtocolError(f"binance: {symbol}: no {what} and no precision")
    return "1" if precision <= 0 else f"0.{'0' * (precision - 1)}1"


def _instrument(info: SymbolInfo) -> Instrument:
    filters = {f.filter_type: f for f in info.filters}
    price_filter, lot_filter = filters.get("PRICE_FILTER"), filters.get("LOT_SIZE")
    tick = _step(
        price_filter.tick_size if price_filter else None,
        info.quote_precision,
        "tickSize",
        info.symbol,
    )
    lot = _step(
        lot_filter.step_size if lot_filter else None,
        info.base_asset_precision,
        "stepSize",
        info.symbol,
    )
    return Instrument(
        symbol=normalize(info.base_asset, info.quote_asset),
        native=info.symbol,
        base=info.base_asset.upper(),
        quote=info.quote_asset.upper(),
        tick_size=tick,
        lot_size=lot,
        price_precision=_precision(tick),
        size_precision=_precision(lot),
    )
