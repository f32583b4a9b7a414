"""``Daemon.reload()`` and SIGHUP against simplex fakes over loopback: the difference is
applied live, connections the change does not touch stay up, a bad file changes nothing."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import trio

from arbd.config import Config
from arbd.daemon import Daemon
from arbd.errors import ConfigError
from arbd.signals import run_until_signal
from arbd.testing.fake import open_fake
from arbd.testing.harness import wait_until
from arbd_simplex.fake import SimplexFake

from .conftest import closed_politely, config_text, make_daemon, running, subs

BTC, ETH = "BTC/USDT", "ETH/USDT"


async def test_a_changed_threshold_reconfigures_the_engine(virtual_time, tmp_path, registry):
    async with open_fake(SimplexFake()) as fake:
        path = tmp_path / "arbd.toml"
        daemon = make_daemon(path, config_text({"simplex": fake}, {"simplex": [BTC]}), registry)
        async with running(daemon):
            conn = await fake.wait_connected()
            path.write_text(
                config_text(
                    {"simplex": fake}, {"simplex": [BTC]}, arbitrage="open_threshold_pct = 0.2"
                )
            )
            lines = await daemon.reload()
            assert lines == ["arbitrage: open_threshold_pct 0.1 -> 0.2"]
            assert daemon.engine is not None
            assert daemon.engine.settings.open_threshold_pct == 0.2
            assert daemon.config.arbitrage.open_threshold_pct == 0.2
            assert fake.connection_count == 1 and not conn.closed
            # Nothing changed since: nothing to do.
            assert await daemon.reload() == []


async def test_an_added_symbol_starts_without_reconnecting_the_others(
    virtual_time, tmp_path, registry
):
    async with open_fake(SimplexFake()) as fake:
        path = tmp_path / "arbd.toml"
        daemon = make_daemon(path, config_text({"simplex": fake}, {"simplex": [BTC]}), registry)
        async with running(daemon):
            first = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: first.subscriptions == subs("BTC-USDT"))
            fake.start_soon(fake.run_feed, 20.0)
            path.write_text(config_text({"simplex": fake}, {"simplex": [BTC, ETH]}))

            assert await daemon.reload() == ["simplex: +ETH/USDT"]

            await wait_until(lambda: ("simplex", ETH) in daemon.hub.state.quotes)
            assert fake.connection_count == 2
            assert not first.closed and first.subscriptions == subs("BTC-USDT")
            assert daemon.markets() == {"simplex": [BTC, ETH]}
            # And back.
            path.write_text(config_text({"simplex": fake}, {"simplex": [BTC]}))
            assert await daemon.reload() == ["simplex: -ETH/USDT"]
            assert ("simplex", ETH) not in daemon.hub.state.quotes
            assert not first.closed


async def test_runtime_symbols_are_reconciled_with_the_file(virtual_time, tmp_path, registry):
    async with open_fake(SimplexFake()) as fake:
        path = tmp_path / "arbd.toml"
        daemon = make_daemon(path, config_text({"simplex": fake}, {"simplex": [BTC]}), registry)
        async with running(daemon):
            await fake.wait_connected()
            await daemon.add_symbols("simplex", [ETH])
            # The file does not name ETH/USDT: a reload makes the daemon match it.
            assert await daemon.reload() == ["simplex: -ETH/USDT"]
            assert daemon.markets() == {"simplex": [BTC]}


async def test_exchanges_come_and_go(virtual_time, tmp_path, registry):
    async with (
        open_fake(SimplexFake(prices={BTC: "64000.00"})) as low,
        open_fake(SimplexFake(prices={BTC: "65000.00"})) as high,
    ):
        fakes = {"simplex": low, "mirror": high}
        path = tmp_path / "arbd.toml"
        daemon = make_daemon(path, config_text(fakes, {"simplex": [BTC]}), registry)
        async with running(daemon):
            kept = await low.wait_connected()
            low.start_soon(low.run_feed, 20.0)
            high.start_soon(high.run_feed, 20.0)
            path.write_text(config_text(fakes, {"simplex": [BTC], "mirror": [BTC]}))

            assert await daemon.reload() == ["mirror: added"]

            await wait_until(lambda: ("mirror", BTC) in daemon.hub.state.quotes)
            await wait_until(daemon.opportunities)
            [opened] = daemon.opportunities()
            assert opened.sell_exchange == "mirror"
            mirror_conn = high.connections[-1]
            # The taker fee of the new exchange reached the engine.
            assert opened.fees.sell == 0.1

            path.write_text(config_text(fakes, {"simplex": [BTC]}))
            assert await daemon.reload() == ["mirror: removed"]

            await closed_politely(high, mirror_conn)
            assert list(daemon.markets()) == ["simplex"]
            assert [e.exchange for e in daemon.status().exchanges] == ["simplex"]
            state = daemon.hub.state
            assert not [k for k in (*state.quotes, *state.books, *state.status) if k[0] == "mirror"]
            assert daemon.opportunities() == []
            [closed] = daemon.opportunities(include_closed=True)
            assert (closed.id, closed.close_reason) == (opened.id, "config")
            # The exchange that stayed was never touched.
            assert low.connection_count == 1 and not kept.closed


async def test_a_changed_book_depth_restarts_only_that_feed(virtual_time, tmp_path, registry):
    async with open_fake(SimplexFake()) as low, open_fake(SimplexFake()) as high:
        fakes = {"simplex": low, "mirror": high}
        path = tmp_path / "arbd.toml"
        both = {"simplex": [BTC], "mirror": [BTC]}
        daemon = make_daemon(path, config_text(fakes, both), registry)
        async with running(daemon):
            untouched = await low.wait_connected()
            restarted = await high.wait_connected()
            high.start_soon(high.run_feed, 20.0)
            await wait_until(lambda: daemon.status().exchanges[0].messages > 0)
            before = daemon.status().exchanges[0].messages
            text = config_text(fakes, both, exchange_extra={"mirror": "book_depth = 5\n"})
            path.write_text(text)

            assert await daemon.reload() == ["mirror: book_depth 20 -> 5 (feed restarted)"]

            await closed_politely(high, restarted)
            with trio.fail_after(10):
                await high.wait_for(lambda: high.connection_count == 2)
            await wait_until(lambda: daemon.hub.state.books.get(("mirror", BTC)) is not None)
            assert daemon.hub.state.books["mirror", BTC].depth == 5
            assert low.connection_count == 1 and not untouched.closed
            # The restarted feed's counters went on from where they were.
            assert daemon.status().exchanges[0].messages >= before


async def test_a_bad_file_is_rejected_and_everything_keeps_running(
    virtual_time, tmp_path, registry, caplog
):
    async with open_fake(SimplexFake()) as fake:
        path = tmp_path / "arbd.toml"
        good = config_text({"simplex": fake}, {"simplex": [BTC]})
        daemon = make_daemon(path, good, registry)
        async with running(daemon):
            conn = await fake.wait_connected()
            fake.start_soon(fake.run_feed, 20.0)
            running_config = daemon.config
            for bad, expected in [
                ("[arbitrage]\nopen_threshold_pct = 'high'\n", "arbitrage.open_threshold_pct"),
                ("[exchanges.nope]\n", "unknown exchange 'nope'"),
                (good.replace('["BTC/USDT"]', '["BTC/USDT", "ETH/USDX"]'), "did you mean ETH/USDT"),
                ("this is [not toml", "invalid TOML"),
            ]:
                path.write_text(bad)
                with pytest.raises(ConfigError) as info:
                    await daemon.reload()
                message = info.value.one_line()
                assert message.startswith(f"{path}: ") and expected in message
                assert "\n" not in message
                assert daemon.config is running_config
                assert daemon.markets() == {"simplex": [BTC]}
                assert f"reload rejected, running configuration kept: {message}" in caplog.text
            path.unlink()
            with pytest.raises(ConfigError, match="cannot read"):
                await daemon.reload()
            assert fake.connection_count == 1 and not conn.closed
            seen = daemon.status().exchanges[0].messages
            await wait_until(lambda: daemon.status().exchanges[0].messages > seen)


async def test_log_level_applies_live_and_start_up_keys_need_a_restart(
    virtual_time, tmp_path, registry
):
    async with open_fake(SimplexFake()) as fake:
        path = tmp_path / "arbd.toml"
        daemon = make_daemon(path, config_text({"simplex": fake}, {"simplex": [BTC]}), registry)
        root = logging.getLogger()
        old_level = root.level
        try:
            async with running(daemon):
                await fake.wait_connected()
                top = "[logging]\nlevel = 'debug'\n[control]\nsocket = '/tmp/elsewhere.sock'\n"
                text = config_text({"simplex": fake}, {"simplex": [BTC]}, top=top)
                path.write_text(text.replace("connect_timeout = 2.0", "connect_timeout = 3.0"))
                assert await daemon.reload() == [
                    "logging.level info -> debug",
                    "restart needed for control.socket",
                    "restart needed for feed.connect_timeout",
                ]
                assert root.level == logging.DEBUG
                # Not applied, so still different: said again on the next reload.
                assert daemon.config.control.socket == ""
                assert await daemon.reload() == [
                    "restart needed for control.socket",
                    "restart needed for feed.connect_timeout",
                ]
        finally:
            root.setLevel(old_level)


async def test_reload_without_a_config_file_or_before_running_is_refused(tmp_path, registry):
    daemon = Daemon(Config(), registry)
    with pytest.raises(ConfigError, match="not started from a config file"):
        await daemon.reload()
    path = tmp_path / "arbd.toml"
    path.write_text("")
    not_running = Daemon(Config(), registry, config_path=path)
    with pytest.raises(ConfigError, match="the daemon is not running"):
        await not_running.reload()


async def test_sighup_reloads_and_a_bad_file_keeps_the_daemon_running(tmp_path, registry, caplog):
    # Real time: under virtual time a loaded machine once let the clock jump past the feed's
    # start-up timeouts (a worker thread idle for more than the autojump threshold).
    caplog.set_level(logging.INFO, logger="arbd")
    async with open_fake(SimplexFake()) as fake:
        path = tmp_path / "arbd.toml"
        daemon = make_daemon(path, config_text({"simplex": fake}, {"simplex": [BTC]}), registry)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_until_signal, daemon)
                first = await fake.wait_connected()
                path.write_text(config_text({"simplex": fake}, {"simplex": [BTC, ETH]}))
                os.kill(os.getpid(), signal.SIGHUP)
                await wait_until(lambda: daemon.markets() == {"simplex": [BTC, ETH]})
                await fake.wait_connected(2)
                assert "simplex: +ETH/USDT" in caplog.text
                path.write_text("[server\n")
                os.kill(os.getpid(), signal.SIGHUP)
                await wait_until(lambda: "reload rejected" in caplog.text)
                assert "invalid TOML" in caplog.text
                assert not first.closed and daemon.markets() == {"simplex": [BTC, ETH]}
                daemon.request_stop()
        assert first.close_code == 1000
