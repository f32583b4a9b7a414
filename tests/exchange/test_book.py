from hypothesis import given
from hypothesis import strategies as st

from arbd.exchange.book import OrderBook


def test_snapshot_then_deltas_keep_exact_text_and_order():
    book = OrderBook()
    book.replace(
        bids=[("100.10", "1.0"), ("100.30", "2"), ("100.20", "0.5")],
        asks=[("100.50", "3"), ("100.40", "1.25")],
        sequence=7,
    )
    assert book.top_bids(5) == [("100.30", "2"), ("100.20", "0.5"), ("100.10", "1.0")]
    assert book.top_asks(1) == [("100.40", "1.25")]
    book.apply(bids=[("100.30", "0.00000000"), ("100.25", "4")], asks=[("100.40", "2")], sequence=8)
    assert book.best_bid() == ("100.25", "4")
    assert book.best_ask() == ("100.40", "2")
    assert book.sequence == 8
    assert len(book) == 5


def test_removing_an_absent_level_is_harmless():
    book = OrderBook()
    book.apply(bids=[("1", "0")], asks=[])
    assert len(book) == 0


def test_crossed_and_locked_books_are_detected():
    book = OrderBook()
    book.replace(bids=[("10", "1")], asks=[("11", "1")])
    assert not book.is_crossed()
    book.apply(bids=[("11", "1")], asks=[])
    assert book.is_crossed()  # locked: bid == ask
    book.apply(bids=[("11", "0"), ("12", "1")], asks=[])
    assert book.is_crossed()


def test_truncate_keeps_best_levels():
    book = OrderBook()
    book.replace(
        bids=[(str(p), "1") for p in range(1, 11)], asks=[(str(p), "1") for p in range(20, 30)]
    )
    book.truncate(3)
    assert [p for p, _ in book.top_bids(10)] == ["10", "9", "8"]
    assert [p for p, _ in book.top_asks(10)] == ["20", "21", "22"]


prices = st.decimals(min_value="0.01", max_value="100000", places=2, allow_nan=False)
sizes = st.sampled_from(["0", "0.5", "1", "2.25", "10"])


@given(st.lists(st.tuples(st.booleans(), prices, sizes), max_size=200))
def test_book_matches_a_plain_dict_model(updates):
    book = OrderBook()
    model = {True: {}, False: {}}
    for is_bid, price, size in updates:
        text = str(price)
        if is_bid:
            book.apply(bids=[(text, size)], asks=[])
        else:
            book.apply(bids=[], asks=[(text, size)])
        side = model[is_bid]
        key = float(text)
        if float(size) == 0:
            side.pop(key, None)
        else:
            side[key] = (text, size)
    expected_bids = [model[True][k] for k in sorted(model[True], reverse=True)]
    expected_asks = [model[False][k] for k in sorted(model[False])]
    assert book.top_bids(10_000) == expected_bids
    assert book.top_asks(10_000) == expected_asks
