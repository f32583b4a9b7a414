import msgspec

from arbd.hub import Filter, Hub
from arbd.model import Book, Event, FeedStatus, Quote, Trade


def quote(symbol="BTC/USDT", bid="1", exchange="a"):
    return Quote(
        exchange=exchange,
        symbol=symbol,
        bid=bid,
        ask="2",
        bid_size="1",
        ask_size="1",
        timestamp=0,
        received_ns=0,
    )


def trade(n, symbol="BTC/USDT"):
    return Trade(
        exchange="a",
        symbol=symbol,
        price="1",
        size="1",
        side=None,
        id=str(n),
        timestamp=0,
        received_ns=0,
        sequence=n,
    )


def book_status(state, symbol="BTC/USDT"):
    return FeedStatus(
        exchange="a", symbol=symbol, scope="book", state=state, channel="book", timestamp=0
    )


def test_conflate_keeps_latest_price_per_key_and_never_drops_status():
    hub = Hub()
    sub = hub.subscribe(capacity=100, policy="conflate")
    hub.publish([quote(bid="1"), trade(1), quote(bid="2"), book_status("invalid"), quote(bid="3")])
    items = sub.drain()
    bids = [e.bid for e in items if isinstance(e, Quote)]
    assert bids == ["3"]  # conflated in place
    assert [type(e) for e in items] == [Quote, Trade, FeedStatus]
    assert sub.dropped == 2


def test_conflate_bound_drops_oldest_conflatable_then_overflows():
    hub = Hub()
    sub = hub.subscribe(capacity=3, policy="conflate")
    hub.publish([quote("A/B"), quote("C/D"), quote("E/F"), quote("G/H")])
    assert len(sub) == 3
    assert sub.dropped == 1
    assert [e.symbol for e in sub.drain()] == ["C/D", "E/F", "G/H"]
    statuses = [book_status("invalid", f"S{i}/X") for i in range(4)]
    hub.publish(statuses)
    assert sub.overflowed  # only must-not-drop events and no room: the owner disconnects it


def test_drop_oldest_ring_buffer_counts_drops():
    hub = Hub()
    sub = hub.subscribe(capacity=2, policy="drop_oldest")
    hub.publish([trade(1), trade(2), trade(3)])
    assert [e.sequence for e in sub.drain()] == [2, 3]
    assert sub.dropped == 1


def test_disconnect_policy_marks_overflow():
    hub = Hub()
    sub = hub.subscribe(capacity=1, policy="disconnect")
    hub.publish([trade(1), trade(2)])
    assert sub.overflowed
    hub.publish([trade(3)])
    assert sub.drain() == []


def test_filters_by_exchange_symbol_channel():
    hub = Hub()
    only_trades = hub.subscribe(Filter(channels=frozenset({"trades"})))
    only_eth = hub.subscribe(Filter(symbols=frozenset({"ETH/USDT"})))
    hub.publish([quote("ETH/USDT"), trade(1, "BTC/USDT"), trade(2, "ETH/USDT")])
    assert [e.sequence for e in only_trades.drain()] == [1, 2]
    assert [type(e) for e in only_eth.drain()] == [Quote, Trade]


def test_encoded_subscribers_share_one_encoding():
    hub = Hub()
    a = hub.subscribe(encoded=True)
    b = hub.subscribe(encoded=True)
    hub.publish([trade(1)])
    (x,), (y,) = a.drain(), b.drain()
    assert x is y
    assert msgspec.json.decode(x, type=Event) == trade(1)


def test_wake_called_when_buffer_becomes_non_empty():
    hub = Hub()
    wakes = []
    sub = hub.subscribe(wake=lambda: wakes.append(1))
    hub.publish([trade(1), trade(2)])
    assert wakes == [1]
    sub.drain()
    hub.publish([trade(3)])
    assert wakes == [1, 1]


def test_snapshot_for_new_subscriber_and_invalid_books_are_not_served():
    hub = Hub()
    book = Book(
        exchange="a",
        symbol="BTC/USDT",
        bids=[("1", "1")],
        asks=[("2", "1")],
        depth=1,
        timestamp=0,
        received_ns=0,
    )
    hub.publish([quote(), book])
    late = hub.subscribe(snapshot=True)
    assert {type(e) for e in late.drain()} == {Quote, Book}
    hub.publish([book_status("invalid")])
    later = hub.subscribe(snapshot=True)
    assert [type(e) for e in later.drain()] == [FeedStatus, Quote]
    assert hub.state.book_state["a", "BTC/USDT"] == "invalid"


def test_processors_may_add_events():
    hub = Hub()
    hub.add_processor(lambda batch: [trade(99)] if any(isinstance(e, Quote) for e in batch) else [])
    sub = hub.subscribe()
    hub.publish([quote()])
    assert [type(e) for e in sub.drain()] == [Quote, Trade]
