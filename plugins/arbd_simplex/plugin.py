"""Registers the simplex adapter and its fake server through arbd's plugin hooks."""

from __future__ import annotations

from arbd.exchange.adapter import ExchangeAdapter
from arbd.hookspecs import hookimpl
from arbd.testing.fake import FakeExchangeFactory
from arbd_simplex.adapter import SimplexAdapter
from arbd_simplex.fake import SimplexFake


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [SimplexAdapter]


@hookimpl
def arbd_fake_exchanges() -> list[FakeExchangeFactory]:
    return [FakeExchangeFactory("simplex", SimplexFake)]
