"""Quote groups: which markets are compared with each other, and in what currency.

``BTC/USD`` on one exchange and ``BTC/USDT`` on another are different markets. With
``quote_groups = [["USD", "USDT", "USDC"]]`` they fall into one comparison group, keyed
``(base, reference)`` where the reference is the group's first currency (``("BTC", "USD")``).
A quote currency in no group is its own reference, so ``BTC/EUR`` is only ever compared with
other ``BTC/EUR`` markets.

Each leg carries a :class:`Converter` from its quote currency to the reference:

- the reference itself: rate 1, no label;
- ``conversion = "par"``: rate 1, label ``par``;
- ``conversion = "live"``: the mid of the configured conversion market (``kraken:USDT/USD``;
  ``USD/USDT`` works too and is inverted), labelled ``kraken:USDT/USD@1.0002``. The market's leg
  is gated like any leg (fresh, exchange up, book valid): while it is not usable the rate is
  ``None`` and markets in that currency are compared only with markets in the same currency.

Two legs in the same quote currency never need a conversion (``conversion: "none"``): the rate
would cancel out of the spread, and their profit is stated in that currency.
Conversion prices are valuations, not trades: no fee is charged on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from arbd.config import Config
from arbd.errors import ConfigError

if TYPE_CHECKING:
    from arbd.arbitrage.legs import Leg

NO_CONVERSION: Final = "none"


class Converter:
    """How prices in one quote currency become prices in its group's reference currency."""

    __slots__ = ("currency", "inverted", "label", "market", "reference")

    def __init__(
        self,
        currency: str,
        reference: str,
        label: str,
        market: Leg | None = None,
        inverted: bool = False,
    ) -> None:
        self.currency = currency
        self.reference = reference
        self.label = label
        """``""`` for the reference itself, ``"par"``, or the market as ``exchange:SYMBOL``."""
        self.market = market
        self.inverted = inverted

    @property
    def live(self) -> bool:
        return self.market is not None

    def rate(self, horizon_ns: int) -> float | None:
        """Reference units per unit of ``currency``; ``None`` while the market is unusable."""
        market = self.market
        if market is None:
            return 1.0
        if market.gate(horizon_ns) is not None or market.bid <= 0 or market.ask == float("inf"):
            return None
        mid = (market.bid + market.ask) / 2.0
        return 1.0 / mid if self.inverted else mid

    def last_rate(self) -> float:
        """The latest rate whatever its age (1 before any): for accounting, never for trading."""
        market = self.market
        if market is None or market.bid <= 0 or market.ask == float("inf"):
            return 1.0
        mid = (market.bid + market.ask) / 2.0
        return 1.0 / mid if self.inverted else mid

    def describe(self, rate: float) -> str:
        return f"{self.label}@{rate:.6g}" if self.market is not None else self.label


class QuoteGroups:
    """The static part of the grouping: currency -> reference, and the conversion markets."""

    def __init__(
        self, groups: Sequence[Sequence[str]], conversion: str, markets: Sequence[str]
    ) -> None:
        self.reference: dict[str, str] = {c: group[0] for group in groups for c in group}
        self.live = conversion == "live"
        self.par = not self.live
        self.markets: dict[str, tuple[str, str, bool]] = {}
        """currency -> (exchange, symbol, inverted): the market that prices it, live only."""
        if self.live:
            for market in markets:
                exchange, _, symbol = market.partition(":")
                base, _, quote = symbol.partition("/")
                if self.reference.get(base) == quote and base != quote:
                    self.markets[base] = (exchange, symbol, False)
                elif self.reference.get(quote) == base and base != quote:
                    self.markets[quote] = (exchange, symbol, True)

    def reference_of(self, currency: str) -> str:
        return self.reference.get(currency, currency)

    def group_key(self, symbol: str) -> tuple[str, str]:
        """``(base, reference)`` of a ``BASE/QUOTE`` symbol."""
        base, _, quote = symbol.partition("/")
        return base, self.reference_of(quote)


def pair_conversion(buy: Leg, sell: Leg, horizon_ns: int) -> tuple[float, float, str] | str:
    """Rates (buy, sell) into the pair's comparison currency and the conversion label, or the
    reason key the pair cannot be compared now (``"conversion_stale"``)."""
    if buy.quote == sell.quote:
        return 1.0, 1.0, NO_CONVERSION
    buy_rate = buy.conv.rate(horizon_ns)
    sell_rate = sell.conv.rate(horizon_ns)
    if buy_rate is None or sell_rate is None:
        return "conversion_stale"
    labels = [c.describe(r) for c, r in ((buy.conv, buy_rate), (sell.conv, sell_rate)) if c.label]
    # par on both sides reads "par" once; live names each market it used.
    return buy_rate, sell_rate, ",".join(dict.fromkeys(labels))


def stale_conversion(buy: Leg, sell: Leg, horizon_ns: int) -> str:
    """The conversion market that makes ``(buy, sell)`` incomparable, as ``exchange:SYMBOL``."""
    for conv in (buy.conv, sell.conv):
        if conv.rate(horizon_ns) is None:
            return conv.label
    return ""


def conversion_symbols(config: Config, file: str = "") -> dict[str, list[str]]:
    """Exchange id -> the conversion markets it must subscribe for ``conversion = "live"``.

    A conversion market on an exchange that is not configured and enabled is a ConfigError
    (``file`` names the configuration in its message)."""
    arb = config.arbitrage
    if not arb.enabled or arb.conversion != "live":
        return {}
    symbols: dict[str, list[str]] = {}
    for i, market in enumerate(arb.conversion_markets):
        exchange_id, _, symbol = market.partition(":")
        section = config.exchanges.get(exchange_id)
        if section is None or not section.enabled:
            raise ConfigError(
                f"{market!r}: exchange {exchange_id!r} is not configured and enabled",
                path=file,
                key=f"arbitrage.conversion_markets[{i}]",
            )
        symbols.setdefault(exchange_id, []).append(symbol)
    return symbols
