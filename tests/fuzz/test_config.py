"""Hostile configuration files (``arbd.testing.hostile_local.check_config``): TOML documents
built from the real schema (a full config as ``arbd config init`` writes it, with exchanges)
with values retyped or made hostile (NaN, huge, negative), keys removed or added (unknown,
empty, dotted, with newlines), sections replaced, and the text damaged. Every file loads or gives
one ``ConfigError`` line naming the file and the key path. ``corpus/config/`` keeps files that
once broke that.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from arbd.config import Config, ExchangeConfig, config_to_dict
from arbd.testing.hostile_local import check_config
from arbd.testing.mutate import config_document

from .strategies import Draws, corpus, fuzz_settings, hang_guard

BASE = config_to_dict(
    Config(
        exchanges={
            "binance": ExchangeConfig(symbols=["BTC/USDT"], taker_fee_pct=0.1),
            "kraken": ExchangeConfig(symbols=["BTC/USD"], ws_url="wss://ws.kraken.com/v2"),
        }
    )
)


@fuzz_settings(400)
@given(data=st.data())
def test_mutated_configs(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "arbd.toml"
    path.write_bytes(config_document(Draws(data), BASE))
    with hang_guard():
        event(type(check_config(path)).__name__)


@fuzz_settings(60)
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_files(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cfg") / "arbd.toml"
    path.write_bytes(content)
    with hang_guard():
        check_config(path)


@pytest.mark.parametrize("path", corpus("config"), ids=lambda p: p.name)
def test_corpus(path):
    assert check_config(path) is not None
