"""A batch (one socket read) is judged once, on the state after its last event."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import Run, book, quote, status
from .conftest import settings as arb_settings

FAST = arb_settings(min_updates=1)


def test_a_batch_is_judged_on_its_last_quote_of_each_market():
    one_by_one, batched = Run(FAST), Run(FAST)
    calm = (quote("a", "100.00", "100.10", 0), quote("b", "100.00", "100.10", 0))
    # Within one read, "a" dips far below "b" and comes back: never observable apart.
    read = (quote("a", "98.00", "98.10", 1), quote("a", "100.01", "100.11", 1))
    one_by_one.feed(*calm, *read)
    batched.feed(*calm)
    batched.read(*read)
    assert [step[0] for step in one_by_one.steps()] == ["open", "close"]
    assert batched.events == []
    # The state is the last quote's either way.
    assert batched.engine.best("BTC/USDT") == one_by_one.engine.best("BTC/USDT")


def test_an_opportunity_found_in_a_batch_opens_with_the_batch_prices():
    run = Run(FAST)
    run.feed(quote("a", "100.00", "100.10", 0), quote("b", "100.00", "100.10", 0))
    [opened] = run.read(
        quote("b", "103.00", "103.10", 1),
        quote("a", "99.00", "99.10", 1),
        quote("b", "102.00", "102.10", 1),
    )
    assert (opened.event, opened.buy_exchange, opened.sell_exchange) == ("open", "a", "b")
    assert (opened.buy_price, opened.sell_price) == ("99.10", "102.00")


def test_a_status_event_splits_the_batch_in_order():
    run = Run(FAST)
    run.feed(quote("b", "100.00", "100.10", 0))
    # The book goes invalid, then a new valid book arrives in the same read: usable.
    run.read(
        status("a", "book", "resyncing", 1, symbol="BTC/USDT"),
        book("a", [("99.00", "1")], [("99.05", "1")], 1),
    )
    assert run.engine.best("BTC/USDT") is not None
    assert [step[0] for step in run.steps()] == ["open"]
    # A book, then its invalidation in the same read: not usable, and the opportunity closes.
    run.read(
        book("a", [("98.00", "1")], [("98.05", "1")], 2),
        status("a", "book", "resyncing", 2, symbol="BTC/USDT"),
    )
    assert run.engine.best("BTC/USDT") is None
    assert [step[0] for step in run.steps()] == ["open", "close"]
    assert run.events[-1].close_reason == "book_invalid:a"


def test_min_updates_counts_batches_not_quotes():
    run = Run(arb_settings(min_updates=3, min_duration=60.0))
    run.feed(quote("a", "99.00", "99.10", 0), quote("b", "102.00", "102.10", 0))  # 1 update
    # Both legs change in one read: one more update (2), not two.
    assert run.read(quote("a", "99.00", "99.11", 1), quote("b", "102.01", "102.11", 1)) == []
    [opened] = run.read(quote("b", "102.02", "102.12", 2))
    assert opened.event == "open"
    assert (opened.buy_price, opened.sell_price) == ("99.11", "102.02")


markets = st.sampled_from(["a", "b", "c"])
cents = st.integers(9_900, 10_100)


@settings(max_examples=100, deadline=None)
@given(
    updates=st.lists(
        st.tuples(markets, cents, st.integers(1, 30), st.booleans()), min_size=1, max_size=15
    )
)
def test_batched_and_one_by_one_end_in_the_same_best_pair(updates):
    """Whatever the quotes and books of one read, the engine's view after it is the same
    as after feeding them one by one."""
    events = []
    for exchange, bid, width, as_book in updates:
        bid_text, ask_text = f"{bid / 100:.2f}", f"{(bid + width) / 100:.2f}"
        if as_book:
            events.append(book(exchange, [(bid_text, "1")], [(ask_text, "1")], 1))
        else:
            events.append(quote(exchange, bid_text, ask_text, 1))
    one_by_one, batched = Run(FAST), Run(FAST)
    one_by_one.feed(*events)
    batched.read(*events)
    assert batched.engine.best("BTC/USDT") == one_by_one.engine.best("BTC/USDT")
    # What is open at the end is open in both (intermediate states may differ).
    open_pairs = {(o.buy.key, o.sell.key) for o in batched.engine.open_opportunities()}
    assert open_pairs <= {(o.buy.key, o.sell.key) for o in one_by_one.engine.open_opportunities()}
