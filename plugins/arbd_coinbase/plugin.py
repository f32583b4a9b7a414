"""Registers the Coinbase Advanced Trade adapter and its fake server through arbd's plugin
hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd.testing.fake import FakeExchangeFactory
from arbd_coinbase.adapter import CoinbaseAdapter
from arbd_coinbase.fake import CoinbaseFake


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [CoinbaseAdapter]


@hookimpl
def arbd_fake_exchanges() -> list[FakeExchangeFactory]:
    return [FakeExchangeFactory("coinbase", CoinbaseFake)]
