"""The engine inside the daemon: fees and lots from the adapters, conversion markets, ticks."""

from __future__ import annotations

import msgspec
import pytest
import trio

from arbd.config import Config
from arbd.daemon import Daemon
from arbd.errors import ConfigError
from arbd.exchange.adapter import Instrument
from arbd.feed.clock import TrioClock
from arbd.hub import Filter
from arbd.model import Arbitrage, Quote


def config(**arbitrage: object) -> Config:
    return msgspec.convert(
        {
            "exchanges": {
                "simplex": {"symbols": ["BTC/USDT"]},
                "mirror": {"symbols": ["BTC/USDT"], "taker_fee_pct": 0.05},
            },
            "arbitrage": {"min_updates": 1, **arbitrage},
        },
        Config,
    )


def quote(exchange: str, bid: str, ask: str, received_ns: int) -> Quote:
    return Quote(
        exchange=exchange,
        symbol="BTC/USDT",
        bid=bid,
        ask=ask,
        bid_size="0.123456",
        ask_size="5",
        timestamp=received_ns // 1_000_000,
        received_ns=received_ns,
    )


def lot(symbol: str, size: str) -> Instrument:
    return Instrument(
        symbol=symbol,
        native=symbol.replace("/", "-"),
        base=symbol.split("/", maxsplit=1)[0],
        quote=symbol.split("/")[1],
        tick_size="0.01",
        lot_size=size,
        price_precision=2,
        size_precision=4,
    )


def test_the_daemon_feeds_its_engine_fees_and_lot_sizes(registry):
    daemon = Daemon(config(), registry)
    assert daemon.engine is not None
    sub = daemon.hub.subscribe(Filter(channels=frozenset({"arbitrage"})))
    # Instruments are loaded after start-up: the lookup is lazy.
    daemon.adapters["mirror"].instruments["BTC/USDT"] = lot("BTC/USDT", "0.001")
    daemon.publish([quote("simplex", "99.90", "100.00", 1_000)])
    daemon.publish([quote("mirror", "101.00", "101.10", 2_000)])
    [opened] = sub.drain()
    assert isinstance(opened, Arbitrage)
    # simplex: the adapter's default 0.1 %; mirror: the configured 0.05 %.
    assert (opened.fees.buy, opened.fees.sell) == (0.1, 0.05)
    assert opened.quantity == 0.123  # the top size, rounded down to mirror's lot


def test_arbitrage_can_be_disabled(registry):
    daemon = Daemon(config(enabled=False), registry)
    assert daemon.engine is None
    assert daemon.hub.processors == []


def test_live_conversion_markets_are_subscribed(registry):
    daemon = Daemon(
        config(
            conversion="live",
            quote_groups=[["USD", "USDT"]],
            conversion_markets=["mirror:USDT/USD"],
        ),
        registry,
    )
    assert daemon.adapters["mirror"].settings.symbols == ("BTC/USDT", "USDT/USD")
    assert daemon.adapters["simplex"].settings.symbols == ("BTC/USDT",)
    with pytest.raises(ConfigError) as info:
        Daemon(
            config(
                conversion="live",
                quote_groups=[["USD", "USDT"]],
                conversion_markets=["kraken:USDT/USD"],
            ),
            registry,
        )
    assert "arbitrage.conversion_markets[0]" in str(info.value)
    assert "'kraken' is not configured and enabled" in str(info.value)


async def test_the_tick_task_closes_stale_opportunities_and_everything_on_stop(
    registry, autojump_clock
):
    daemon = Daemon(config(), registry)
    engine = daemon.engine
    assert engine is not None
    sub = daemon.hub.subscribe(Filter(channels=frozenset({"arbitrage"})))
    clock = TrioClock(epoch_ns=1_700_000_000_000_000_000)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon._run_arbitrage_ticks, engine, clock)
        daemon.publish([quote("simplex", "99.90", "100.00", clock.wall_ns())])
        daemon.publish([quote("mirror", "101.00", "101.10", clock.wall_ns())])
        assert [e.event for e in sub.drain()] == ["open"]  # type: ignore[attr-defined]
        # No more data: after max_quote_age (2 s) a tick closes it, within one tick interval.
        await trio.sleep(2.05)
        assert sub.drain() == []
        await trio.sleep(0.1)
        [closed] = sub.drain()
        assert isinstance(closed, Arbitrage)
        assert closed.close_reason == "stale:simplex"
        # Open another one, then stop the daemon: it closes with reason shutdown.
        daemon.publish([quote("simplex", "99.90", "100.00", clock.wall_ns())])
        daemon.publish([quote("mirror", "101.00", "101.10", clock.wall_ns())])
        assert [e.event for e in sub.drain()] == ["open"]  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()
    [closed] = sub.drain()
    assert isinstance(closed, Arbitrage)
    assert closed.close_reason == "shutdown"
