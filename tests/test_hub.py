import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.hub import Filter, Hub
from arbd.model import Book, Event, FeedStatus, Quote, Trade, encode_event


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


def test_conflate_keeps_every_event_while_there_is_room():
    hub = Hub()
    sub = hub.subscribe(capacity=100, policy="conflate")
    hub.publish([quote(bid="1"), trade(1), quote(bid="2")])
    hub.publish([quote(bid="3")])
    assert [getattr(e, "bid", None) for e in sub.drain()] == ["1", None, "2", "3"]
    assert sub.dropped == 0


def test_conflate_keeps_latest_price_per_key_and_never_drops_status():
    hub = Hub()
    sub = hub.subscribe(capacity=3, policy="conflate")
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


def test_wire_results_are_shared_by_subscribers_with_the_same_wire_function():
    calls = []

    def frame(data: bytes) -> bytes:
        calls.append(data)
        return b"<" + data + b">"

    hub = Hub()
    a = hub.subscribe(wire=frame)
    b = hub.subscribe(Filter(channels=frozenset({"trades"})), wire=frame, policy="drop_oldest")
    plain = hub.subscribe(encoded=True)
    hub.publish([trade(1), quote()])
    x, _ = a.drain()
    (y,) = b.drain()
    assert x is y
    assert x == b"<" + plain.drain()[0] + b">"  # type: ignore[operator]
    assert len(calls) == 2  # once per event, not per subscriber
    late = hub.subscribe(wire=frame, snapshot=True)
    assert late.drain() == [b"<" + encode_event(quote()) + b">"]


def test_overflow_wakes_the_owner():
    hub = Hub()
    wakes = []
    sub = hub.subscribe(capacity=2, policy="disconnect", wake=lambda: wakes.append(1))
    hub.publish([trade(1)])
    hub.publish([trade(2), trade(3)])
    assert sub.overflowed
    assert wakes == [1, 1]


class ReferenceBuffer:
    """The policies, one event at a time, written as plainly as possible."""

    def __init__(self, capacity, policy):
        self.capacity, self.policy = capacity, policy
        self.entries: list[tuple[object, object]] = []  # (conflation key, item)
        self.dropped = 0
        self.overflowed = False
        self.keyed = False  # conflate: the buffer filled up (until drained)

    def offer(self, event, item):
        if self.overflowed:
            return
        key = (
            (type(event), event.exchange, event.symbol)
            if isinstance(event, (Quote, Book)) and self.policy == "conflate"
            else object()
        )
        if self.policy == "conflate" and not self.keyed:
            if len(self.entries) < self.capacity:
                self.entries.append((key, item))  # room: nothing is conflated
                return
            # Full: conflate what is queued (first position, latest item), then go on keyed.
            self.keyed = True
            queued, self.entries = self.entries, []
            for old_key, old_item in queued:
                self.offer_keyed(old_key, old_item)
        self.offer_keyed(key, item)

    def offer_keyed(self, key, item):
        for i, (old, _) in enumerate(self.entries):
            if old == key:
                self.entries[i] = (key, item)
                self.dropped += 1
                return
        if len(self.entries) == self.capacity:
            if self.policy == "disconnect":
                self.overflowed, self.entries = True, []
                return
            victims = [i for i, (k, _) in enumerate(self.entries) if isinstance(k, tuple)]
            if self.policy == "drop_oldest":
                victims = [0]
            if not victims:
                self.overflowed, self.entries = True, []
                return
            del self.entries[victims[0]]
            self.dropped += 1
        self.entries.append((key, item))


# ``publish`` in batches must give the same buffers and drop counts as the policies applied one
# event at a time, under every policy, filtered or not.
_events = st.one_of(
    st.builds(quote, symbol=st.sampled_from(["A/B", "C/D", "E/F"]), bid=st.sampled_from("123")),
    st.builds(trade, st.integers(0, 99), symbol=st.sampled_from(["A/B", "C/D"])),
    st.builds(book_status, st.sampled_from(["valid", "invalid"]), symbol=st.just("A/B")),
)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(_events, max_size=40),
    cuts=st.lists(st.integers(1, 8), max_size=20),
    capacity=st.integers(1, 12),
    policy=st.sampled_from(["conflate", "drop_oldest", "disconnect"]),
    symbols=st.sampled_from([frozenset(), frozenset({"A/B"})]),
)
def test_batched_publish_equals_one_event_at_a_time(events, cuts, capacity, policy, symbols):
    filter = Filter(symbols=symbols)
    hub = Hub()
    sub = hub.subscribe(filter, capacity=capacity, policy=policy, encoded=True)
    reference = ReferenceBuffer(capacity, policy)
    start = 0
    for size in [*cuts, len(events)]:
        hub.publish(events[start : start + size])
        start += size
    for event in events:
        if filter.matches(event):
            reference.offer(event, encode_event(event))
    assert sub.drain() == [item for _, item in reference.entries]
    assert (sub.dropped, sub.overflowed) == (reference.dropped, reference.overflowed)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(_events, max_size=40),
    cuts=st.lists(st.tuples(st.integers(1, 8), st.booleans()), max_size=20),
    capacity=st.integers(1, 12),
    policy=st.sampled_from(["conflate", "drop_oldest", "disconnect"]),
    symbols=st.sampled_from([frozenset(), frozenset({"A/B"})]),
)
def test_drain_parts_are_the_drained_items(events, cuts, capacity, policy, symbols):
    """What a server writes (``drain_parts``: whole batches as the hub joined them) is exactly
    the drained items joined, whatever was dropped, conflated or drained in between."""
    hub = Hub()
    joined = hub.subscribe(Filter(symbols=symbols), capacity=capacity, policy=policy, wire=bytes)
    listed = hub.subscribe(Filter(symbols=symbols), capacity=capacity, policy=policy, wire=bytes)
    start = 0
    for size, drain_now in [*cuts, (len(events), True)]:
        hub.publish(events[start : start + size])
        start += size
        if drain_now:
            items = listed.drain()
            parts, count = joined.drain_parts()
            assert (b"".join(parts), count) == (b"".join(items), len(items))
    assert (joined.dropped, joined.overflowed) == (listed.dropped, listed.overflowed)
