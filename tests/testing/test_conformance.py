"""The conformance check's event half: each broken invariant is reported, good streams pass."""

from __future__ import annotations

from arbd.model import Book, FeedStatus, Quote
from arbd.testing.conformance import check_events


def book(bids, asks, seq=None, symbol="BTC/USDT"):
    return Book(
        exchange="x",
        symbol=symbol,
        bids=bids,
        asks=asks,
        depth=10,
        timestamp=1,
        received_ns=1,
        sequence=seq,
    )


def status(state):
    return FeedStatus(exchange="x", symbol="BTC/USDT", scope="book", state=state, timestamp=1)


GOOD = book([("100.0", "1")], [("100.5", "2")], seq=1)


def test_a_good_stream_has_no_problems():
    quote = Quote(
        exchange="x",
        symbol="BTC/USDT",
        bid="1.0",
        ask="1.1",
        bid_size="1",
        ask_size="1",
        timestamp=1,
        received_ns=1,
    )
    later = book([("100.0", "1")], [("100.5", "3")], seq=2)
    assert check_events([GOOD, quote, status("invalid"), status("valid"), later]) == []


def test_crossed_locked_and_unsorted_books_are_reported():
    problems = check_events(
        [
            book([("101", "1")], [("100", "1")]),
            book([("100", "1")], [("100", "1")]),
            book([("99", "1"), ("100", "1")], [("101", "1")]),
            book([("99", "0")], [("101", "1")]),
        ]
    )
    assert len(problems) == 4
    assert "crossed or locked book" in problems[0] and "crossed or locked book" in problems[1]
    assert "bids not strictly descending" in problems[2]
    assert "size <= 0" in problems[3]


def test_a_book_published_while_invalid_is_reported():
    problems = check_events([GOOD, status("invalid"), book([("1", "1")], [("2", "1")])])
    assert problems == ["x BTC/USDT: book published while its status is invalid"]


def test_sequence_going_back_is_reported_unless_a_resync_happened():
    back = book([("100.0", "1")], [("100.5", "2")], seq=0)
    assert "went back from 1 to 0" in check_events([GOOD, back])[0]
    assert check_events([GOOD, status("resyncing"), status("valid"), back]) == []


def test_symbols_and_numbers_are_checked():
    problems = check_events([book([("abc", "1")], [("2", "1")], symbol="btcusdt")])
    assert "is not BASE/QUOTE" in problems[0]
    assert "not a decimal number" in problems[1]
