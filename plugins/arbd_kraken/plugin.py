"""Registers the Kraken adapter and its fake server through arbd's plugin hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd.testing.fake import FakeExchangeFactory
from arbd_kraken.adapter import KrakenAdapter
from arbd_kraken.fake import KrakenFake


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [KrakenAdapter]


@hookimpl
def arbd_fake_exchanges() -> list[FakeExchangeFactory]:
    return [FakeExchangeFactory("kraken", KrakenFake)]
