"""The sliding-window budget (pure): connection attempts (units of 1) and REST weight."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from arbd.feed.budget import SlidingBudget


def test_connection_attempts_per_window():
    budget = SlidingBudget(limit=3, window=10.0)
    for t in (0.0, 1.0, 2.0):
        assert budget.delay(t) == 0.0
        budget.take(t)
    assert budget.delay(3.0) == pytest.approx(7.0)
    assert budget.delay(10.0) == 0.0  # the attempt at t=0 has left the window
    budget.take(10.0)
    assert budget.delay(10.5) == pytest.approx(0.5)


def test_units_are_counted_by_weight_not_by_request():
    budget = SlidingBudget(limit=100, window=60.0)
    budget.take(0.0, 50)
    budget.take(1.0, 30)
    assert budget.used(1.0) == 80
    assert budget.delay(2.0, 20) == 0.0  # exactly fills the allowance
    assert budget.delay(2.0, 21) == pytest.approx(58.0)  # until the 50 at t=0 leaves
    budget.take(2.0, 20)
    assert budget.delay(5.0, 40) == pytest.approx(55.0)  # the 50 at t=0 is enough
    # 60 more need the first two entries (50 + 30) gone: the 30 leaves at 61.
    assert budget.delay(5.0, 60) == pytest.approx(56.0)
    assert budget.used(60.0) == 50  # the entry at t=0 left at exactly 60
    assert budget.delay(60.0, 60) == pytest.approx(1.0)
    assert budget.delay(61.0, 60) == 0.0
    assert budget.used(61.0) == 20


def test_a_small_request_may_pass_while_a_big_one_waits():
    budget = SlidingBudget(limit=100, window=60.0)
    budget.take(0.0, 90)
    assert budget.delay(1.0, 10) == 0.0
    assert budget.delay(1.0, 11) == pytest.approx(59.0)


def test_units_beyond_the_whole_limit_or_below_one_are_errors():
    budget = SlidingBudget(limit=6000, window=60.0)
    with pytest.raises(ValueError, match="6001 units can never fit a budget of 6000 per 60 s"):
        budget.delay(0.0, 6001)
    with pytest.raises(ValueError, match="can never fit"):
        budget.take(0.0, 6001)
    with pytest.raises(ValueError, match="at least 1"):
        budget.delay(0.0, 0)
    assert budget.delay(0.0, 6000) == 0.0
    with pytest.raises(ValueError):
        SlidingBudget(limit=0, window=60.0)
    with pytest.raises(ValueError):
        SlidingBudget(limit=10, window=0.0)


@given(
    limit=st.integers(1, 300),
    steps=st.lists(st.tuples(st.floats(0.0, 30.0), st.integers(1, 300)), min_size=1, max_size=60),
)
# Found by hypothesis: now + (deadline - now) fell an ulp short of the deadline.
@example(limit=1, steps=[(1.6447673799083966, 1), (15.226021149520527, 1)])
def test_spending_as_delay_says_never_exceeds_the_limit_in_any_window(limit, steps):
    window = 60.0
    budget = SlidingBudget(limit=limit, window=window)
    now = 0.0
    spent: list[tuple[float, int]] = []
    for gap, asked in steps:
        units = min(asked, limit)
        now += gap
        wait = budget.delay(now, units)
        assert wait >= 0.0
        if wait > 0:
            # Waiting less than it says is not enough; waiting that long is.
            assert budget.delay(now + wait * 0.999, units) > 0
            now += wait
            assert budget.delay(now, units) == 0.0
        budget.take(now, units)
        spent.append((now, units))
        # At every spend, what is still inside the window (spent at `at` and `at + window`
        # not yet reached) holds at most `limit` units.
        for t, _ in spent:
            assert sum(u for at, u in spent if at <= t < at + window) <= limit
