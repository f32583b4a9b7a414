"""Opportunity lifecycle: confirmation, updates, closes, hysteresis, ids, reload, the hub."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.hub import Filter, Hub
from arbd.model import Arbitrage

from .conftest import Run, book, quote
from .conftest import settings as arb_settings

# With 0.1 % fees on each leg, a bid this far above the other exchange's ask gives roughly the
# net spread in the name (gross minus 0.2).
ASK = "100.00"
NET_030 = "100.50"  # +0.30 % net
NET_020 = "100.40"
NET_008 = "100.28"  # between close (0.05) and open (0.1)
NET_000 = "100.20"  # below close


def sell_at(bid: str, at: float, exchange: str = "b") -> object:
    return quote(exchange, bid, f"{float(bid) + 0.1:.2f}", at)


def buy_at(at: float, exchange: str = "a", ask: str = ASK) -> object:
    return quote(exchange, f"{float(ask) - 0.1:.2f}", ask, at)


def test_opens_after_min_updates_consecutive_updates():
    run = Run(arb_settings(min_updates=3, min_duration=10.0))
    run.feed(buy_at(0), sell_at(NET_030, 1))  # update 1: pending
    run.feed(sell_at(NET_030, 2))  # 2
    assert run.events == []
    run.feed(buy_at(3))  # 3: either leg counts
    [opened] = run.events
    assert opened.event == "open"
    assert opened.opened_at == opened.timestamp - 2  # when the spread first cleared it
    assert opened.duration_ms == 2


def test_an_update_below_the_threshold_resets_the_count():
    run = Run(arb_settings(min_updates=3, min_duration=10.0))
    run.feed(buy_at(0), sell_at(NET_030, 1), sell_at(NET_030, 2))
    run.feed(sell_at(NET_008, 3))  # pending dropped silently
    run.feed(sell_at(NET_030, 4), sell_at(NET_030, 5))
    assert run.events == []
    run.feed(sell_at(NET_030, 6))
    assert run.steps() == [("open", "a", "b", None)]
    assert run.events[0].opened_at == run.events[0].timestamp - 2


def test_opens_after_min_duration_on_a_tick_without_new_data():
    run = Run(arb_settings(min_updates=100, min_duration=0.2))
    run.feed(buy_at(0), sell_at(NET_030, 10))
    assert run.tick(150) == []
    [opened] = run.tick(210)
    assert opened.event == "open"
    assert opened.opened_at == opened.timestamp - 200


def test_update_events_are_material_and_rate_limited():
    run = Run(arb_settings(min_updates=1, update_interval=1.0, update_min_change_pct=0.02))
    run.feed(buy_at(0), sell_at(NET_030, 1))
    run.feed(sell_at(NET_020, 500))  # material, but within 1 s of the open
    assert run.steps() == [("open", "a", "b", None)]
    run.feed(buy_at(1001))  # the interval has passed: the held-back change goes out
    assert [e.event for e in run.events] == ["open", "update"]
    assert run.events[-1].net_spread_pct < run.events[0].net_spread_pct
    assert run.events[-1].peak_net_spread_pct == run.events[0].net_spread_pct
    run.feed(sell_at("100.41", 2500))  # +0.01: not material
    assert len(run.events) == 2
    run.feed(sell_at(NET_030, 2600))
    assert [e.event for e in run.events] == ["open", "update", "update"]
    assert run.engine.status()["updated"] == 2


def test_a_held_back_update_goes_out_on_a_tick():
    run = Run(arb_settings(min_updates=1, update_interval=1.0))
    run.feed(buy_at(0), sell_at(NET_030, 1))
    run.feed(sell_at(NET_020, 500), buy_at(900))
    assert [e.event for e in run.tick(1001)] == ["update"]


def test_closes_below_the_close_threshold_with_reason_spread():
    run = Run(arb_settings(min_updates=1))
    run.feed(buy_at(0), sell_at(NET_030, 1))
    run.feed(sell_at(NET_008, 2))  # between the thresholds: stays open
    assert run.steps() == [("open", "a", "b", None)]
    run.feed(sell_at(NET_000, 3))
    assert run.steps()[-1] == ("close", "a", "b", "spread")
    closed = run.events[-1]
    assert closed.closed_at == closed.timestamp
    assert closed.duration_ms == 2
    assert closed.peak_net_spread_pct > closed.net_spread_pct
    assert run.engine.status()["closed"] == {"spread": 1}


def test_close_all_closes_open_ones_with_shutdown_and_drops_pending_ones():
    run = Run(arb_settings(min_updates=2, min_duration=5.0))
    run.feed(buy_at(0), sell_at(NET_030, 1), sell_at(NET_030, 2))  # a -> b open
    run.feed(sell_at("100.60", 3, exchange="c"))  # a -> c pending (one update)
    assert (run.engine.status()["open"], run.engine.status()["pending"]) == (1, 1)
    closed = run.engine.close_all()
    assert [(e.event, e.sell_exchange, e.close_reason) for e in closed] == [
        ("close", "b", "shutdown")
    ]
    assert (run.engine.status()["open"], run.engine.status()["pending"]) == (0, 0)
    assert run.engine.status()["closed"] == {"shutdown": 1}


def test_the_best_pair_changing_does_not_close_the_open_one():
    run = Run(arb_settings(min_updates=1))
    run.feed(buy_at(0), sell_at(NET_030, 1))
    # c offers a much better sell; a -> b is judged on its own legs and stays open.
    run.feed(sell_at("101.50", 2, exchange="c"))
    assert run.steps() == [("open", "a", "b", None), ("open", "a", "c", None)]
    assert run.engine.best("BTC/USDT")[:2] == ("a", "c")
    run.feed(sell_at(NET_008, 3))  # a -> b still above the close threshold
    assert len(run.events) == 2
    run.feed(sell_at(NET_000, 4))
    assert run.steps()[-1] == ("close", "a", "b", "spread")
    assert run.engine.status()["open"] == 1


def test_ids_are_deterministic_and_new_per_life():
    def script() -> list[Arbitrage]:
        run = Run(arb_settings(min_updates=1))
        run.feed(buy_at(0), sell_at(NET_030, 1), sell_at(NET_000, 2), sell_at(NET_030, 3))
        return run.events

    first, second = script(), script()
    assert first == second
    assert [e.event for e in first] == ["open", "close", "open"]
    assert first[0].id == first[1].id != first[2].id


def test_reconfigure_keeps_legs_and_closes_what_no_longer_qualifies():
    run = Run(arb_settings(min_updates=1))
    run.feed(buy_at(0), sell_at(NET_008, 1))  # +0.08 %: too small to open
    assert run.events == []
    # A lower threshold lets it open on its next update: the legs' prices were kept.
    lower = arb_settings(min_updates=1, open_threshold_pct=0.05, close_threshold_pct=0.0)
    assert run.engine.reconfigure(lower) == []
    run.feed(buy_at(2))
    assert run.steps() == [("open", "a", "b", None)]
    # Still qualifying under new settings: kept open, nothing published.
    assert run.engine.reconfigure(arb_settings(min_updates=1, close_threshold_pct=0.01)) == []
    # A close threshold above its spread closes it, saying the configuration did.
    closed = run.engine.reconfigure(
        arb_settings(min_updates=1, open_threshold_pct=0.4, close_threshold_pct=0.35)
    )
    assert [(e.event, e.close_reason) for e in closed] == [("close", "config")]
    # New fees apply to the kept legs at once.
    run.engine.reconfigure(arb_settings(min_updates=1), {"a": 0.0, "b": 0.0})
    run.feed(sell_at(NET_008, 4))  # +0.28 % gross, no fees: opens
    assert run.steps()[-1] == ("open", "a", "b", None)
    assert run.events[-1].fees.buy == 0.0
    # Taking USDT out of every group separates BTC/USD from BTC/USDT: the pair closes.
    mixed = Run(arb_settings(min_updates=1))
    mixed.feed(buy_at(0), quote("b", "100.50", "100.60", 1, symbol="BTC/USD"))
    assert mixed.steps() == [("open", "a", "b", None)]
    closed = mixed.engine.reconfigure(arb_settings(min_updates=1, quote_groups=[]))
    assert [(e.event, e.close_reason) for e in closed] == [("close", "config")]


def test_depth_sizes_the_opportunity_and_fills_the_profit_curve():
    run = Run(
        arb_settings(min_updates=1, sizes=[50.0, 5_000.0], max_notional=1_000_000.0),
        lots={("a", "BTC/USDT"): "0.1", ("b", "BTC/USDT"): "0.01"},
    )
    run.feed(
        book("a", [("99.90", "5")], [("100.00", "1.05"), ("100.20", "2"), ("101.00", "9")], 0),
        book("b", [("100.60", "0.5"), ("100.50", "3"), ("99.00", "9")], [("100.70", "5")], 1),
    )
    [opened] = run.events
    assert opened.size_source == "book"
    # 100.00 -> 100.60 (0.5), 100.00 -> 100.50 (0.55), 100.20 -> 100.50 (+0.099 %: below the
    # 0.1 % threshold): 1.05, rounded down to the 0.1 lot.
    assert opened.quantity == 1.0
    assert opened.buy_vwap == 100.0
    assert opened.sell_vwap == (100.60 * 0.5 + 100.50 * 0.5) / 1.0
    expected = (100.60 * 0.5 + 100.50 * 0.5) * 0.999 - 100.0 * 1.001
    assert abs(opened.profit - expected) < 1e-8
    curve = {p.size: p.profit for p in opened.profit_curve}
    assert curve[50.0] is not None
    assert curve[50.0] > 0
    assert curve[5_000.0] is None  # the bids end at 12.5 units


# -- hysteresis ------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(spreads=st.lists(st.integers(51, 88), min_size=1, max_size=40))
def test_a_spread_between_the_thresholds_never_flaps(spreads):
    """Net spreads in (close, open) = (0.05 %, 0.1 %): an open one stays open, and nothing
    new opens."""
    config = arb_settings(min_updates=1, min_duration=0.0)
    run = Run(config, {"a": 0.0, "b": 0.0, "c": 0.0})
    run.feed(quote("a", "99.00", "100.00", 0), quote("b", "100.50", "101.00", 1))  # +0.5 %
    assert run.steps() == [("open", "a", "b", None)]
    for i, tenths in enumerate(spreads):  # tenths of a basis point: 0.051 % .. 0.088 %
        # a -> b between the thresholds, and c -> b (a new pair, one bp better, so the best
        # one) between them too.
        bid = 100.00 * (1 + tenths / 100_000)
        run.feed(quote("b", f"{bid:.4f}", "101.00", 2 + 2 * i))
        run.feed(quote("c", "99.00", "99.99", 3 + 2 * i))
    assert [e.event for e in run.events if e.event != "update"] == ["open"]
    assert run.engine.status()["open"] == 1


# -- on the hub ------------------------------------------------------------------------------


def test_on_the_hub_filters_match_either_leg_and_snapshots_hold_open_ones():
    hub = Hub()
    run = Run(arb_settings(min_updates=1))
    hub.add_processor(run.engine)
    by_sell = hub.subscribe(Filter(exchanges=frozenset({"b"}), channels=frozenset({"arbitrage"})))
    by_other = hub.subscribe(Filter(exchanges=frozenset({"z"}), channels=frozenset({"arbitrage"})))
    by_symbol = hub.subscribe(Filter(symbols=frozenset({"BTC/USDT"})))
    hub.publish([buy_at(0)])
    hub.publish([sell_at(NET_030, 1)])
    assert [type(e).__name__ for e in by_sell.drain()] == ["Arbitrage"]
    assert by_other.drain() == []
    assert [type(e).__name__ for e in by_symbol.drain()] == ["Quote", "Quote", "Arbitrage"]
    late = hub.subscribe(Filter(channels=frozenset({"arbitrage"})), snapshot=True)
    [snapshot] = late.drain()
    assert isinstance(snapshot, Arbitrage)
    assert snapshot.event == "open"
    hub.publish([sell_at(NET_000, 2)])
    assert [e.event for e in late.drain()] == ["close"]  # type: ignore[attr-defined]
    assert hub.subscribe(Filter(channels=frozenset({"arbitrage"})), snapshot=True).drain() == []
