"""Registers the OKX adapter through arbd's plugin hooks."""

from __future__ import annotations

from arbd import hookimpl
from arbd.exchange.adapter import ExchangeAdapter
from arbd_okx.adapter import OkxAdapter


@hookimpl
def arbd_exchanges() -> list[type[ExchangeAdapter]]:
    return [OkxAdapter]
