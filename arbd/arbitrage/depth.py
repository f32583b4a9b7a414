"""The depth walk: how much of an opportunity can actually be traded, and at what profit.

Buy on the ask side of one book, sell on the bid side of another. Walking both books best level
first, the *marginal* net spread (next unit's sell price after fee against its buy price after
fee, both in the comparison currency) only falls, so the largest tradable quantity is where it
drops below the threshold, or where a book or the notional cap runs out:

    marginal spread ok  ⇔  bid * sell_factor ≥ ask * buy_factor * (1 + threshold/100)
    buy_factor  = (1 + buy fee) * buy rate       sell_factor = (1 - sell fee) * sell rate

The quantity is then rounded down to the pair's lot (the least common multiple of the two legs'
lot sizes, so it is a valid order size on both exchanges). Profit at a quantity ``q`` is
``sell_value(q) * sell_factor - buy_cost(q) * buy_factor`` where ``*_value`` is the book's
Σ price * size over the first ``q`` units.

Levels arrive as exact decimal text; :class:`Levels` converts them with ``float()`` one level at
a time and only as far as a walk reaches, so a 5000-level book costs what the walk uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

Level = tuple[str, str]

_LOT_EPSILON = 1e-9
"""Slack when flooring to a lot: 0.3 / 0.1 is 2.9999999999999996 in floats, and means 3 lots."""


class Levels:
    """One side of a book, best first, parsed lazily. Levels that do not parse or have a size
    of zero or less are skipped.

    ``top``: a newer best level than the book's (a ``price`` quote that arrived after the last
    book event). It is walked first, and the book's levels at or better than it are dropped:
    they have traded or been pulled since the book was published. ``asks`` says which way is
    worse (up for asks, down for bids).
    """

    __slots__ = ("_asks", "_limit", "_next", "_text", "_top", "prices", "sizes")

    def __init__(
        self, levels: Sequence[Level], top: Level | None = None, asks: bool = True
    ) -> None:
        self._text = levels
        self._next = 0
        self._top = top
        self._asks = asks
        self._limit: float | None = None
        self.prices: list[float] = []
        self.sizes: list[float] = []

    def has(self, i: int) -> bool:
        """Whether level ``i`` exists (parsing up to it)."""
        prices, text = self.prices, self._text
        if self._top is not None:
            top, self._top = self._top, None
            self._add(*top)
            self._limit = prices[0] if prices else None
        limit = self._limit
        while len(prices) <= i:
            n = self._next
            if n >= len(text):
                return False
            self._next = n + 1
            price, size = text[n]
            if limit is None:
                self._add(price, size)
                continue
            try:
                worse = float(price) > limit if self._asks else float(price) < limit
            except ValueError:
                continue
            if worse:
                self._add(price, size)
        return True

    def _add(self, price: str, size: str) -> None:
        try:
            p, s = float(price), float(size)
        except ValueError:
            return
        if p > 0 and s > 0 and math.isfinite(p) and math.isfinite(s):
            self.prices.append(p)
            self.sizes.append(s)


@dataclass(frozen=True, slots=True)
class PairTerms:
    """What turns native book prices into comparison-currency money for one pair."""

    buy_fee_pct: float
    sell_fee_pct: float
    buy_rate: float = 1.0
    sell_rate: float = 1.0

    @property
    def buy_factor(self) -> float:
        return (1.0 + self.buy_fee_pct / 100.0) * self.buy_rate

    @property
    def sell_factor(self) -> float:
        return (1.0 - self.sell_fee_pct / 100.0) * self.sell_rate


@dataclass(frozen=True, slots=True)
class Fill:
    """A quantity and what it costs and yields. Values are native (each leg's own quote)."""

    quantity: float
    buy_value: float
    """Σ ask * size bought (before fee)."""
    sell_value: float
    """Σ bid * size sold (before fee)."""
    profit: float
    """Net of fees, in the comparison currency."""

    @property
    def buy_vwap(self) -> float | None:
        return self.buy_value / self.quantity if self.quantity > 0 else None

    @property
    def sell_vwap(self) -> float | None:
        return self.sell_value / self.quantity if self.quantity > 0 else None


def lot_multiple(*lots: str | None) -> float | None:
    """The least common multiple of the lot sizes that are known (``None``: none known)."""
    result: Fraction | None = None
    for text in lots:
        if not text:
            continue
        try:
            lot = Fraction(Decimal(text))
        except (InvalidOperation, ValueError):
            continue
        if lot <= 0:
            continue
        if result is None:
            result = lot
        else:
            # lcm(a/b, c/d) = lcm(a, c) / gcd(b, d) for fractions in lowest terms.
            result = Fraction(
                math.lcm(result.numerator, lot.numerator),
                math.gcd(result.denominator, lot.denominator),
            )
    return float(result) if result is not None else None


def floor_to_lot(quantity: float, lot: float | None) -> float:
    if lot is None or lot <= 0:
        return quantity
    lots = math.floor(quantity / lot + _LOT_EPSILON)
    # round() removes the float noise of lots * lot (3 * 0.1 = 0.30000000000000004); the
    # min() keeps the slack from ever buying more than the books showed.
    return min(round(lots * lot, 12), quantity)


def max_quantity(
    asks: Levels,
    bids: Levels,
    terms: PairTerms,
    *,
    threshold_pct: float,
    max_notional: float,
) -> float:
    """The largest quantity whose every unit still earns at least ``threshold_pct`` net, with
    neither leg's notional (in the comparison currency) above ``max_notional``."""
    buy_factor = terms.buy_factor * (1.0 + threshold_pct / 100.0)
    sell_factor = terms.sell_factor
    buy_rate, sell_rate = terms.buy_rate, terms.sell_rate
    i = j = 0
    if not (asks.has(0) and bids.has(0)):
        return 0.0
    ask_left, bid_left = asks.sizes[0], bids.sizes[0]
    quantity = bought = sold = 0.0
    while True:
        ask, bid = asks.prices[i], bids.prices[j]
        if bid * sell_factor < ask * buy_factor:
            break
        take = min(ask_left, bid_left)
        buy_room = (max_notional - bought) / (ask * buy_rate)
        sell_room = (max_notional - sold) / (bid * sell_rate)
        room = min(buy_room, sell_room)
        if room <= take:
            quantity += max(room, 0.0)
            break
        quantity += take
        bought += ask * take * buy_rate
        sold += bid * take * sell_rate
        ask_left -= take
        bid_left -= take
        if ask_left <= 0:
            i += 1
            if not asks.has(i):
                break
            ask_left = asks.sizes[i]
        if bid_left <= 0:
            j += 1
            if not bids.has(j):
                break
            bid_left = bids.sizes[j]
    return quantity


def value_of(levels: Levels, quantity: float) -> float | None:
    """Σ price * size over the first ``quantity`` units; ``None`` if the side is too thin."""
    value = 0.0
    left = quantity
    i = 0
    while left > 0:
        if not levels.has(i):
            # Float sums may leave a crumb of the last level: that is not "too thin".
            return value if left <= quantity * 1e-12 else None
        take = min(left, levels.sizes[i])
        value += levels.prices[i] * take
        left -= take
        i += 1
    return value


def quantity_for(levels: Levels, notional: float) -> float | None:
    """The quantity whose Σ price * size is ``notional``; ``None`` if the side is too thin."""
    quantity = 0.0
    left = notional
    i = 0
    while left > 0:
        if not levels.has(i):
            return quantity if left <= notional * 1e-12 else None
        price, size = levels.prices[i], levels.sizes[i]
        if price * size >= left:
            return quantity + left / price
        quantity += size
        left -= price * size
        i += 1
    return quantity


def fill(asks: Levels, bids: Levels, terms: PairTerms, quantity: float) -> Fill | None:
    """Cost, proceeds and net profit of trading ``quantity``; ``None`` if a side is too thin."""
    buy_value = value_of(asks, quantity)
    sell_value = value_of(bids, quantity)
    if buy_value is None or sell_value is None:
        return None
    profit = sell_value * terms.sell_factor - buy_value * terms.buy_factor
    return Fill(quantity, buy_value, sell_value, profit)


def profit_at(asks: Levels, bids: Levels, terms: PairTerms, size: float) -> float | None:
    """Net profit when buying ``size`` worth (comparison currency, before fee) of the asks."""
    quantity = quantity_for(asks, size / terms.buy_rate)
    if quantity is None:
        return None
    result = fill(asks, bids, terms, quantity)
    return None if result is None else result.profit


def walk(
    asks: Levels,
    bids: Levels,
    terms: PairTerms,
    *,
    threshold_pct: float,
    max_notional: float,
    lot: float | None,
) -> Fill:
    """The depth-aware fill: :func:`max_quantity` rounded down to ``lot``, with its values."""
    quantity = max_quantity(
        asks, bids, terms, threshold_pct=threshold_pct, max_notional=max_notional
    )
    quantity = floor_to_lot(quantity, lot)
    result = fill(asks, bids, terms, quantity) if quantity > 0 else None
    return result or Fill(0.0, 0.0, 0.0, 0.0)
