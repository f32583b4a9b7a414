"""``Daemon.status()``, ``opportunities()`` and ``request_stop()`` against running fakes."""

from __future__ import annotations

import os

import msgspec
import trio

import arbd
from arbd.daemon import Daemon
from arbd.signals import run_until_signal
from arbd.status import DaemonStatus
from arbd.testing.fake import open_fake
from arbd.testing.harness import wait_until
from arbd_simplex.fake import SimplexFake

from .conftest import config_text, make_daemon, running

BTC, ETH = "BTC/USDT", "ETH/USDT"


async def test_status_of_a_live_feed(virtual_time, tmp_path, registry):
    async with open_fake(SimplexFake()) as fake:
        text = config_text({"simplex": fake}, {"simplex": [BTC, ETH]})
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        before = daemon.status()
        assert before.exchanges == [] and before.uptime == 0.0
        async with running(daemon):
            await fake.wait_connected()
            fake.start_soon(fake.run_feed, 20.0)
            await wait_until(lambda: len(daemon.hub.state.books) == 2)
            await trio.sleep(3.0)  # a few rate samples with data flowing
            client = daemon.hub.subscribe()
            status = daemon.status()

            assert status.version == arbd.__version__
            assert status.pid == os.getpid()
            assert status.uptime >= 3.0
            assert status.config_path == str(tmp_path / "arbd.toml")
            assert status.clients == 1
            [simplex] = status.exchanges
            assert simplex.exchange == "simplex"
            assert simplex.state == "live"
            assert (simplex.connections, simplex.connections_live) == (1, 1)
            assert simplex.symbols == [BTC, ETH]
            assert simplex.messages > 50  # 20 rounds/s of several frames, for 3 s and more
            # 20 rounds a second, each one frame per symbol and channel that has news.
            assert 20 <= simplex.messages_per_s <= 200
            assert simplex.last_message_age is not None and simplex.last_message_age < 1.0
            assert (simplex.books_valid, simplex.books_invalid) == (2, 0)
            assert simplex.reconnects == 0 and simplex.error == ""
            # What the control channel sends: it survives a JSON round trip.
            wire = msgspec.json.encode(status)
            assert msgspec.json.decode(wire, type=DaemonStatus) == status
            daemon.hub.unsubscribe(client)


async def test_messages_are_counted_across_reconnects(virtual_time, tmp_path, registry):
    async with open_fake(SimplexFake()) as fake:
        text = config_text({"simplex": fake}, {"simplex": [BTC]})
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        async with running(daemon):
            await fake.wait_connected()
            await fake.pump(5)
            await wait_until(lambda: daemon.status().exchanges[0].messages >= 5)
            before = daemon.status().exchanges[0].messages
            fake.drop_all()
            with trio.fail_after(20):
                await fake.wait_for(lambda: fake.connection_count == 2 and fake.connections)
                second = fake.connections[-1]
                await fake.wait_for(lambda: second.subscriptions)
            await fake.pump(5)
            await wait_until(lambda: daemon.status().exchanges[0].messages >= before + 5)
            status = daemon.status().exchanges[0]
            assert status.reconnects == 1
            assert second.open


async def test_an_exchange_that_fails_says_why(virtual_time, tmp_path, registry):
    async with open_fake(SimplexFake()) as fake:
        # The fake does not list DOGE/USDT: the feed fails at start-up, the daemon carries on.
        text = config_text({"simplex": fake}, {"simplex": ["DOGE/USDT"]})
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        async with running(daemon):
            [simplex] = daemon.status().exchanges
            assert simplex.state == "failed"
            assert "unknown symbol 'DOGE/USDT' on simplex" in simplex.error


async def test_opportunities_open_and_recently_closed(virtual_time, tmp_path, registry):
    async with (
        open_fake(SimplexFake(prices={BTC: "64000.00"})) as low,
        open_fake(SimplexFake(prices={BTC: "65000.00"})) as high,
    ):
        fakes = {"simplex": low, "mirror": high}
        text = config_text(fakes, {"simplex": [BTC], "mirror": [BTC]})
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        async with running(daemon):
            await low.wait_connected()
            await high.wait_connected()
            for fake in fakes.values():
                fake.start_soon(fake.run_feed, 20.0)
            await wait_until(daemon.opportunities)
            [opened] = daemon.opportunities()
            assert (opened.buy_exchange, opened.sell_exchange) == ("simplex", "mirror")
            assert opened.event in ("open", "update")
            assert daemon.status().opportunities_open == 1
            # The expensive side stops: the opportunity closes once its quotes are stale.
            high.faults.stall = True
            await wait_until(lambda: not daemon.opportunities())
            everything = daemon.opportunities(include_closed=True)
            assert [e.event for e in everything] == ["close"]
            assert everything[0].id == opened.id
            assert everything[0].close_reason is not None


async def test_request_stop_ends_run_until_signal_and_closes_connections(
    virtual_time, tmp_path, registry
):
    async with open_fake(SimplexFake()) as fake:
        text = config_text({"simplex": fake}, {"simplex": [BTC]})
        daemon = make_daemon(tmp_path / "arbd.toml", text, registry)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_until_signal, daemon)
                conn = await fake.wait_connected()
                await fake.wait_for(lambda: conn.subscriptions)
                daemon.request_stop()
            # run_until_signal returned on its own: the nursery could close.
            await fake.wait_for(lambda: conn.closed)
        assert conn.close_code == 1000
        assert daemon.status().exchanges[0].state == "stopped"


async def test_request_stop_before_run_returns_at_once(registry):
    daemon = Daemon(msgspec.convert({}, arbd.config.Config), registry)
    daemon.request_stop()
    with trio.fail_after(5):
        await daemon.run()
