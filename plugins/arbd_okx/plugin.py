"""Registers the OKX adapter and its fake server through arbd's plugin hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd.testing.fake import FakeExchangeFactory
from arbd_okx.adapter import OkxAdapter
from arbd_okx.fake import OkxFake


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [OkxAdapter]


@hookimpl
def arbd_fake_exchanges() -> list[FakeExchangeFactory]:
    return [FakeExchangeFactory("okx", OkxFake)]
