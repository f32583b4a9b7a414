"""The engine: best pair after fees, quote groups and conversion, freshness gates."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from .conftest import Run, book, quote, status
from .conftest import settings as arb_settings

FAST = arb_settings(min_updates=1)
"""Opens on the first update that clears the threshold."""


# -- best pair after fees ----------------------------------------------------------------------


def test_the_best_pair_is_chosen_after_fees():
    fees = {"cheap": 1.0, "a": 0.1, "b": 0.1}
    run = Run(FAST, fees)
    # "cheap" has the lowest ask, but its 1 % fee makes it the dearest buy.
    run.feed(
        quote("cheap", "99.90", "100.00", 0),
        quote("a", "100.10", "100.20", 1),
        quote("b", "101.00", "101.10", 2),
    )
    net = (101.00 * 0.999 - 100.20 * 1.001) / (100.20 * 1.001) * 100
    assert run.engine.best("BTC/USDT") == ("a", "b", pytest.approx(net))
    [opened] = run.events
    assert (opened.event, opened.buy_exchange, opened.sell_exchange) == ("open", "a", "b")
    assert opened.buy_price == "100.20"
    assert opened.sell_price == "101.00"
    # Net and gross as documented: effective prices after each leg's taker fee.
    eff_ask, eff_bid = 100.20 * 1.001, 101.00 * 0.999
    assert opened.net_spread_pct == pytest.approx((eff_bid - eff_ask) / eff_ask * 100, abs=1e-6)
    assert opened.gross_spread_pct == pytest.approx((101.00 - 100.20) / 100.20 * 100, abs=1e-6)
    assert opened.spread_pct == opened.net_spread_pct
    assert opened.fees.buy == 0.1
    assert opened.conversion == "none"
    assert opened.currency == "USDT"
    # Top of book only: sized by the quotes' sizes.
    assert opened.size_source == "top"
    assert opened.quantity == 1.0
    assert opened.profit == pytest.approx(eff_bid - eff_ask, abs=1e-6)


def test_best_and_second_best_on_the_same_exchange():
    run = Run(FAST)
    # "a" has both the lowest ask and the highest bid: the pair must use another exchange.
    run.feed(
        quote("a", "102.00", "99.00", 0),  # a crossed quote on one exchange, as feeds glitch
        quote("b", "100.00", "100.50", 1),
        quote("c", "100.80", "101.20", 2),
    )
    # Candidates: buy a 99.00 -> sell c 100.80, or buy b 100.50 -> sell a 102.00.
    buy, sell, _ = run.engine.best("BTC/USDT")
    assert (buy, sell) == ("a", "c")


exchange_ids = ["a", "b", "c", "d"]
price = st.integers(9_800, 10_200)


@settings(max_examples=150, deadline=None)
@given(
    quotes=st.lists(
        st.tuples(
            st.sampled_from(exchange_ids),
            st.sampled_from(["BTC/USDT", "BTC/USDT", "BTC/USDT", "BTC/USD"]),
            price,
            st.integers(1, 60),
        ),
        min_size=1,
        max_size=12,
    ),
    fees=st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.5]), min_size=4, max_size=4),
)
def test_the_scan_finds_the_pair_a_brute_force_search_finds(quotes, fees):
    """Over every pair of markets on two different exchanges; BTC/USD and BTC/USDT are one
    group (at par), so an exchange may have two markets in it."""
    fee = dict(zip(exchange_ids, fees, strict=True))
    run = Run(arb_settings(open_threshold_pct=50.0, close_threshold_pct=50.0), fee)
    latest: dict[tuple[str, str], tuple[float, float]] = {}
    for i, (exchange, symbol, bid_cents, width) in enumerate(quotes):
        bid, ask = bid_cents / 100, (bid_cents + width) / 100
        run.feed(quote(exchange, f"{bid:.2f}", f"{ask:.2f}", i, symbol=symbol))
        latest[exchange, symbol] = (bid, ask)
    pairs = [
        ((buy[0], sell[0]), (latest[sell][0] * (1 - fee[sell[0]] / 100))
         / (latest[buy][1] * (1 + fee[buy[0]] / 100)))
        for buy, sell in itertools.permutations(latest, 2)
        if buy[0] != sell[0]
    ]  # fmt: skip
    best = run.engine.best("BTC/USDT")
    if not pairs:
        assert best is None
        return
    top = max(ratio for _, ratio in pairs)
    assert best is not None
    assert best[2] == pytest.approx((top - 1) * 100, abs=1e-9)
    assert (best[0], best[1]) in [p for p, ratio in pairs if ratio == pytest.approx(top)]


@settings(max_examples=150, deadline=None)
@given(
    mids=st.lists(st.integers(9_970, 10_030), min_size=2, max_size=4),
    fees=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.6]), min_size=4, max_size=4),
    updates=st.lists(st.tuples(st.integers(0, 3), st.integers(-20, 20)), max_size=20),
)
def test_no_opportunity_when_fees_exceed_the_spread(mids, fees, updates):
    fee = dict(zip(exchange_ids, fees, strict=True))
    run = Run(arb_settings(min_updates=1, min_duration=0.0), fee)
    book_mid = {exchange_ids[i]: m for i, m in enumerate(mids)}
    sequence = [(ex, 0) for ex in book_mid] + [
        (exchange_ids[i], move) for i, move in updates if exchange_ids[i] in book_mid
    ]
    for t, (ex, move) in enumerate(sequence):
        book_mid[ex] += move
        # Every pair's gross spread stays below the two legs' fees together.
        worst = max(
            (book_mid[s] - 1) * (1 - fee[s] / 100) / ((book_mid[b] + 1) * (1 + fee[b] / 100))
            for b, s in itertools.permutations(book_mid, 2)
        )
        assume(worst < 1)
        mid = book_mid[ex] / 100
        run.feed(quote(ex, f"{mid - 0.01:.2f}", f"{mid + 0.01:.2f}", t))
    assert run.events == []


# -- quote groups and conversion --------------------------------------------------------------


def test_quote_groups_compare_usd_with_usdt_at_par():
    run = Run(FAST, {"coinbase": 0.1, "binance": 0.1, "kraken": 0.1})
    run.feed(
        quote("coinbase", "64990.00", "65000.00", 0, symbol="BTC/USD"),
        quote("binance", "65400.00", "65410.00", 1, symbol="BTC/USDT"),
        # BTC/EUR is in no group: never compared, however far apart.
        quote("kraken", "90000.00", "90001.00", 2, symbol="BTC/EUR"),
    )
    [opened] = run.events
    assert (opened.buy_exchange, opened.buy_symbol) == ("coinbase", "BTC/USD")
    assert (opened.sell_exchange, opened.sell_symbol) == ("binance", "BTC/USDT")
    assert opened.symbol == "BTC/USD"  # the group: base and the group's first currency
    assert opened.conversion == "par"
    assert opened.currency == "USD"
    assert run.engine.best("BTC/EUR") is None


def test_without_a_group_usd_and_usdt_are_different_markets():
    run = Run(arb_settings(min_updates=1, quote_groups=[]), {"coinbase": 0.1, "binance": 0.1})
    run.feed(
        quote("coinbase", "64990.00", "65000.00", 0, symbol="BTC/USD"),
        quote("binance", "65400.00", "65410.00", 1, symbol="BTC/USDT"),
    )
    assert run.events == []


LIVE = arb_settings(
    min_updates=1,
    conversion="live",
    conversion_markets=["k:USDT/USD"],
    quote_groups=[["USD", "USDT"]],
)
LIVE_FEES = {"coinbase": 0.1, "binance": 0.1, "okx": 0.1, "k": 0.2}


def test_live_conversion_prices_usdt_in_usd():
    run = Run(LIVE, LIVE_FEES)
    run.feed(quote("k", "1.0090", "1.0110", 0, symbol="USDT/USD"))  # 1 USDT = 1.01 USD
    run.feed(
        quote("binance", "64990.00", "65000.00", 1, symbol="BTC/USDT"),  # = 65650 USD
        quote("coinbase", "65500.00", "65510.00", 2, symbol="BTC/USD"),
    )
    # At par this would be buy binance / sell coinbase (+0.6 % net); at 1.01 it is a loss.
    assert run.events == []
    run.feed(quote("coinbase", "66000.00", "66010.00", 3, symbol="BTC/USD"))
    [opened] = run.events
    assert (opened.buy_exchange, opened.sell_exchange) == ("binance", "coinbase")
    assert opened.conversion == "k:USDT/USD@1.01"
    eff_ask, eff_bid = 65000.00 * 1.01 * 1.001, 66000.00 * 0.999
    assert opened.net_spread_pct == pytest.approx((eff_bid - eff_ask) / eff_ask * 100, abs=1e-6)


def test_a_stale_conversion_market_closes_cross_currency_pairs_only():
    run = Run(LIVE, LIVE_FEES)
    run.feed(
        quote("k", "0.9999", "1.0001", 0, symbol="USDT/USD"),
        quote("binance", "64990.00", "65000.00", 10, symbol="BTC/USDT"),
        quote("coinbase", "65500.00", "65510.00", 20, symbol="BTC/USD"),
    )
    assert run.steps() == [("open", "binance", "coinbase", None)]
    # The conversion market stops at t=0; at t=2001 it is older than max_quote_age (2 s).
    for t in (1000, 1900, 2100):
        run.feed(
            quote("binance", "64990.00", "65000.00", t, symbol="BTC/USDT"),
            quote("coinbase", "65500.00", "65510.00", t, symbol="BTC/USD"),
        )
    assert run.steps()[-1] == ("close", "binance", "coinbase", "conversion_stale:k:USDT/USD")
    assert run.engine.status()["excluded"]["conversion_stale"] >= 1
    # Two USDT markets need no conversion: still compared while the rate is stale.
    run.feed(quote("okx", "65300.00", "65310.00", 2200, symbol="BTC/USDT"))
    assert run.steps()[-1] == ("open", "binance", "okx", None)
    assert run.events[-1].conversion == "none"
    # A fresh rate brings the cross-currency pair back.
    run.feed(quote("k", "0.9999", "1.0001", 2300, symbol="USDT/USD"))
    run.feed(quote("coinbase", "65500.00", "65510.00", 2400, symbol="BTC/USD"))
    assert ("open", "binance", "coinbase", None) in run.steps()[-2:]


# -- freshness gates ---------------------------------------------------------------------------


def open_pair(run: Run, at: float = 0) -> None:
    run.feed(quote("a", "99.90", "100.00", at), quote("b", "101.00", "101.10", at + 1))
    assert run.steps()[-1] == ("open", "a", "b", None)


def test_a_quote_older_than_max_quote_age_closes_on_tick():
    run = Run(FAST)
    open_pair(run)
    assert run.tick(1999) == []
    [closed] = run.tick(2001)  # "a" was received at t=0
    assert (closed.event, closed.close_reason) == ("close", "stale:a")
    assert closed.duration_ms == 2001 - 1
    assert closed.closed_at == closed.timestamp
    # And a stale leg is not used to open it again.
    run.feed(quote("b", "101.00", "101.10", 2100))
    assert run.steps()[-1][0] == "close"
    assert run.engine.status()["excluded"]["stale"] == 1


@pytest.mark.parametrize("state", ["invalid", "resyncing"])
def test_an_invalid_book_closes_and_excludes_its_leg(state):
    run = Run(FAST)
    open_pair(run)
    run.feed(status("b", "book", state, 5, symbol="BTC/USDT", channel="book"))
    assert run.steps()[-1] == ("close", "a", "b", "book_invalid:b")
    run.feed(quote("b", "101.00", "101.10", 6))  # price channel still flowing
    assert run.steps()[-1][0] == "close"
    assert run.engine.status()["excluded"]["book_invalid"] == 1
    # A published book is a valid one: the leg is usable again.
    run.feed(book("b", [("101.00", "2")], [("101.10", "2")], 7))
    assert run.steps()[-1] == ("open", "a", "b", None)
    assert run.events[-1].size_source == "top"  # "a" has no book


def test_a_book_valid_status_reopens_the_leg():
    run = Run(FAST)
    open_pair(run)
    run.feed(status("b", "book", "invalid", 5, symbol="BTC/USDT", channel="book"))
    run.feed(status("b", "book", "valid", 6, symbol="BTC/USDT", channel="book"))
    run.feed(quote("b", "101.00", "101.10", 7))
    assert run.steps()[-1] == ("open", "a", "b", None)


@pytest.mark.parametrize("state", ["connecting", "subscribing", "backoff", "stopped", "failed"])
def test_an_exchange_whose_connection_is_not_live_is_excluded(state):
    run = Run(FAST)
    run.feed(status("b", "connection", "live", 0, connection="b-1"))
    open_pair(run, 1)
    run.feed(status("b", "connection", state, 5, connection="b-1"))
    assert run.steps()[-1] == ("close", "a", "b", "exchange_down:b")
    run.feed(quote("b", "101.00", "101.10", 6))
    assert run.steps()[-1][0] == "close"
    assert run.engine.status()["excluded"]["exchange_down"] == 1
    run.feed(status("b", "connection", "live", 7, connection="b-1"))
    run.feed(quote("b", "101.00", "101.10", 8))
    assert run.steps()[-1] == ("open", "a", "b", None)


def test_an_exchange_marked_failed_is_excluded_until_a_connection_is_live():
    run = Run(FAST)
    open_pair(run)
    run.feed(status("a", "exchange", "failed", 5))
    assert run.steps()[-1] == ("close", "a", "b", "exchange_down:a")
    run.feed(status("a", "connection", "live", 6, connection="a-1"))
    run.feed(quote("a", "99.90", "100.00", 7))
    assert run.steps()[-1] == ("open", "a", "b", None)


def test_a_stale_subscription_excludes_its_leg():
    run = Run(FAST)
    open_pair(run)
    # A stale trades subscription does not matter; a stale price subscription does.
    run.feed(status("b", "subscription", "stale", 5, symbol="BTC/USDT", channel="trades"))
    assert run.steps()[-1][0] == "open"
    run.feed(status("b", "subscription", "stale", 6, symbol="BTC/USDT", channel="price"))
    assert run.steps()[-1] == ("close", "a", "b", "stale:b")
    run.feed(status("b", "subscription", "live", 7, symbol="BTC/USDT", channel="price"))
    run.feed(quote("b", "101.00", "101.10", 8))
    assert run.steps()[-1] == ("open", "a", "b", None)


def test_status_of_another_symbol_leaves_the_pair_alone():
    run = Run(FAST)
    open_pair(run)
    run.feed(status("b", "book", "invalid", 5, symbol="ETH/USDT", channel="book"))
    assert run.steps()[-1][0] == "open"


# A random walk of quotes, book and connection faults, and time: whatever happens, an open or
# update event never involves a leg that the test's own model says is unusable.
action = st.one_of(
    st.tuples(st.just("quote"), st.sampled_from("abc"), st.integers(9_900, 10_100)),
    st.tuples(st.just("book"), st.sampled_from("abc"), st.sampled_from(["invalid", "valid"])),
    st.tuples(st.just("conn"), st.sampled_from("abc"), st.sampled_from(["live", "backoff"])),
    st.tuples(st.just("wait"), st.just(""), st.sampled_from([50, 500, 1500, 2500])),
)


@settings(max_examples=150, deadline=None)
@given(actions=st.lists(action, max_size=40))
def test_a_stale_or_invalid_leg_never_produces_an_opportunity(actions):
    run = Run(arb_settings(min_updates=1, open_threshold_pct=0.0, close_threshold_pct=0.0))
    now = 0.0
    received: dict[str, float] = {}
    usable_book: dict[str, bool] = {}
    live: dict[str, bool] = {}

    def usable(ex: str) -> bool:
        fresh = ex in received and now - received[ex] <= 2000
        return fresh and usable_book.get(ex, True) and live.get(ex, True)

    for kind, ex, value in actions:
        now += 1
        if kind == "quote":
            produced = run.feed(quote(ex, f"{value / 100:.2f}", f"{value / 100 + 0.01:.2f}", now))
            received[ex] = now
        elif kind == "book":
            produced = run.feed(status(ex, "book", value, now, symbol="BTC/USDT", channel="book"))
            usable_book[ex] = value == "valid"
        elif kind == "conn":
            produced = run.feed(status(ex, "connection", value, now, connection=f"{ex}-1"))
            live[ex] = value == "live"
        else:
            now += value
            produced = run.tick(now)
        for event in produced:
            if event.event != "close":
                assert usable(event.buy_exchange), (event, received, usable_book, live)
                assert usable(event.sell_exchange), (event, received, usable_book, live)
    # Every opportunity still open at the end is on usable legs too.
    for opp in run.engine.open_opportunities():
        assert usable(opp.buy.exchange)
        assert usable(opp.sell.exchange)
