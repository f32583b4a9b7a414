"""Registers the Kraken adapter through arbd's plugin hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd_kraken.adapter import KrakenAdapter


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [KrakenAdapter]
