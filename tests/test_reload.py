"""The reload planner, pure: two configs in, the changes to make and their lines out."""

from __future__ import annotations

from typing import Any

import pytest

from arbd.config import Config, parse_config
from arbd.errors import ConfigError
from arbd.reload import effective_symbols, plan_reload, show

DEFAULTS = {"binance": ("BTC/USDT", "ETH/USDT"), "kraken": ("BTC/USD",), "okx": ("BTC/USDT",)}


def config(**sections: Any) -> Config:
    return parse_config(sections, "arbd.toml")


def running_symbols(cfg: Config) -> dict[str, list[str]]:
    """What runs after starting with ``cfg`` (no runtime changes)."""
    return {
        ex: list(effective_symbols(settings, DEFAULTS.get(ex, ())))
        for ex, settings in cfg.exchanges.items()
        if settings.enabled
    }


def plan(old: Config, new: Config, running: dict[str, list[str]] | None = None):
    return plan_reload(old, new, running or running_symbols(old), DEFAULTS, "arbd.toml")


BASE = {"exchanges": {"binance": {"symbols": ["BTC/USDT"]}, "kraken": {}}}


def test_nothing_changed_means_no_lines():
    result = plan(config(**BASE), config(**BASE))
    assert result.lines == []
    assert not (result.added or result.removed or result.restarted or result.reconfigure_engine)
    assert result.log_level is None


def test_symbols_added_and_removed_per_exchange():
    new = config(exchanges={"binance": {"symbols": ["ETH/USDT", "SOL/USDT"]}, "kraken": {}})
    result = plan(config(**BASE), new)
    assert result.lines == ["binance: +ETH/USDT", "binance: +SOL/USDT", "binance: -BTC/USDT"]
    assert result.symbols_added == {"binance": ["ETH/USDT", "SOL/USDT"]}
    assert result.symbols_removed == {"binance": ["BTC/USDT"]}
    assert not result.restarted


def test_symbols_are_compared_with_what_runs_not_with_the_old_file():
    # A runtime `symbols add` of SOL/USDT: a reload of the unchanged file takes it away again.
    old = config(**BASE)
    running = {"binance": ["BTC/USDT", "SOL/USDT"], "kraken": ["BTC/USD"]}
    result = plan(old, old, running)
    assert result.lines == ["binance: -SOL/USDT"]


def test_default_symbols_count_when_none_are_configured():
    new = config(exchanges={"binance": {"symbols": ["BTC/USDT"]}, "kraken": {"symbols": []}})
    assert plan(config(**BASE), new).lines == []
    explicit = config(
        exchanges={"binance": {"symbols": ["BTC/USDT"]}, "kraken": {"symbols": ["ETH/USD"]}}
    )
    assert plan(config(**BASE), explicit).lines == ["kraken: +ETH/USD", "kraken: -BTC/USD"]


def test_exchanges_added_removed_and_toggled():
    new = config(
        exchanges={"binance": {"symbols": ["BTC/USDT"]}, "kraken": {"enabled": False}, "okx": {}}
    )
    result = plan(config(**BASE), new)
    assert result.lines == ["kraken: removed", "okx: added"]
    assert (result.added, result.removed) == (["okx"], ["kraken"])
    assert result.reconfigure_engine  # the engine's fees change with the exchanges


@pytest.mark.parametrize(
    ("key", "value", "line"),
    [
        ("book_depth", 50, "binance: book_depth 20 -> 50 (feed restarted)"),
        (
            "channels",
            ["price"],
            'binance: channels ["price","trades","book","candles"] -> ["price"] (feed restarted)',
        ),
        (
            "ws_url",
            "wss://example.test",
            'binance: ws_url "" -> wss://example.test (feed restarted)',
        ),
        ("stale_after", 5.0, "binance: stale_after unset -> 5.0 (feed restarted)"),
    ],
)
def test_settings_baked_into_connections_restart_that_feed(key, value, line):
    new = config(
        exchanges={"binance": {"symbols": ["BTC/USDT", "ETH/USDT"], key: value}, "kraken": {}}
    )
    result = plan(config(**BASE), new)
    assert result.lines == [line, "binance: +ETH/USDT"]
    assert result.restarted == ["binance"]
    # The restarted feed takes its symbols from the new config: no separate symbol changes.
    assert result.symbols_added == {} and result.symbols_removed == {}


def test_fees_apply_live():
    new = config(
        exchanges={"binance": {"symbols": ["BTC/USDT"], "taker_fee_pct": 0.08}, "kraken": {}}
    )
    result = plan(config(**BASE), new)
    assert result.lines == ["binance: taker_fee_pct unset -> 0.08"]
    assert result.reconfigure_engine and not result.restarted
    maker = config(
        exchanges={"binance": {"symbols": ["BTC/USDT"], "maker_fee_pct": 0.02}, "kraken": {}}
    )
    result = plan(config(**BASE), maker)
    assert result.lines == ["binance: maker_fee_pct unset -> 0.02"]
    assert not result.reconfigure_engine  # the detector charges taker fees only


def test_arbitrage_settings_and_log_level_apply_live():
    new = config(
        **BASE,
        arbitrage={"open_threshold_pct": 0.2, "sizes": [500.0]},
        logging={"level": "debug"},
        daemon={"name": "arbd-2"},
    )
    result = plan(config(**BASE), new)
    assert result.lines == [
        "daemon.name arbd -> arbd-2",
        "logging.level info -> debug",
        "arbitrage: open_threshold_pct 0.1 -> 0.2",
        "arbitrage: sizes [1000.0,10000.0,100000.0] -> [500.0]",
    ]
    assert result.reconfigure_engine
    assert result.log_level == "debug"
    assert result.config.arbitrage.open_threshold_pct == 0.2


def test_start_up_keys_need_a_restart_and_keep_their_running_values():
    new = config(
        **BASE,
        server={"port": 9000},
        control={"socket": "/run/x.sock"},
        metrics={"enabled": False},
        feed={"stale_after": 5.0},
        logging={"format": "json"},
        daemon={"plugin_dirs": ["/opt/arbd-plugins"]},
    )
    result = plan(config(**BASE), new)
    assert result.lines == [
        "restart needed for server.port",
        "restart needed for control.socket",
        "restart needed for metrics.enabled",
        "restart needed for feed.stale_after",
        "restart needed for logging.format",
        "restart needed for daemon.plugin_dirs",
    ]
    running = result.config
    assert (running.server.port, running.control.socket) == (8765, "")
    assert (running.metrics.enabled, running.feed.stale_after) == (True, 10.0)
    assert running.logging.format == "text"
    assert running.daemon.plugin_dirs == []


def test_switching_the_engine_on_or_off_needs_a_restart():
    new = config(**BASE, arbitrage={"enabled": False, "open_threshold_pct": 0.5})
    result = plan(config(**BASE), new)
    assert result.lines == ["restart needed for arbitrage.enabled"]
    assert result.config.arbitrage == Config().arbitrage
    assert not result.reconfigure_engine


def test_live_conversion_markets_are_symbols_of_their_exchange():
    live = {
        "conversion": "live",
        "quote_groups": [["USD", "USDT"]],
        "conversion_markets": ["kraken:USDT/USD"],
    }
    new = config(**BASE, arbitrage=live)
    result = plan(config(**BASE), new)
    assert "kraken: +USDT/USD" in result.lines
    assert result.symbols_added == {"kraken": ["USDT/USD"]}
    # On an exchange that is not enabled: rejected, with the key named.
    off = config(exchanges={"binance": {"symbols": ["BTC/USDT"]}}, arbitrage=live)
    with pytest.raises(ConfigError, match=r"arbd.toml: arbitrage.conversion_markets\[0\]"):
        plan(config(**BASE), off)


def test_values_are_shown_the_way_toml_writes_them():
    assert [show(v) for v in (None, True, "", "x", 0.5, 3, ["a"])] == [
        "unset",
        "true",
        '""',
        "x",
        "0.5",
        "3",
        '["a"]',
    ]
