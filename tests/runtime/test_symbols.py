"""``symbols add|remove`` at runtime against a simplex fake over loopback: data for added
symbols flows on new connections, removed symbols stop and leave no state behind, and
connections that carry only other symbols are never touched."""

from __future__ import annotations

import pytest
import trio

from arbd.errors import ConfigError
from arbd.hub import Filter
from arbd.model import Quote
from arbd.testing.fake import open_fake
from arbd.testing.harness import wait_until
from arbd_simplex.fake import SimplexFake

from .conftest import closed_politely, config_text, make_daemon, running, subs

BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"


def quoted(daemon, exchange: str, symbol: str) -> bool:
    return (exchange, symbol) in daemon.hub.state.quotes


async def test_added_symbols_flow_on_a_new_connection_and_existing_ones_stay(
    virtual_time, tmp_path, registry
):
    async with open_fake(SimplexFake([BTC, ETH, SOL])) as fake:
        text = config_text({"simplex": fake}, {"simplex": [BTC]})
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        async with running(daemon):
            first = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: first.subscriptions >= subs("BTC-USDT"))
            fake.start_soon(fake.run_feed, 20.0)
            await wait_until(lambda: quoted(daemon, "simplex", BTC))

            added = await daemon.add_symbols("simplex", ["eth/usdt", BTC, "SOL/USDT"])

            assert added == [ETH, SOL]  # BTC/USDT was subscribed already; input normalized
            await wait_until(
                lambda: quoted(daemon, "simplex", ETH) and quoted(daemon, "simplex", SOL)
            )
            # One new connection for the new symbols; the first one was never reconnected.
            assert fake.connection_count == 2
            assert first in fake.connections and not first.closed
            assert first.subscriptions == subs("BTC-USDT")
            assert fake.connections[-1].subscriptions == subs("ETH-USDT") | subs("SOL-USDT")
            feed = daemon.feeds.feeds["simplex"]
            assert feed.ctx.connections_opened == 2
            assert feed.ctx.reconnects == {}
            assert daemon.markets() == {"simplex": [BTC, ETH, SOL]}
            assert await daemon.add_symbols("simplex", [ETH]) == []
            assert fake.connection_count == 2


async def test_bad_additions_are_config_errors_and_change_nothing(virtual_time, tmp_path, registry):
    async with open_fake(SimplexFake()) as fake:
        text = config_text({"simplex": fake}, {"simplex": [BTC]})
        text += "[exchanges.mirror]\nenabled = false\n"
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        async with running(daemon):
            await fake.wait_connected()
            with pytest.raises(ConfigError) as info:
                await daemon.add_symbols("simplex", [ETH, "ETH/USDX"])
            # The start-up check's message, close matches included.
            assert "unknown symbol 'ETH/USDX' on simplex (did you mean ETH/USDT" in str(info.value)
            with pytest.raises(
                ConfigError, match="unknown exchange 'kraken' \\(running: simplex\\)"
            ):
                await daemon.add_symbols("kraken", [BTC])
            with pytest.raises(ConfigError, match="exchange 'mirror' is disabled"):
                await daemon.add_symbols("mirror", [BTC])
            with pytest.raises(ConfigError, match="'BTCUSDT' is not a BASE/QUOTE symbol"):
                await daemon.add_symbols("simplex", ["BTCUSDT"])
            with pytest.raises(ConfigError, match="no symbols given"):
                await daemon.add_symbols("simplex", [])
            # All or nothing: ETH/USDT, valid, was not added with the bad one.
            assert daemon.markets() == {"simplex": [BTC]}
            assert fake.connection_count == 1


async def test_removed_symbols_stop_and_their_state_is_dropped(virtual_time, tmp_path, registry):
    async with open_fake(SimplexFake()) as fake:
        text = config_text({"simplex": fake}, {"simplex": [BTC, ETH]})
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        async with running(daemon):
            first = await fake.wait_connected()
            fake.start_soon(fake.run_feed, 20.0)
            await wait_until(
                lambda: (
                    ("simplex", ETH) in daemon.hub.state.books and quoted(daemon, "simplex", BTC)
                )
            )
            with pytest.raises(ConfigError, match="'SOL/USDT' is not subscribed on simplex"):
                await daemon.remove_symbols("simplex", [ETH, SOL])
            assert daemon.markets() == {"simplex": [BTC, ETH]}

            removed = await daemon.remove_symbols("simplex", [ETH])

            assert removed == [ETH]
            # The connection carried both: it is closed politely and replaced by one with BTC.
            await closed_politely(fake, first)
            with trio.fail_after(10):
                await fake.wait_for(lambda: fake.connection_count == 2 and first.closed)
                second = fake.connections[-1]
                await fake.wait_for(lambda: second.subscriptions == subs("BTC-USDT"))
            state = daemon.hub.state
            assert not [
                key for key in (*state.quotes, *state.books, *state.book_state) if key[1] == ETH
            ]
            # A new subscriber gets no stale ETH snapshot, and no ETH data arrives any more.
            sub = daemon.hub.subscribe(snapshot=True)
            await wait_until(lambda: quoted(daemon, "simplex", BTC) and len(sub) > 20)
            events = sub.drain()
            assert not [e for e in events if e.symbol == ETH]
            assert [e for e in events if isinstance(e, Quote) and e.symbol == BTC]
            assert daemon.markets() == {"simplex": [BTC]}


async def test_removing_symbols_of_one_connection_leaves_the_others_alone(
    virtual_time, tmp_path, registry
):
    async with open_fake(SimplexFake()) as fake:
        text = config_text({"simplex": fake}, {"simplex": [BTC]})
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        async with running(daemon):
            first = await fake.wait_connected()
            await daemon.add_symbols("simplex", [ETH])
            second = await fake.wait_connected(2)
            with trio.fail_after(10):
                await fake.wait_for(lambda: second.subscriptions == subs("ETH-USDT"))
            fake.start_soon(fake.run_feed, 20.0)
            await wait_until(lambda: quoted(daemon, "simplex", ETH))
            sub = daemon.hub.subscribe(Filter(channels=frozenset({"status"})))

            assert await daemon.remove_symbols("simplex", [ETH]) == [ETH]

            await closed_politely(fake, second)
            assert fake.connection_count == 2  # nothing replaced, nothing reconnected
            assert first in fake.connections and not first.closed
            # The slot announces itself removed (not down): the engine keeps using simplex.
            [last] = [e for e in sub.drain() if e.scope == "connection"][-1:]
            assert (last.state, last.reason) == ("stopped", "removed")
            assert daemon.status().exchanges[0].state in ("live", "degraded")
            assert daemon.status().exchanges[0].connections == 1


async def test_a_live_conversion_market_cannot_be_removed_at_runtime(
    virtual_time, tmp_path, registry
):
    async with open_fake(SimplexFake([BTC, "USDT/USD"])) as fake:
        live = (
            'conversion = "live"\nquote_groups = [["USD", "USDT"]]\n'
            'conversion_markets = ["simplex:USDT/USD"]\n'
        )
        text = config_text({"simplex": fake}, {"simplex": [BTC]}, arbitrage=live)
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        async with running(daemon):
            await fake.wait_connected()
            assert daemon.markets() == {"simplex": [BTC, "USDT/USD"]}
            with pytest.raises(ConfigError, match=r"from arbitrage\.conversion_markets and reload"):
                await daemon.remove_symbols("simplex", ["USDT/USD"])
            assert daemon.markets() == {"simplex": [BTC, "USDT/USD"]}
