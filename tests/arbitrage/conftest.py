"""Plain-value builders for the arbitrage tests: events in, ``arbitrage`` events out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import pytest

from arbd.arbitrage.engine import ArbitrageEngine
from arbd.config import ArbitrageConfig
from arbd.model import Arbitrage, Book, Event, FeedStatus, Quote
from arbd.plugins import PluginRegistry, load_plugins
from arbd_simplex.adapter import SimplexAdapter

S = 1_700_000_000_000_000_000
"""A base time, ns since the epoch."""
MS = 1_000_000
FEES = {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1}


class MirrorAdapter(SimplexAdapter):
    """The simplex adapter under a second id: two exchanges from one fake protocol."""

    spec = msgspec.structs.replace(SimplexAdapter.spec, id="mirror", name="Mirror")


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    """Simplex and its mirror, nothing else installed."""
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "simplex"})
    registry.exchanges["mirror"] = MirrorAdapter
    return registry


def settings(**changes: Any) -> ArbitrageConfig:
    """The default settings with ``changes`` (validated the way a config file is)."""
    return msgspec.structs.replace(ArbitrageConfig(), **changes)


def quote(
    exchange: str,
    bid: str,
    ask: str,
    at_ms: float,
    symbol: str = "BTC/USDT",
    bid_size: str = "1",
    ask_size: str = "1",
) -> Quote:
    ns = S + round(at_ms * MS)
    return Quote(
        exchange=exchange,
        symbol=symbol,
        bid=bid,
        ask=ask,
        bid_size=bid_size,
        ask_size=ask_size,
        timestamp=ns // MS,
        received_ns=ns,
    )


def book(
    exchange: str,
    bids: Sequence[tuple[str, str]],
    asks: Sequence[tuple[str, str]],
    at_ms: float,
    symbol: str = "BTC/USDT",
) -> Book:
    ns = S + round(at_ms * MS)
    return Book(
        exchange=exchange,
        symbol=symbol,
        bids=list(bids),
        asks=list(asks),
        depth=20,
        timestamp=ns // MS,
        received_ns=ns,
    )


def status(
    exchange: str,
    scope: str,
    state: str,
    at_ms: float,
    *,
    symbol: str = "",
    channel: str = "",
    connection: str = "",
) -> FeedStatus:
    return FeedStatus(
        exchange=exchange,
        symbol=symbol,
        scope=scope,  # type: ignore[arg-type]
        state=state,
        connection=connection,
        channel=channel,
        timestamp=(S + round(at_ms * MS)) // MS,
    )


class Run:
    """An engine plus everything it published, fed one event (one batch) at a time."""

    def __init__(
        self,
        config: ArbitrageConfig | None = None,
        fees: Mapping[str, float] = FEES,
        lots: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        lot_table = dict(lots or {})
        self.engine = ArbitrageEngine(
            config or settings(), fees, lambda exchange, symbol: lot_table.get((exchange, symbol))
        )
        self.events: list[Arbitrage] = []

    def _keep(self, events: Sequence[Event]) -> list[Arbitrage]:
        new = [e for e in events if isinstance(e, Arbitrage)]
        assert len(new) == len(events)
        self.events.extend(new)
        return new

    def feed(self, *events: Event) -> list[Arbitrage]:
        """Each event as its own batch; returns what they produced."""
        produced: list[Arbitrage] = []
        for event in events:
            produced += self._keep(self.engine([event]))
        return produced

    def read(self, *events: Event) -> list[Arbitrage]:
        """All of ``events`` as one batch, as one socket read publishes them."""
        return self._keep(self.engine(list(events)))

    def tick(self, at_ms: float) -> list[Arbitrage]:
        return self._keep(self.engine.tick(S + round(at_ms * MS)))

    def steps(self) -> list[tuple[str, str, str, str | None]]:
        """(event, buy exchange, sell exchange, close reason) of everything published."""
        return [(e.event, e.buy_exchange, e.sell_exchange, e.close_reason) for e in self.events]


def prices_apart(spread_pct: float, mid: float = 64_000.0) -> tuple[str, str]:
    """A (low ask, high bid) whose gross spread is about ``spread_pct``."""
    ask = mid
    bid = mid * (1 + spread_pct / 100)
    return f"{ask:.2f}", f"{bid:.2f}"
