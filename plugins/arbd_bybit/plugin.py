"""Registers the Bybit spot adapter and its fake server through arbd's plugin hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd.testing.fake import FakeExchangeFactory
from arbd_bybit.adapter import BybitAdapter
from arbd_bybit.fake import BybitFake


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [BybitAdapter]


@hookimpl
def arbd_fake_exchanges() -> list[FakeExchangeFactory]:
    return [FakeExchangeFactory("bybit", BybitFake)]
