"""``[arbitrage]`` validation: one line naming the file, the key path and the problem."""

from __future__ import annotations

import pytest

from arbd.config import parse_config
from arbd.errors import ConfigError


def error_of(section: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"arbitrage": section}, "arbd.toml")
    return str(info.value)


LIVE = {"conversion": "live", "quote_groups": [["USD", "USDT"]]}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"open_threshold_pct": -0.1}, "arbitrage.open_threshold_pct: must not be negative"),
        ({"open_threshold_pct": float("nan")}, "arbitrage.open_threshold_pct: must be a finite number"),
        ({"close_threshold_pct": 0.2}, "arbitrage.close_threshold_pct: must not exceed arbitrage.open_threshold_pct"),
        ({"min_duration": -1.0}, "arbitrage.min_duration: must not be negative"),
        ({"min_updates": 0}, "arbitrage.min_updates: must be at least 1"),
        ({"max_quote_age": 0.0}, "arbitrage.max_quote_age: must be greater than 0"),
        ({"tick_interval": 0.0}, "arbitrage.tick_interval: must be greater than 0"),
        ({"update_interval": -1.0}, "arbitrage.update_interval: must not be negative"),
        ({"update_min_change_pct": -0.01}, "arbitrage.update_min_change_pct: must not be negative"),
        ({"max_notional": 0.0}, "arbitrage.max_notional: must be greater than 0"),
        ({"max_notional": float("inf")}, "arbitrage.max_notional: must be a finite number"),
        ({"sizes": [1000.0, -5.0]}, "arbitrage.sizes[1]: must be greater than 0"),
        ({"sizes": ["1k"]}, "arbitrage.sizes[0]: expected float, got str"),
        ({"quote_groups": [["USD"]]}, "arbitrage.quote_groups[0]: a group needs at least two quote currencies"),
        ({"quote_groups": [["USD", "usdt"]]}, "arbitrage.quote_groups[0][1]: 'usdt' is not an upper-case currency code like USDT"),
        (
            {"quote_groups": [["USD", "USDT"], ["EUR", "USDT"]]},
            "arbitrage.quote_groups[1][1]: USDT is already in arbitrage.quote_groups[0]",
        ),
        ({"conversion": "mid"}, "arbitrage.conversion: Invalid enum value 'mid'"),
        ({"conversion": "live"}, 'arbitrage.conversion_markets: needed when arbitrage.conversion = "live"'),
        (
            {**LIVE, "conversion_markets": ["kraken-USDT/USD"]},
            "arbitrage.conversion_markets[0]: 'kraken-USDT/USD' is not exchange:BASE/QUOTE",
        ),
        (
            {**LIVE, "conversion_markets": ["kraken:EUR/USD"]},
            "arbitrage.conversion_markets[0]: 'kraken:EUR/USD' does not price a quote currency in its group's first currency",
        ),
        (
            {**LIVE, "conversion_markets": ["kraken:USDT/USD", "binance:USD/USDT"]},
            "arbitrage.conversion_markets[1]: USDT is already converted by kraken:USDT/USD",
        ),
        (
            {"conversion": "live", "conversion_markets": ["kraken:USDT/USD"]},
            "arbitrage.conversion_markets: no market converts USDC to USD (arbitrage.quote_groups[0])",
        ),
        ({"thresholds": 1}, "arbitrage.thresholds: unknown key"),
    ],
)  # fmt: skip
def test_bad_arbitrage_settings_are_one_line_errors(section, message):
    error = error_of(section)
    assert error.startswith("arbd.toml: ")
    assert message in error
    assert "\n" not in error


def test_good_live_settings_parse():
    config = parse_config(
        {
            "arbitrage": {
                "conversion": "live",
                "quote_groups": [["USD", "USDT", "USDC"]],
                "conversion_markets": ["kraken:USDT/USD", "coinbase:USD/USDC"],
                "sizes": [500.0],
            }
        }
    )
    assert config.arbitrage.conversion_markets == ["kraken:USDT/USD", "coinbase:USD/USDC"]


def test_config_check_wants_live_conversion_markets_on_enabled_exchanges(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from arbd.cli.main import cli

    monkeypatch.setenv("ARBD_LOAD_PLUGINS", "simplex")
    path = tmp_path / "arbd.toml"
    path.write_text(
        "[exchanges.simplex]\nenabled = true\n"
        '[arbitrage]\nconversion = "live"\nquote_groups = [["USD", "USDT"]]\n'
        'conversion_markets = ["kraken:USDT/USD"]\n'
    )
    result = CliRunner().invoke(cli, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"{path}: arbitrage.conversion_markets[0]: 'kraken:USDT/USD': exchange 'kraken' is not "
        "configured and enabled\n"
    )
    path.write_text(path.read_text().replace("kraken:", "simplex:"))
    result = CliRunner().invoke(cli, ["config", "check", str(path)])
    assert (result.exit_code, result.stdout) == (0, f"{path}: ok\n")
