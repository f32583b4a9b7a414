"""The engine when markets or exchanges are removed at runtime, and removed connection slots."""

from __future__ import annotations

import msgspec

from arbd.model import SLOT_REMOVED

from .conftest import Run, prices_apart, quote, settings, status

FAST = settings(min_updates=1, min_duration=0.0)


def opened(run: Run, at: float = 0) -> None:
    ask, bid = prices_apart(1.0)
    run.feed(quote("a", "63990.00", ask, at), quote("b", bid, "65000.00", at + 1))
    assert run.steps()[-1] == ("open", "a", "b", None)


def test_removing_a_market_closes_its_opportunities_with_reason_config():
    run = Run(FAST)
    opened(run)
    run._keep(run.engine.remove_markets("b", ["BTC/USDT"]))
    assert run.steps()[-1] == ("close", "a", "b", "config")
    assert run.engine.status()["legs"] == 1
    # The market is gone: its old prices cannot reopen anything with a new quote of "a".
    run.feed(quote("a", "63990.00", "64000.00", 5))
    assert run.steps()[-1][0] == "close"
    assert run.engine.status()["open"] == 0


def test_removing_an_exchange_forgets_its_health_too():
    run = Run(FAST)
    run.feed(status("b", "exchange", "failed", 0))
    opened_before = run.engine.status()["opened"]
    run._keep(run.engine.remove_markets("b"))
    assert run.engine.status()["legs"] == 0
    # "b" comes back (added again by a reload): its old failure does not block it.
    opened(run, 10)
    assert run.engine.status()["opened"] == opened_before + 1


def test_other_markets_of_the_exchange_are_left_alone():
    run = Run(FAST)
    opened(run)
    run.feed(quote("b", "1", "2", 2, symbol="ETH/USDT"))
    run._keep(run.engine.remove_markets("b", ["ETH/USDT"]))
    assert run.steps()[-1] == ("open", "a", "b", None)
    assert run.engine.status()["open"] == 1


def test_a_removed_slot_does_not_count_as_down():
    run = Run(FAST)
    run.feed(status("b", "connection", "live", 0, connection="b-1"))
    run.feed(status("b", "connection", "live", 0, connection="b-2"))
    opened(run, 1)
    # b-2's symbols were removed at runtime: its last word is "stopped, removed".
    removed = status("b", "connection", "stopped", 5, connection="b-2")
    run.feed(msgspec.structs.replace(removed, reason=SLOT_REMOVED))
    assert run.steps()[-1] == ("open", "a", "b", None)
    # A slot that stops for any other reason (shutdown) does block the exchange.
    run.feed(status("b", "connection", "stopped", 6, connection="b-1"))
    assert run.steps()[-1] == ("close", "a", "b", "exchange_down:b")
