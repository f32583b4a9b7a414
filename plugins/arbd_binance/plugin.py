"""Registers the Binance spot adapter and its fake server through arbd's plugin hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd.testing.fake import FakeExchangeFactory
from arbd_binance.adapter import BinanceAdapter
from arbd_binance.fake import BinanceFake


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [BinanceAdapter]


@hookimpl
def arbd_fake_exchanges() -> list[FakeExchangeFactory]:
    return [FakeExchangeFactory("binance", BinanceFake)]
