"""The exchange adapter contract (Sans-I/O), the pure order book and symbol helpers."""

from arbd.exchange.adapter import (
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSession,
    ExchangeSpec,
    HttpRequest,
    HttpResponse,
    Instrument,
    Keepalive,
)
from arbd.exchange.book import OrderBook
from arbd.exchange.symbols import SymbolMap

__all__ = [
    "ConnectionPlan",
    "ExchangeAdapter",
    "ExchangeSession",
    "ExchangeSpec",
    "HttpRequest",
    "HttpResponse",
    "Instrument",
    "Keepalive",
    "OrderBook",
    "SymbolMap",
]
