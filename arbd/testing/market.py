"""A deterministic market simulator shared by the fake exchanges (pure: no I/O, no clock).

One :class:`MarketSimulator` holds a price process per symbol (a random walk of the mid with
occasional jumps). Each fake exchange looks at it through an :class:`ExchangeBook` per symbol:
its own tick and lot, a depth-N book built around the mid *as that exchange sees it* (shifted by
the exchange's offset, which drifts and now and then spikes, and delayed by the exchange's lag),
and the trades that the book's movement implies. Because offsets and lags differ per exchange,
cross-exchange dislocations (and so arbitrage opportunities) happen now and then, as in real
markets, while most of the time prices agree within fees.

Everything is driven by explicit times passed in (``advance(now)``, ``step(now)``) and seeded
``random.Random`` instances, so a fake, a test and a benchmark see the same market every run.

Prices are held as integer ticks and sizes as integer lots and formatted with the tick's and the
lot's decimals, so every price text is exact (``"64000.10"``, never ``64000.100000001``).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

Level = tuple[str, str]


def decimals(step: str) -> int:
    """Decimal places of a tick or lot size: "0.01" -> 2, "1" -> 0, "0.50" -> 2."""
    exponent = Decimal(step).as_tuple().exponent
    return max(0, -int(exponent))


def fmt_units(units: int, places: int) -> str:
    """``units`` of 10**-places as exact decimal text."""
    if places == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    text = str(abs(units)).rjust(places + 1, "0")
    return f"{sign}{text[:-places]}.{text[-places:]}"


@dataclass
class _Symbol:
    mid: float
    volatility: float
    """Standard deviation of log-returns per second."""
    history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4096))


class MarketSimulator:
    """Mid prices per symbol over time. ``advance(now)`` moves every symbol to ``now``."""

    def __init__(self, seed: int = 0, start: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.now = start
        self.symbols: dict[str, _Symbol] = {}

    def add_symbol(self, symbol: str, price: float, volatility: float = 2e-4) -> None:
        state = _Symbol(mid=price, volatility=volatility)
        state.history.append((self.now, price))
        self.symbols[symbol] = state

    def advance(self, now: float) -> None:
        dt = now - self.now
        if dt <= 0:
            return
        self.now = now
        rng = self.rng
        for state in self.symbols.values():
            shock = rng.gauss(0.0, state.volatility * math.sqrt(dt))
            if rng.random() < 0.002 * dt:  # a rare jump of 0.2-1 %
                shock += rng.choice((-1, 1)) * rng.uniform(0.002, 0.01)
            state.mid *= math.exp(shock)
            state.history.append((now, state.mid))

    def mid(self, symbol: str, at: float | None = None) -> float:
        """The mid at time ``at`` (default: now); the nearest earlier sample for past times."""
        state = self.symbols[symbol]
        if at is None or at >= self.now:
            return state.mid
        # Exchange lags are short, so the wanted sample is near the end: scan backwards.
        for t, mid in reversed(state.history):
            if t <= at:
                return mid
        return state.history[0][1]


@dataclass
class BookUpdate:
    """What changed on one exchange book in one step: absolute sizes ("0" removes)."""

    bids: list[Level]
    asks: list[Level]
    trades: list[tuple[str, str, str]]
    """(price, size, taker side "buy"/"sell")."""


class ExchangeBook:
    """One exchange's L2 book for one symbol, following the simulator's mid."""

    def __init__(
        self,
        sim: MarketSimulator,
        symbol: str,
        *,
        tick: str,
        lot: str,
        depth: int = 50,
        offset_bps: float = 0.0,
        lag: float = 0.0,
        spread_ticks: int = 1,
        level_spacing: int | None = None,
        seed: int = 0,
    ) -> None:
        self.sim = sim
        self.symbol = symbol
        self.tick = Decimal(tick)
        self.price_places = decimals(tick)
        self.size_places = decimals(lot)
        self.lot_units = int(Decimal(lot).scaleb(self.size_places))
        self.tick_units = int(self.tick.scaleb(self.price_places))
        self.depth = depth
        self.base_offset_bps = offset_bps
        self.offset_bps = offset_bps
        self.lag = lag
        self.spread_ticks = max(1, spread_ticks)
        if level_spacing is None:
            # Below the best level, levels sit on a grid about 0.2 bps apart, as liquid books
            # look: a typical 100 ms move then changes a handful of levels, not the whole book.
            start = sim.mid(symbol) * (1.0 + offset_bps / 10_000.0)
            level_spacing = round(start * 2e-5 / float(self.tick))
        self.spacing = max(1, level_spacing)
        self.rng = random.Random(seed)
        self.bids: dict[int, int] = {}
        """price in ticks -> size in lot units"""
        self.asks: dict[int, int] = {}
        self._spike_until = -math.inf
        self._rebuild(self._center())

    # -- formatting ---------------------------------------------------------------------------

    def price(self, ticks: int) -> str:
        return fmt_units(ticks * self.tick_units, self.price_places)

    def size(self, units: int) -> str:
        return fmt_units(units, self.size_places)

    # -- state --------------------------------------------------------------------------------

    def _center(self) -> int:
        mid = self.sim.mid(self.symbol, self.sim.now - self.lag)
        mid *= 1.0 + self.offset_bps / 10_000.0
        floor = (self.depth + 1) * self.spacing + self.spread_ticks + 1
        return max(floor, round(mid / float(self.tick)))

    def _random_size(self) -> int:
        return self.lot_units * self.rng.randint(1, 5_000)

    def _levels(self, center: int) -> tuple[list[int], list[int]]:
        """Bid and ask prices (ticks) around ``center``: the best level of each side next to
        the spread, the deeper ones on the fixed ``spacing`` grid (so they stay put as the
        centre moves)."""
        s = self.spacing
        best_bid, best_ask = center - 1, center - 1 + self.spread_ticks
        bids, asks = [best_bid], [best_ask]
        price = (best_bid - 1) // s * s
        while len(bids) < self.depth:
            bids.append(price)
            price -= s
        price = -(-(best_ask + 1) // s) * s
        while len(asks) < self.depth:
            asks.append(price)
            price += s
        return bids, asks

    def _rebuild(self, center: int) -> None:
        bids, asks = self._levels(center)
        self.bids = {p: self._random_size() for p in bids}
        self.asks = {p: self._random_size() for p in asks}

    def snapshot(self, depth: int | None = None) -> tuple[list[Level], list[Level]]:
        """Best-first levels of each side."""
        n = self.depth if depth is None else depth
        bids = [
            (self.price(p), self.size(self.bids[p])) for p in sorted(self.bids, reverse=True)[:n]
        ]
        asks = [(self.price(p), self.size(self.asks[p])) for p in sorted(self.asks)[:n]]
        return bids, asks

    def best(self) -> tuple[Level, Level]:
        bid = max(self.bids)
        ask = min(self.asks)
        return (self.price(bid), self.size(self.bids[bid])), (
            self.price(ask),
            self.size(self.asks[ask]),
        )

    def _drift_offset(self, now: float) -> None:
        rng = self.rng
        if now < self._spike_until:
            return
        if rng.random() < 0.01:  # a dislocation: this exchange lags or leads for a few seconds
            self.offset_bps = self.base_offset_bps + rng.choice((-1, 1)) * rng.uniform(15, 60)
            self._spike_until = now + rng.uniform(1.0, 5.0)
        else:  # mean-reverting wander of a few bps
            self.offset_bps += 0.2 * (self.base_offset_bps - self.offset_bps) + rng.gauss(0, 0.5)

    def cross(self) -> BookUpdate:
        """Put a bid one tick above the best ask (a crossed book, the fault real feeds show
        after a lost update). The next :meth:`step` removes it again."""
        price = min(self.asks) + 1
        self.bids[price] = self._random_size()
        return BookUpdate(
            bids=[(self.price(price), self.size(self.bids[price]))], asks=[], trades=[]
        )

    def step(self, now: float) -> BookUpdate:
        """Move this book to the simulator's current state; return the changes and trades."""
        self._drift_offset(now)
        old_bids, old_asks = dict(self.bids), dict(self.asks)
        old_best_bid, old_best_ask = max(old_bids), min(old_asks)
        center = self._center()
        new_best_bid = center - 1
        trades: list[tuple[str, str, str]] = []
        # Re-range both sides around the new centre every step (sizes of prices that stay are
        # kept, new prices get fresh sizes): this also repairs an injected crossing level.
        bid_prices, ask_prices = self._levels(center)
        self.bids = {p: old_bids.get(p) or self._random_size() for p in bid_prices}
        self.asks = {p: old_asks.get(p) or self._random_size() for p in ask_prices}
        if new_best_bid > old_best_bid:  # price went up: buyers lifted the old asks
            trades.append(
                (
                    self.price(old_best_ask),
                    self.size(self.lot_units * self.rng.randint(1, 500)),
                    "buy",
                )
            )
        elif new_best_bid < old_best_bid:
            trades.append(
                (
                    self.price(old_best_bid),
                    self.size(self.lot_units * self.rng.randint(1, 500)),
                    "sell",
                )
            )
        # Liquidity churn: a few levels change size.
        for side in (self.bids, self.asks):
            for _ in range(self.rng.randint(0, 3)):
                price = self.rng.choice(list(side))
                side[price] = self._random_size()
        if self.rng.random() < 0.5:
            side_name = self.rng.choice(("buy", "sell"))
            price = min(self.asks) if side_name == "buy" else max(self.bids)
            trades.append(
                (self.price(price), self.size(self.lot_units * self.rng.randint(1, 200)), side_name)
            )
        return BookUpdate(
            bids=_diff(self, old_bids, self.bids),
            asks=_diff(self, old_asks, self.asks),
            trades=trades,
        )


def _diff(book: ExchangeBook, old: dict[int, int], new: dict[int, int]) -> list[Level]:
    changes = [(book.price(p), book.size(s)) for p, s in new.items() if old.get(p) != s]
    changes.extend((book.price(p), book.size(0)) for p in old if p not in new)
    return changes
