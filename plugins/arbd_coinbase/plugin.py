"""Registers the Coinbase Advanced Trade adapter through arbd's plugin hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd_coinbase.adapter import CoinbaseAdapter


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [CoinbaseAdapter]
