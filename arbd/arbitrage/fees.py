"""Taker fees per exchange, and spreads after them.

The fee the detector charges on a leg is the exchange's taker fee in percent: the configured
``exchanges.<id>.taker_fee_pct`` when set, else the adapter's ``spec.taker_fee_pct`` (the
default from the exchange's published schedule). Arbitrage crosses the spread on both venues,
so both legs pay taker:

    effective ask = ask * (1 + buy fee)        effective bid = bid * (1 - sell fee)
    net spread %  = (effective bid - effective ask) / effective ask * 100
    gross spread % = (bid - ask) / ask * 100   (both in the comparison currency)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from arbd.config import ExchangeConfig
from arbd.exchange.adapter import ExchangeSpec


def taker_fees(
    specs: Iterable[ExchangeSpec], configured: Mapping[str, ExchangeConfig]
) -> dict[str, float]:
    """Exchange id -> taker fee in percent, the configuration overriding the adapter."""
    fees: dict[str, float] = {}
    for spec in specs:
        section = configured.get(spec.id)
        override = section.taker_fee_pct if section is not None else None
        fees[spec.id] = spec.taker_fee_pct if override is None else override
    return fees


def net_spread_pct(eff_ask: float, eff_bid: float) -> float:
    """Percent earned per unit bought at ``eff_ask`` and sold at ``eff_bid`` (after fees)."""
    return (eff_bid - eff_ask) / eff_ask * 100.0


def gross_spread_pct(ask: float, bid: float) -> float:
    return (bid - ask) / ask * 100.0
