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
from bisect import bisect_left
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

    __slots__ = (
        "_asks",
        "_limit",
        "_next",
        "_text",
        "cum_sizes",
        "cum_values",
        "prices",
        "sizes",
    )

    def __init__(
        self, levels: Sequence[Level], top: Level | None = None, asks: bool = True
    ) -> None:
        self._text = levels
        self._next = 0
        self._asks = asks
        self._limit: float | None = None
        self.prices: list[float] = []
        self.sizes: list[float] = []
        # Prefix sums (size, price * size) up to each parsed level: fills and profits at any
        # quantity are then a bisect, not a walk (an event needs several of them).
        self.cum_sizes: list[float] = []
        self.cum_values: list[float] = []
        if top is not None:
            self._text = [top]
            self._more()
            self._limit = self.prices[0] if self.prices else None
            self._text, self._next = levels, 0

    def has(self, i: int) -> bool:
        """Whether level ``i`` exists (parsing up to it)."""
        while len(self.prices) <= i:
            if not self._more():
                return False
        return True

    def _more(self) -> bool:
        """Parse more usable levels (a chunk that doubles each time, so a long book costs what
        the walks reach and a short one is parsed in one tight loop); False at the end."""
        text, limit, asks = self._text, self._limit, self._asks
        prices, sizes = self.prices, self.sizes
        cum_sizes, cum_values = self.cum_sizes, self.cum_values
        total_size = cum_sizes[-1] if cum_sizes else 0.0
        total_value = cum_values[-1] if cum_values else 0.0
        count = len(prices)
        while len(prices) == count:
            start = self._next
            if start >= len(text):
                return False
            end = min(len(text), start + max(8, count))
            self._next = end
            for price, size in text[start:end]:
                try:
                    p, q = float(price), float(size)
                except ValueError:
                    continue
                # 0 < p is False for NaN; the upper bounds drop infinities.
                if not (0 < p < math.inf and 0 < q < math.inf):
                    continue
                if limit is not None and (p <= limit if asks else p >= limit):
                    continue  # at or better than a newer top of book: gone
                prices.append(p)
                sizes.append(q)
                total_size += q
                total_value += p * q
                cum_sizes.append(total_size)
                cum_values.append(total_value)
        return True

    def value_of(self, quantity: float) -> float | None:
        """Sum of price * size over the first ``quantity`` units; ``None`` if too thin."""
        cum = self.cum_sizes
        while not cum or cum[-1] < quantity:
            if not self._more():
                # Float sums may leave a crumb of the last level: that is not "too thin".
                if cum and quantity - cum[-1] <= quantity * 1e-12:
                    return self.cum_values[-1]
                return None if quantity > 0 else 0.0
        i = bisect_left(cum, quantity)
        before_size = cum[i - 1] if i else 0.0
        before_value = self.cum_values[i - 1] if i else 0.0
        return before_value + (quantity - before_size) * self.prices[i]

    def quantity_for(self, notional: float) -> float | None:
        """The quantity whose sum of price * size is ``notional``; ``None`` if too thin."""
        cum = self.cum_values
        while not cum or cum[-1] < notional:
            if not self._more():
                if cum and notional - cum[-1] <= notional * 1e-12:
                    return self.cum_sizes[-1]
                return None if notional > 0 else 0.0
        i = bisect_left(cum, notional)
        before_size = self.cum_sizes[i - 1] if i else 0.0
        before_value = cum[i - 1] if i else 0.0
        return before_size + (notional - before_value) / self.prices[i]


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
            if i >= len(asks.prices) and not asks.has(i):
                break
            ask_left = asks.sizes[i]
        if bid_left <= 0:
            j += 1
            if j >= len(bids.prices) and not bids.has(j):
                break
            bid_left = bids.sizes[j]
    return quantity


def value_of(levels: Levels, quantity: float) -> float | None:
    """Sum of price * size over the first ``quantity`` units; ``None`` if the side is too thin."""
    return levels.value_of(quantity)


def quantity_for(levels: Levels, notional: float) -> float | None:
    """The quantity whose sum of price * size is ``notional``; ``None`` if the side is too
    thin."""
    return levels.quantity_for(notional)


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
