"""The depth walk against an exact brute-force reference, and its unit cases."""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.arbitrage.depth import (
    Levels,
    PairTerms,
    fill,
    floor_to_lot,
    lot_multiple,
    max_quantity,
    profit_at,
    walk,
)

# -- an exact reference: rational arithmetic, every segment between level boundaries ----------


def exact(levels: list[tuple[str, str]]) -> list[tuple[Fraction, Fraction]]:
    return [(Fraction(Decimal(p)), Fraction(Decimal(s))) for p, s in levels]


def price_at(levels: list[tuple[Fraction, Fraction]], x: Fraction) -> Fraction:
    """Price of the unit just after the first ``x`` units."""
    cumulative = Fraction(0)
    for price, size in levels:
        cumulative += size
        if x < cumulative:
            return price
    raise AssertionError("past the end of the book")


def value(levels: list[tuple[Fraction, Fraction]], q: Fraction) -> Fraction:
    total, left = Fraction(0), q
    for price, size in levels:
        take = min(size, left)
        total += price * take
        left -= take
    assert left == 0
    return total


def quantity_for_value(levels: list[tuple[Fraction, Fraction]], target: Fraction) -> Fraction:
    """The largest q with value(q) <= target (all of the book if it never reaches it)."""
    q, spent = Fraction(0), Fraction(0)
    for price, size in levels:
        if spent + price * size >= target:
            return q + (target - spent) / price
        q += size
        spent += price * size
    return q


def reference_quantity(
    asks: list[tuple[str, str]],
    bids: list[tuple[str, str]],
    fees: tuple[str, str],
    rates: tuple[str, str],
    threshold: str,
    max_notional: str,
    lot: str | None,
) -> Fraction:
    a, b = exact(asks), exact(bids)
    fee_b, fee_s = (Fraction(Decimal(f)) / 100 for f in fees)
    rate_b, rate_s = (Fraction(Decimal(r)) for r in rates)
    k = 1 + Fraction(Decimal(threshold)) / 100
    total = min(sum(s for _, s in a), sum(s for _, s in b))
    bounds = {Fraction(0), total}
    for side in (a, b):
        cumulative = Fraction(0)
        for _, size in side:
            cumulative += size
            if cumulative < total:
                bounds.add(cumulative)
    points = sorted(bounds)
    q = Fraction(0)
    for x0, x1 in itertools.pairwise(points):
        ask, bid = price_at(a, x0), price_at(b, x0)
        if bid * (1 - fee_s) * rate_s < ask * (1 + fee_b) * rate_b * k:
            break
        q = x1
    cap = Fraction(Decimal(max_notional))
    q = min(q, quantity_for_value(a, cap / rate_b), quantity_for_value(b, cap / rate_s))
    if lot is not None:
        step = Fraction(Decimal(lot))
        q = (q // step) * step
    return q


# -- strategies ------------------------------------------------------------------------------


def side(start: int, direction: int) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Levels in cents from ``start`` moving ``direction`` (+1 asks, -1 bids)."""
    steps = st.lists(st.integers(1, 50), min_size=1, max_size=8)
    sizes = st.lists(st.integers(1, 5000), min_size=8, max_size=8)

    def build(gaps: list[int], lots: list[int]) -> list[tuple[str, str]]:
        levels, price = [], start
        for gap, size in zip(gaps, lots, strict=False):
            levels.append((f"{price / 100:.2f}", f"{size / 1000:.3f}"))
            price += direction * gap
        return levels

    return st.builds(build, steps, sizes)


books = st.tuples(st.integers(9_900, 10_100), st.integers(9_950, 10_200)).flatmap(
    lambda p: st.tuples(side(p[0], +1), side(p[1], -1))
)
fee = st.sampled_from(["0", "0.05", "0.1", "0.25", "0.6"])
rate = st.sampled_from(["1", "0.9995", "1.0002", "1.01"])
lots = st.sampled_from([None, "0.001", "0.01", "0.1", "0.003"])


@settings(max_examples=150, deadline=None)
@given(
    books=books,
    fees=st.tuples(fee, fee),
    rates=st.tuples(rate, rate),
    threshold=st.sampled_from(["0", "0.05", "0.1", "0.3"]),
    max_notional=st.sampled_from(["50", "200", "1000", "100000"]),
    lot=lots,
)
def test_depth_walk_equals_the_brute_force_reference(
    books, fees, rates, threshold, max_notional, lot
):
    asks, bids = books
    terms = PairTerms(float(fees[0]), float(fees[1]), float(rates[0]), float(rates[1]))
    got = walk(
        Levels(asks),
        Levels(bids),
        terms,
        threshold_pct=float(threshold),
        max_notional=float(max_notional),
        lot=lot_multiple(lot),
    )
    want = reference_quantity(asks, bids, fees, rates, threshold, max_notional, lot)
    if lot is not None and abs(float(want) - got.quantity) > 1e-9:
        # Only a float-vs-exact tie at a lot boundary may differ, and then by one lot.
        assert (
            abs(float(want) - got.quantity - float(Decimal(lot))) < 1e-9
            or abs(got.quantity - float(want) - float(Decimal(lot))) < 1e-9
        )
        return
    assert got.quantity == pytest.approx(float(want), rel=1e-9, abs=1e-12)
    if want > 0:
        a, b = exact(asks), exact(bids)
        fee_b, fee_s = (Fraction(Decimal(f)) / 100 for f in fees)
        rate_b, rate_s = (Fraction(Decimal(r)) for r in rates)
        profit = value(b, want) * (1 - fee_s) * rate_s - value(a, want) * (1 + fee_b) * rate_b
        assert got.profit == pytest.approx(float(profit), rel=1e-7, abs=1e-7)
        # Every unit walked earns at least the threshold, so the whole fill does too.
        assert got.profit >= -1e-9
        assert got.buy_vwap == pytest.approx(float(value(a, want) / want), rel=1e-9)
        assert got.sell_vwap == pytest.approx(float(value(b, want) / want), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(books=books, fees=st.tuples(fee, fee), size=st.sampled_from(["10", "100", "1000", "5000"]))
def test_profit_at_a_size_equals_the_reference(books, fees, size):
    asks, bids = books
    a, b = exact(asks), exact(bids)
    terms = PairTerms(float(fees[0]), float(fees[1]))
    got = profit_at(Levels(asks), Levels(bids), terms, float(size))
    target = Fraction(Decimal(size))
    q = quantity_for_value(a, target)
    thin = value(a, q) < target or q > sum(s for _, s in b)
    if thin:
        assert got is None
        return
    fee_b, fee_s = (Fraction(Decimal(f)) / 100 for f in fees)
    want = value(b, q) * (1 - fee_s) - value(a, q) * (1 + fee_b)
    assert got == pytest.approx(float(want), rel=1e-7, abs=1e-7)


# -- unit cases ------------------------------------------------------------------------------

ASKS = [("100.00", "1"), ("100.50", "2"), ("101.00", "5")]
BIDS = [("101.00", "0.5"), ("100.80", "1"), ("100.00", "10")]
NO_FEES = PairTerms(0.0, 0.0)


def test_the_walk_stops_where_the_marginal_spread_falls_below_the_threshold():
    # 100.00 vs 101.00 (+1 %), then 100.00 vs 100.80, then 100.50 vs 100.80 (+0.3 %), then
    # 100.50 vs 100.00: the last marginal spread is negative.
    q = max_quantity(Levels(ASKS), Levels(BIDS), NO_FEES, threshold_pct=0.0, max_notional=1e9)
    assert q == pytest.approx(1.5)
    # A 0.5 % threshold keeps only the units bought at 100.00 and sold at 101.00 / 100.80.
    q = max_quantity(Levels(ASKS), Levels(BIDS), NO_FEES, threshold_pct=0.5, max_notional=1e9)
    assert q == pytest.approx(1.0)
    # With 0.6 % fees on each side nothing is left.
    fees = PairTerms(0.6, 0.6)
    assert max_quantity(Levels(ASKS), Levels(BIDS), fees, threshold_pct=0.0, max_notional=1e9) == 0


def test_max_notional_caps_either_leg():
    # Selling at 101 costs more notional than buying at 100: the sell leg binds first.
    q = max_quantity(Levels(ASKS), Levels(BIDS), NO_FEES, threshold_pct=0.0, max_notional=50.0)
    assert q == pytest.approx(50.0 / 101.0)
    # (For a profitable pair it always does: both legs count in the comparison currency.)
    # Priced through a rate of 2 (another quote currency), each unit counts twice as much.
    terms = PairTerms(0.0, 0.0, buy_rate=2.0, sell_rate=2.0)
    q = max_quantity(Levels(ASKS), Levels(BIDS), terms, threshold_pct=0.0, max_notional=50.0)
    assert q == pytest.approx(50.0 / 202.0)


def test_lot_rounding_uses_the_common_multiple_of_both_legs():
    assert lot_multiple("0.001", "0.0001") == pytest.approx(0.001)
    assert lot_multiple("0.003", "0.002") == pytest.approx(0.006)
    assert lot_multiple(None, "0.01") == pytest.approx(0.01)
    assert lot_multiple(None, None) is None
    assert lot_multiple("0", "x") is None
    assert floor_to_lot(0.3, 0.1) == 0.3  # 0.3 / 0.1 is 2.9999999999999996 in floats
    assert floor_to_lot(1.4999, 0.5) == 1.0
    assert floor_to_lot(1.23, None) == 1.23
    result = walk(Levels(ASKS), Levels(BIDS), NO_FEES, threshold_pct=0.0, max_notional=1e9, lot=0.4)
    assert result.quantity == pytest.approx(1.2)
    assert result.buy_vwap == pytest.approx((100.00 * 1 + 100.50 * 0.2) / 1.2)


def test_a_thin_book_has_no_profit_at_a_large_size():
    terms = PairTerms(0.1, 0.1)
    assert profit_at(Levels(ASKS), Levels(BIDS), terms, 100.0) is not None
    assert profit_at(Levels(ASKS), Levels(BIDS), terms, 10_000.0) is None
    assert fill(Levels(ASKS), Levels(BIDS), terms, 100.0) is None


def test_a_newer_top_of_book_replaces_the_levels_it_has_passed():
    # The book said 100.00 / 100.50; a later quote says the best ask is now 100.40.
    levels = Levels(ASKS, top=("100.40", "0.3"), asks=True)
    assert levels.has(2)
    assert levels.prices[:3] == [100.40, 100.50, 101.00]
    assert levels.sizes[:3] == [0.3, 2.0, 5.0]
    bids = Levels(BIDS, top=("100.90", "0.2"), asks=False)
    assert bids.has(1)
    assert bids.prices[:2] == [100.90, 100.80]


def test_levels_parse_lazily_and_skip_garbage():
    levels = Levels([("1.0", "1"), ("x", "1"), ("2.0", "0"), ("3.0", "2"), ("nan", "1")])
    assert levels.has(1)
    assert levels.prices == [1.0, 3.0]
    assert levels.cum_sizes == [1.0, 3.0]
    assert levels.cum_values == [1.0, 7.0]
    assert not levels.has(2)
    # A long book is parsed in growing chunks, only as far as the walks reach.
    long = Levels([(f"{100 + i}", "1") for i in range(5000)])
    assert long.value_of(3.5) == 100 + 101 + 102 + 103 * 0.5
    assert len(long.prices) < 20
    assert long.quantity_for(201.0) == 2.0
    assert long.value_of(6000.0) is None
    assert len(long.prices) == 5000
