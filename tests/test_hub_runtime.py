"""The hub's market state when markets and connections are removed at runtime."""

from __future__ import annotations

from arbd.hub import Filter, Hub
from arbd.model import SLOT_REMOVED, Book, FeedStatus, Quote
from arbd.testing.events import sample_quote


def quote(exchange: str, symbol: str) -> Quote:
    return sample_quote(exchange, symbol, "1", "2", timestamp=1, received_ns=1)


def book(exchange: str, symbol: str) -> Book:
    return Book(
        exchange=exchange, symbol=symbol, bids=[], asks=[], depth=1, timestamp=1, received_ns=1
    )


def status(exchange: str, scope: str, state: str, **fields: str) -> FeedStatus:
    return FeedStatus(exchange=exchange, scope=scope, state=state, timestamp=1, **fields)  # type: ignore[arg-type]


def filled() -> Hub:
    hub = Hub()
    for exchange in ("a", "b"):
        for symbol in ("BTC/USDT", "ETH/USDT"):
            hub.publish([quote(exchange, symbol), book(exchange, symbol)])
            hub.publish(
                [
                    status(
                        exchange,
                        "subscription",
                        "stale",
                        symbol=symbol,
                        connection=f"{exchange}-1",
                        channel="price",
                    )
                ]
            )
        hub.publish([status(exchange, "connection", "live", symbol="", connection=f"{exchange}-1")])
    return hub


def test_dropping_symbols_forgets_their_quotes_books_and_status():
    hub = filled()
    hub.state.drop("a", ["ETH/USDT"])
    kept = [(e.exchange, e.symbol, type(e).__name__) for e in hub.state.snapshot(Filter())]
    assert ("a", "ETH/USDT", "Quote") not in kept
    assert not [k for k in kept if k[:2] == ("a", "ETH/USDT")]
    assert ("a", "BTC/USDT", "Quote") in kept
    assert ("b", "ETH/USDT", "Book") in kept
    assert ("a", "", "FeedStatus") in kept  # the exchange's connection status stays


def test_dropping_an_exchange_forgets_all_of_it():
    hub = filled()
    hub.state.drop("a")
    assert {e.exchange for e in hub.state.snapshot(Filter())} == {"b"}
    assert not [k for k in hub.state.book_state if k[0] == "a"]


def test_a_removed_slot_is_forgotten_not_kept_as_stopped():
    hub = filled()
    hub.publish(
        [status("a", "connection", "stopped", symbol="", connection="a-1", reason=SLOT_REMOVED)]
    )
    statuses = [e for e in hub.state.snapshot(Filter()) if isinstance(e, FeedStatus)]
    # Neither the connection nor its subscriptions' statuses linger for late joiners.
    assert not [s for s in statuses if s.connection == "a-1"]
    assert [s for s in statuses if s.connection == "b-1"]
    # A plain stop (shutdown) is state like any other.
    hub.publish([status("b", "connection", "stopped", symbol="", connection="b-1")])
    assert hub.state.status["b", "connection", "b-1", "", ""].state == "stopped"
