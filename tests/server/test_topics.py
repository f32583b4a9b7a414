"""Subscription sets and their hub filters, as plain values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.hub import Filter
from arbd.model import ALL_CHANNELS
from arbd.server.topics import (
    ANY,
    Subscriptions,
    TooManySubscriptions,
    TopicFilter,
    expand,
    filter_for,
)

from .conftest import opportunity, quote, status, trade


def test_subscribe_adds_and_unsubscribe_removes_what_it_names():
    subs = Subscriptions(limit=100)
    subs.add(expand([], ["binance"], ["BTC/USDT"]))
    subs.add(expand(["trades"], [], ["ETH/USDT"]))
    assert subs.active() == [
        (ANY, "binance", "BTC/USDT"),
        ("trades", ANY, "ETH/USDT"),
    ]
    subs.remove([], [], ["BTC/USDT"])
    assert subs.active() == [("trades", ANY, "ETH/USDT")]
    subs.remove([], [], [])
    assert subs.active() == []


def test_an_unsubscribe_cannot_carve_out_of_a_wider_subscription():
    subs = Subscriptions(limit=100)
    subs.add(expand([], [], []))
    subs.remove(["book"], [], [])
    assert subs.active() == [(ANY, ANY, ANY)]


def test_narrower_topics_are_absorbed_and_do_not_count():
    subs = Subscriptions(limit=2)
    subs.add(expand(["price", "trades"], ["binance"], ["BTC/USDT"]))
    subs.add(expand([], ["binance"], ["BTC/USDT"]))  # covers both
    assert subs.active() == [(ANY, "binance", "BTC/USDT")]
    with pytest.raises(TooManySubscriptions):
        subs.add(expand(["price", "book"], ["kraken"], ["BTC/USDT"]))
    assert len(subs) == 1  # unchanged


def test_one_request_is_a_plain_filter_and_a_union_is_a_topic_filter():
    assert filter_for(expand(["price"], [], ["BTC/USDT", "ETH/USDT"])) == Filter(
        channels=frozenset({"price"}), symbols=frozenset({"BTC/USDT", "ETH/USDT"})
    )
    assert filter_for(expand([], [], [])) == Filter()
    assert filter_for(set()) is None
    union = filter_for(expand(["price"], [], ["BTC/USDT"]) | expand(["trades"], [], ["ETH/USDT"]))
    assert isinstance(union, TopicFilter)
    assert union.channels  # never mistaken for "everything" by the hub
    assert union.matches(quote(symbol="BTC/USDT"))
    assert not union.matches(quote(symbol="ETH/USDT"))
    assert union.matches(trade(1, "ETH/USDT"))
    assert not union.matches(trade(1, "BTC/USDT"))


_channels = st.sampled_from([ANY, *ALL_CHANNELS])
_exchanges = st.sampled_from([ANY, "binance", "kraken"])
_symbols = st.sampled_from([ANY, "BTC/USDT", "ETH/USDT"])
_topics = st.sets(st.tuples(_channels, _exchanges, _symbols), min_size=1, max_size=6)
_events = st.one_of(
    st.builds(
        quote, symbol=st.sampled_from(["BTC/USDT", "ETH/USDT", "XRP/USD"]), exchange=_exchanges
    ),
    st.builds(
        trade, st.just(1), symbol=st.sampled_from(["BTC/USDT", "ETH/USDT"]), exchange=_exchanges
    ),
    st.builds(status, exchange=_exchanges, symbol=st.sampled_from(["", "BTC/USDT"])),
    st.just(opportunity()),
)


def single(topic) -> Filter:
    channel, exchange, symbol = topic
    return Filter(
        channels=frozenset() if channel == ANY else frozenset({channel}),
        exchanges=frozenset() if exchange == ANY else frozenset({exchange}),
        symbols=frozenset() if symbol == ANY else frozenset({symbol}),
    )


@settings(max_examples=300, deadline=None)
@given(topics=_topics, events=st.lists(_events, max_size=10))
def test_the_filter_of_a_set_matches_exactly_the_union_of_its_topics(topics, events):
    subs = Subscriptions(limit=1000)
    subs.add(topics)
    hub_filter = subs.filter()
    assert hub_filter is not None
    for event in events:
        expected = any(single(t).matches(event) for t in topics)
        assert hub_filter.matches(event) == expected, (topics, event)
