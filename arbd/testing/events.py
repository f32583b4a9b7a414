"""Sample events for tests (arbd's own and plugin authors'): complete, valid, and easy to vary."""

from __future__ import annotations

from typing import Any

from arbd.model import Arbitrage, BuySell, FeedStatus, ProfitPoint, Quote, Trade


def sample_opportunity(
    oid: str = "op1", event: str = "open", net: float = 0.3, **over: Any
) -> Arbitrage:
    """A complete ``arbitrage`` event (binance -> kraken, BTC/USDT) with ``net`` % net spread;
    ``over`` replaces any field. ``close`` events carry their close time and reason."""
    fields: dict[str, Any] = {
        "id": oid,
        "event": event,
        "symbol": "BTC/USDT",
        "buy_exchange": "binance",
        "sell_exchange": "kraken",
        "buy_symbol": "BTC/USDT",
        "sell_symbol": "BTC/USDT",
        "buy_price": "64000.10",
        "sell_price": "64300.00",
        "spread_pct": net,
        "net_spread_pct": net,
        "gross_spread_pct": net + 0.2,
        "peak_net_spread_pct": net,
        "profit": 114.44,
        "currency": "USDT",
        "quantity": 0.65,
        "buy_vwap": 64001.5,
        "sell_vwap": 64290.0,
        "size_source": "book",
        "profit_curve": [ProfitPoint(size=1000.0, profit=2.9)],
        "conversion": "none",
        "fees": BuySell(buy=0.1, sell=0.26),
        "age_ms": BuySell(buy=30.0, sell=0.0),
        "opened_at": 1_700_000_000_000,
        "closed_at": 1_700_000_001_000 if event == "close" else None,
        "duration_ms": 1000 if event == "close" else 118,
        "close_reason": "spread" if event == "close" else None,
        "timestamp": 1_700_000_000_230,
    }
    fields.update(over)
    return Arbitrage(**fields)


_MS = 1_700_000_000_000
_NS = _MS * 1_000_000


def sample_quote(
    exchange: str = "binance",
    symbol: str = "BTC/USDT",
    bid: str = "1.0",
    ask: str = "2.0",
    **over: Any,
) -> Quote:
    """A ``price`` event; ``over`` replaces any other field (sizes, times, sequence)."""
    fields: dict[str, Any] = {
        "bid_size": "1",
        "ask_size": "1",
        "timestamp": _MS,
        "received_ns": _NS,
        **over,
    }
    return Quote(exchange=exchange, symbol=symbol, bid=bid, ask=ask, **fields)


def sample_trade(
    exchange: str = "binance", symbol: str = "BTC/USDT", price: str = "1.5", **over: Any
) -> Trade:
    """A ``trade`` event (a buy of 0.5); ``over`` replaces any other field."""
    fields: dict[str, Any] = {
        "size": "0.5",
        "side": "buy",
        "id": "1",
        "timestamp": _MS,
        "received_ns": _NS,
        **over,
    }
    return Trade(exchange=exchange, symbol=symbol, price=price, **fields)


def sample_status(
    exchange: str = "binance", state: str = "live", symbol: str = "", **over: Any
) -> FeedStatus:
    """A ``status`` event: the exchange's first connection without ``symbol``, else that
    symbol's book; ``over`` replaces any other field."""
    fields: dict[str, Any] = {
        "scope": "book" if symbol else "connection",
        "connection": f"{exchange}-1",
        "timestamp": _MS,
        **over,
    }
    return FeedStatus(exchange=exchange, symbol=symbol, state=state, **fields)
