"""The soak's invariant checker: it must catch what it claims to catch, and pass a clean stream."""

from __future__ import annotations

import msgspec

from arbd.arbitrage.engine import ArbitrageEngine
from arbd.config import ArbitrageConfig
from arbd.hub import Hub
from arbd.model import Arbitrage, Book, Event
from arbd.testing.events import sample_opportunity, sample_quote, sample_status
from arbd.testing.invariants import InvariantChecker

MS = 1_700_000_000_000
NS = MS * 1_000_000
MARKETS = {"binance": ["BTC/USDT"], "kraken": ["BTC/USDT"]}


def checker(**options: float) -> InvariantChecker:
    settings = {"max_quote_age": 2.0, "settle": 5.0, "deadline": 30.0, "silence_limit": 20.0}
    settings.update(options)
    return InvariantChecker(MARKETS, channels=("price", "book"), **settings)


def quote(exchange: str, bid: str, ask: str, at_ms: int) -> Event:
    return sample_quote(exchange, bid=bid, ask=ask, received_ns=at_ms * 1_000_000, timestamp=at_ms)


def book(exchange: str, bid: str, ask: str, at_ms: int, symbol: str = "BTC/USDT") -> Book:
    return Book(
        exchange=exchange,
        symbol=symbol,
        bids=[(bid, "1")],
        asks=[(ask, "1")],
        depth=20,
        timestamp=at_ms,
        received_ns=at_ms * 1_000_000,
    )


def opportunity(at_ms: int, buy: str = "100.0", sell: str = "101.0", **over: object) -> Arbitrage:
    return sample_opportunity(
        buy_exchange="binance",
        sell_exchange="kraken",
        buy_price=buy,
        sell_price=sell,
        timestamp=at_ms,
        **over,
    )


def live_prices(c: InvariantChecker, at_ms: int = MS) -> None:
    c.observe([sample_status("binance"), sample_status("kraken")], 0.0)
    c.observe(
        [quote("binance", "99.9", "100.0", at_ms), quote("kraken", "101.0", "101.1", at_ms)], 0.0
    )


def details(c: InvariantChecker, invariant: int) -> list[str]:
    return [v.detail for v in c.violations if v.invariant == invariant]


# -- invariant 2: books ----------------------------------------------------------------------


def test_a_crossed_book_is_a_violation_and_a_normal_one_is_not():
    c = checker()
    c.observe([book("binance", "100.0", "100.1", MS)], 1.0)
    assert c.violations == []
    c.observe([book("binance", "100.2", "100.1", MS), book("kraken", "5", "5", MS)], 2.0)
    found = details(c, 2)
    assert len(found) == 2
    assert "binance BTC/USDT: crossed book published 100.2/100.1" in found[0]
    assert "kraken" in found[1]  # locked (bid == ask) counts as crossed
    assert c.checked[2] == 3


def test_a_book_published_while_invalid_or_resyncing_is_a_violation():
    c = checker()
    c.observe([sample_status("binance", "invalid", "BTC/USDT")], 1.0)
    c.observe([book("binance", "1", "2", MS)], 1.5)
    c.observe([sample_status("binance", "resyncing", "BTC/USDT"), book("binance", "1", "2", MS)], 2)
    assert details(c, 2) == [
        "binance BTC/USDT: book published while invalid",
        "binance BTC/USDT: book published while resyncing",
    ]
    # Announced valid first, as adapters must: fine.
    c.observe([sample_status("binance", "valid", "BTC/USDT"), book("binance", "1", "2", MS)], 3)
    assert len(c.violations) == 2


# -- invariant 3: opportunities ----------------------------------------------------------------


def test_an_opportunity_on_fresh_usable_legs_passes():
    c = checker()
    live_prices(c)
    c.observe([opportunity(MS + 1_500), opportunity(MS + 2_000, event="update")], 1.0)
    assert c.violations == []
    assert c.checked[3] == 2


def test_an_opportunity_with_a_stale_leg_is_a_violation():
    c = checker()
    live_prices(c)
    c.observe([opportunity(MS + 2_001)], 1.0)  # max_quote_age is 2 s
    [found] = details(c, 3)
    assert "buy leg binance BTC/USDT: top of book 2001 ms old" in found


def test_a_close_may_name_a_stale_leg():
    c = checker()
    live_prices(c)
    c.observe([opportunity(MS + 9_000, event="close")], 1.0)
    assert c.violations == []


def test_an_opportunity_on_an_invalid_book_or_a_down_exchange_is_a_violation():
    c = checker()
    live_prices(c)
    c.observe([sample_status("kraken", "resyncing", "BTC/USDT")], 1.0)
    c.observe([opportunity(MS + 100)], 1.1)
    c.observe([sample_status("kraken", "valid", "BTC/USDT")], 1.2)
    c.observe([sample_status("binance", "backoff")], 1.3)
    c.observe([opportunity(MS + 200)], 1.4)
    c.observe([sample_status("binance", "live")], 1.5)
    c.observe(
        [sample_status("binance", "stale", "BTC/USDT", scope="subscription", channel="price")], 2
    )
    c.observe([opportunity(MS + 300)], 2.1)
    assert details(c, 3) == [
        "open op1 BTC/USDT: sell leg kraken BTC/USDT: book resyncing",
        "open op1 BTC/USDT: buy leg binance BTC/USDT: connection binance-1 backoff",
        "open op1 BTC/USDT: buy leg binance BTC/USDT: price subscription not live",
    ]


def test_an_opportunity_must_carry_the_legs_top_of_book():
    c = checker()
    live_prices(c)
    c.observe([opportunity(MS + 100, buy="99.0")], 1.0)
    [found] = details(c, 3)
    assert "buy leg binance BTC/USDT: price 99.0 is not the top of book" in found


def test_the_engine_may_decide_anywhere_inside_its_batch():
    """The engine appends its events after the batch: an open decided on the batch's first
    quote is fine although the batch later invalidates the leg (a close follows it)."""
    c = checker()
    live_prices(c)
    batch = [
        quote("binance", "99.9", "99.5", MS + 10),
        sample_status("binance", "invalid", "BTC/USDT"),
        opportunity(MS + 10, buy="99.5"),
        opportunity(MS + 10, buy="99.5", event="close"),
    ]
    c.observe(batch, 1.0)
    assert c.violations == []
    # But a state the leg never had in the batch is caught.
    c.observe([quote("binance", "99.9", "99.4", MS + 20), opportunity(MS + 20, buy="99.5")], 2.0)
    assert len(details(c, 3)) == 1


def test_the_real_engine_passes_and_a_looser_engine_is_caught():
    """Drive the real arbitrage engine through a hub with the checker as the last processor:
    it never uses a stale leg. An engine allowed older quotes than the checker is caught."""
    for engine_age, expected in ((2.0, 0), (10.0, 1)):
        c = checker()
        hub = Hub()
        settings = msgspec.structs.replace(
            ArbitrageConfig(), min_updates=1, max_quote_age=engine_age
        )
        engine = ArbitrageEngine(settings, {"binance": 0.0, "kraken": 0.0})
        hub.add_processor(engine)
        hub.add_processor(lambda batch, c=c: c.observe(batch, 0.0))
        hub.publish([sample_status("binance"), sample_status("kraken")])
        hub.publish([quote("kraken", "101.0", "101.1", MS)])
        # binance's quote is 5 s younger: kraken's is stale to a 2 s engine.
        hub.publish([quote("binance", "99.9", "100.0", MS + 5_000)])
        assert c.count(3) == expected, c.violations
        assert c.checked[3] == expected


# -- invariants 4 and 5: faults and silence -------------------------------------------------


def data(c: InvariantChecker, exchange: str, now: float) -> None:
    c.observe([quote(exchange, "1", "2", MS), book(exchange, "1", "2", MS)], now)


def test_a_fault_recovers_when_every_subscription_has_healthy_data_again():
    c = checker(silence_limit=100.0)
    c.observe([sample_status("binance")], 0.0)
    fault = c.fault_started("drop", "binance", ["BTC/USDT"], 10.0)
    c.fault_ended(fault, 10.0)
    c.observe([sample_status("binance", "backoff")], 10.5)
    data(c, "binance", 11.0)  # while the connection is down: does not count
    c.observe([sample_status("binance", "live")], 12.0)
    c.observe([quote("binance", "1", "2", MS)], 12.5)
    c.sweep(14.0)
    assert fault in c.open_faults  # the book has no healthy data yet
    c.observe([book("binance", "1", "2", MS)], 13.0)
    c.sweep(14.0)
    assert fault in c.open_faults  # settle time: a gap may show up a little later
    c.sweep(15.0)
    assert fault not in c.open_faults
    assert fault.recovery == 3.0
    assert fault.detected
    assert c.violations == []


def test_a_fault_that_never_recovers_is_a_violation():
    c = checker(silence_limit=100.0)
    c.observe([sample_status("binance")], 0.0)
    fault = c.fault_started("rate_limit", "binance", ["BTC/USDT"], 10.0)
    c.fault_ended(fault, 10.0)
    c.observe([sample_status("binance", "backoff")], 10.5)
    c.sweep(39.0)
    assert c.violations == []
    c.sweep(40.0)
    [found] = details(c, 4)
    assert "fault 1 rate_limit on binance: not recovered after 30 s" in found
    assert "connection binance-1 backoff" in found
    assert fault.failed


def test_healthy_statuses_without_data_are_a_silently_lost_subscription():
    c = checker(silence_limit=100.0)
    c.observe([sample_status("binance")], 0.0)
    fault = c.fault_started("stall", "binance", ["BTC/USDT"], 10.0)
    c.fault_ended(fault, 12.0)
    c.observe([quote("binance", "1", "2", MS)], 13.0)  # prices came back, the book never did
    c.sweep(42.0)
    [found] = details(c, 5)
    assert "healthy but no data for 1 subscription(s) (BTC/USDT book)" in found


def test_a_book_fault_waits_only_for_the_book():
    c = checker()
    fault = c.fault_started("gap", "kraken", ["BTC/USDT"], 1.0, channels=("book",))
    c.fault_ended(fault, 1.0)
    c.observe([sample_status("kraken", "invalid", "BTC/USDT")], 1.5)
    c.observe([quote("kraken", "1", "2", MS)], 1.6)
    c.observe([sample_status("kraken", "valid", "BTC/USDT"), book("kraken", "1", "2", MS)], 2.0)
    c.sweep(7.0)
    assert fault.recovery == 1.0


def test_a_later_fault_over_the_same_scope_takes_over():
    c = checker()
    first = c.fault_started("gap", "kraken", ["BTC/USDT"], 1.0, channels=("book",))
    c.fault_ended(first, 1.0)
    second = c.fault_started("drop", "kraken", ["BTC/USDT"], 1.2)
    assert first.overlapped
    assert c.open_faults == [second]


def test_silence_without_a_fault_is_a_lost_subscription_reported_once():
    c = checker()
    data(c, "binance", 1.0)
    data(c, "kraken", 1.0)
    c.sweep(20.0)
    assert c.violations == []
    data(c, "binance", 21.0)
    c.sweep(22.0)
    c.sweep(23.0)
    assert details(c, 5) == [
        "kraken BTC/USDT price: no data for 21 s, no fault",
        "kraken BTC/USDT book: no data for 21 s, no fault",
    ]
    # During a fault on that exchange silence is the fault's business.
    c2 = checker()
    c2.fault_started("stall", "kraken", ["BTC/USDT"], 1.0)
    data(c2, "binance", 21.0)
    c2.sweep(22.0)
    assert c2.violations == []


def test_publish_times_are_kept_for_recent_events_only():
    c = checker()
    c.observe([quote("binance", "1", "2", MS + 1)], 5.0)
    assert c.published_at("price", "binance", "BTC/USDT", (MS + 1) * 1_000_000) == 5.0
    assert c.published_at("book", "binance", "BTC/USDT", (MS + 1) * 1_000_000) is None
    for n in range(50_000):
        c.observe([quote("binance", "1", "2", MS + 2 + n)], 6.0)
    assert c.published_at("price", "binance", "BTC/USDT", (MS + 1) * 1_000_000) is None
    assert len(c._published) + len(c._published_old) <= 40_000


def test_trouble_goes_to_the_latest_fault_covering_it():
    """A gap on one symbol after an exchange-wide fault recovered does not stretch that
    fault's recovery: the gap is the likelier cause."""
    c = checker(silence_limit=100.0)
    garbage = c.fault_started("garbage", "kraken", ["BTC/USDT"], 1.0)
    c.fault_ended(garbage, 3.0)
    data(c, "kraken", 3.5)
    gap = c.fault_started("gap", "kraken", ["BTC/USDT"], 4.0, channels=("book",))
    c.fault_ended(gap, 4.0)
    c.observe([sample_status("kraken", "invalid", "BTC/USDT")], 4.2)
    c.observe([sample_status("kraken", "valid", "BTC/USDT"), book("kraken", "1", "2", MS)], 5.0)
    c.sweep(20.0)
    assert (garbage.recovery, garbage.detected) == (0.5, False)
    assert (gap.recovery, gap.detected) == (1.0, True)


def test_a_violation_repeated_per_event_is_counted_but_kept_only_a_hundred_times():
    c = checker()
    c.observe([book("binance", "3", "2", MS) for _ in range(150)], 1.0)
    assert c.count(2) == 150
    assert len(c.violations) == 100
