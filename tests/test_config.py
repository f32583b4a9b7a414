import pytest

from arbd.config import Config, config_to_dict, load_config, parse_config
from arbd.errors import ConfigError


def error_of(data):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "arbd.toml")
    return str(info.value)


def test_defaults_round_trip():
    assert parse_config(config_to_dict(Config())) == Config()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"server": {"prot": 1}}, "arbd.toml: server.prot: unknown key"),
        ({"sever": {}}, "arbd.toml: sever: unknown key"),
        ({"server": {"port": "80"}}, "arbd.toml: server.port: expected int, got str"),
        ({"server": {"port": 70000}}, "arbd.toml: server.port: port 70000 is outside 0-65535"),
        (
            {"exchanges": {"binance": {"book_depth": "x"}}},
            "arbd.toml: exchanges.binance.book_depth: expected int, got str",
        ),
        (
            {"exchanges": {"binance": {"symbolz": []}}},
            "arbd.toml: exchanges.binance.symbolz: unknown key",
        ),
        (
            {"exchanges": {"binance": {"symbols": ["BTCUSDT"]}}},
            "arbd.toml: exchanges.binance.symbols[0]: 'BTCUSDT' is not a BASE/QUOTE symbol like BTC/USDT",
        ),
        (
            {"exchanges": {"binance": {"channels": ["depth"]}}},
            "arbd.toml: exchanges.binance.channels[0]: unknown channel 'depth' (one of price, trades, book, candles)",
        ),
        (
            {"exchanges": {"binance": {"ws_url": "http://x"}}},
            "arbd.toml: exchanges.binance.ws_url: 'http://x' must start with ws:// or wss://",
        ),
        ({"exchanges": {"binance": 3}}, "arbd.toml: exchanges.binance: expected table, got int"),
        ({"feed": {"backoff_base": 0}}, "arbd.toml: feed.backoff_base: must be greater than 0"),
        (
            {"arbitrage": {"close_threshold_pct": 1.0}},
            "arbd.toml: arbitrage.close_threshold_pct: must not exceed arbitrage.open_threshold_pct",
        ),
        (
            {"arbitrage": {"quote_groups": [[1]]}},
            "arbd.toml: arbitrage.quote_groups[0][0]: expected str, got int",
        ),
    ],
)
def test_errors_name_file_key_path_and_problem(data, message):
    text = error_of(data)
    assert text == message
    assert "\n" not in text


def test_load_config_reports_toml_syntax_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read"):
        load_config(tmp_path / "missing.toml")


def test_exchange_sections_parse(tmp_path):
    path = tmp_path / "arbd.toml"
    path.write_text(
        '[exchanges.binance]\nsymbols = ["BTC/USDT"]\nws_url = "ws://127.0.0.1:1/ws"\n'
        "taker_fee_pct = 0.075\n"
    )
    config = load_config(path)
    assert config.exchanges["binance"].symbols == ["BTC/USDT"]
    assert config.exchanges["binance"].taker_fee_pct == 0.075
