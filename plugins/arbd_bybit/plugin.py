"""Registers the Bybit spot adapter through arbd's plugin hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd_bybit.adapter import BybitAdapter


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [BybitAdapter]
