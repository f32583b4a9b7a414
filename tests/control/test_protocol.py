"""The control channel's wire format, as plain values: parsing, replies, filters, line splitting."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.control import protocol
from arbd.control.protocol import (
    ErrorReply,
    LineBuffer,
    OpportunitiesRequest,
    ReloadRequest,
    StatusRequest,
    StopRequest,
    SubscribeRequest,
    SymbolsRequest,
    parse_request,
    subscription,
)
from arbd.model import ALL_CHANNELS

from .conftest import MARKETS


def test_every_request_parses_with_its_fields_and_defaults():
    assert parse_request(b'{"cmd":"status"}') == StatusRequest(id=None)
    assert parse_request(b'{"cmd":"status","id":"a"}') == StatusRequest(id="a")
    assert parse_request(b'{"cmd":"subscribe","id":2,"symbols":["BTC/USDT"]}') == (
        SubscribeRequest(id=2, symbols=["BTC/USDT"], exchanges=[], channels=[])
    )
    assert parse_request(b'{"cmd":"opportunities","all":true}') == OpportunitiesRequest(all=True)
    assert parse_request(b'{"cmd":"opportunities"}') == OpportunitiesRequest(all=False)
    line = b'{"cmd":"symbols","op":"remove","exchange":"kraken","symbols":["BTC/USD"],"id":9}'
    assert parse_request(line) == SymbolsRequest(
        id=9, op="remove", exchange="kraken", symbols=["BTC/USD"]
    )
    assert parse_request(b'{"cmd":"reload"}') == ReloadRequest()
    assert parse_request(b' {"cmd": "stop", "id": 1} ') == StopRequest(id=1)


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        (b"{nope", "invalid_json", "invalid JSON: "),
        (b"\xff\xfe", "invalid_json", "invalid JSON: "),
        (b"[1,2]", "invalid_request", "a request is a JSON object, got array"),
        (b'{"id":4}', "invalid_request", "missing field 'cmd'"),
        (b'{"cmd":"stauts","id":4}', "unknown_command", "unknown command 'stauts' (one of status"),
        (b'{"cmd":7,"id":4}', "invalid_request", "cmd: must be a string"),
        (b'{"cmd":"status","verbose":true,"id":4}', "invalid_request", "unknown field 'verbose'"),
        (
            b'{"cmd":"opportunities","all":"yes","id":4}',
            "invalid_request",
            "all: expected bool, got str",
        ),
        (
            b'{"cmd":"symbols","op":"add","exchange":"binance","id":4}',
            "invalid_request",
            "missing field 'symbols'",
        ),
        (
            b'{"cmd":"symbols","op":"put","exchange":"binance","symbols":["A/B"],"id":4}',
            "invalid_request",
            "op: invalid value 'put' (one of add, remove)",
        ),
        (
            b'{"cmd":"symbols","op":"add","exchange":"binance","symbols":[],"id":4}',
            "invalid_request",
            "symbols: name at least one symbol",
        ),
        (
            b'{"cmd":"symbols","op":"add","exchange":"","symbols":["A/B"],"id":4}',
            "invalid_request",
            "exchange: must not be empty",
        ),
        (
            b'{"cmd":"subscribe","symbols":"BTC/USDT","id":4}',
            "invalid_request",
            "symbols: expected array, got str",
        ),
        (
            b'{"cmd":"subscribe","symbols":["btc-usdt"],"id":4}',
            "invalid_request",
            "symbols[0]: 'btc-usdt' is not a BASE/QUOTE symbol",
        ),
        (
            b'{"cmd":"subscribe","channels":["price","trade"],"id":4}',
            "unknown_channel",
            "channels[1]: unknown channel 'trade'",
        ),
        (
            b'{"cmd":"status","id":1.5}',
            "invalid_request",
            "id: expected int | str | null, got float",
        ),
        (b"[" * 50_000, "invalid_request", "a request is a JSON object"),
        (b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "invalid_json", "nested too deeply"),
    ],
)
def test_bad_lines_become_error_replies_naming_the_problem(line, code, message):
    reply = parse_request(line)
    assert isinstance(reply, ErrorReply)
    assert reply.error.code == code
    assert message in reply.error.message
    assert "\n" not in reply.error.message
    assert reply.error.code in protocol.ERROR_CODES


def test_the_id_of_a_bad_request_is_echoed_when_it_can_be_read():
    reply = parse_request(b'{"cmd":"stauts","id":"req-7"}')
    assert isinstance(reply, ErrorReply)
    assert reply.id == "req-7"
    reply = parse_request(b'{"cmd":"symbols","id":12}')
    assert isinstance(reply, ErrorReply)
    assert reply.id == 12
    reply = parse_request(b'{"cmd":"status","id":[1]}')  # an id that cannot be echoed
    assert isinstance(reply, ErrorReply)
    assert reply.id is None


def test_replies_are_one_json_line_in_the_documented_shape():
    ok = protocol.ok(3, protocol.Reloaded(changes=["binance: +SOL/USDT"]))
    assert ok.endswith(b"\n")
    assert ok.count(b"\n") == 1
    assert json.loads(ok) == {"ok": True, "id": 3, "result": {"changes": ["binance: +SOL/USDT"]}}
    err = protocol.error("x", "config_error", "arbd.toml: exchanges.binanse:\nunknown exchange")
    assert err.count(b"\n") == 1
    assert json.loads(err) == {
        "ok": False,
        "id": "x",
        "error": {
            "code": "config_error",
            "message": "arbd.toml: exchanges.binanse: unknown exchange",
        },
    }
    assert json.loads(protocol.encode(protocol.Lag(dropped=5))) == {"type": "lag", "dropped": 5}


def test_error_code_literal_and_table_agree():
    assert set(protocol.ErrorCode.__args__) == set(protocol.ERROR_CODES)


def test_every_command_has_a_result_type():
    assert set(protocol.COMMANDS) == set(protocol.RESULT_TYPES)


# -- subscription filters ----------------------------------------------------------------------


def test_subscription_builds_the_hub_filter_and_echoes_it_sorted():
    request = SubscribeRequest(
        id=1,
        symbols=["ETH/USDT", "BTC/USDT", "BTC/USDT"],
        exchanges=["binance"],
        channels=["price"],
    )
    result = subscription(request, MARKETS)
    assert not isinstance(result, ErrorReply)
    filter, active = result
    assert filter.symbols == {"BTC/USDT", "ETH/USDT"}
    assert filter.exchanges == {"binance"}
    assert filter.channels == {"price"}
    assert active == protocol.Subscribed(
        symbols=["BTC/USDT", "ETH/USDT"], exchanges=["binance"], channels=["price"]
    )


def test_subscription_to_everything_is_an_empty_filter():
    result = subscription(SubscribeRequest(), MARKETS)
    assert not isinstance(result, ErrorReply)
    filter, _ = result
    assert not (filter.symbols or filter.exchanges or filter.channels)


def test_subscription_rejects_an_exchange_that_does_not_run():
    reply = subscription(SubscribeRequest(id=5, exchanges=["kraken", "bitstamp"]), MARKETS)
    assert isinstance(reply, ErrorReply)
    assert reply.id == 5
    assert reply.error.code == "unknown_exchange"
    assert reply.error.message == (
        "exchanges[1]: unknown exchange 'bitstamp' (running: binance, kraken)"
    )


def test_subscription_rejects_a_symbol_the_chosen_exchanges_do_not_stream():
    reply = subscription(SubscribeRequest(symbols=["ETH/USDT"], exchanges=["kraken"]), MARKETS)
    assert isinstance(reply, ErrorReply)
    assert reply.error.code == "unknown_symbol"
    assert reply.error.message == "symbols[0]: ETH/USDT is not streamed by kraken"
    # ETH/USDT is streamed by binance: without the exchange filter it is fine.
    assert not isinstance(subscription(SubscribeRequest(symbols=["ETH/USDT"]), MARKETS), ErrorReply)


def test_opportunity_symbols_of_a_quote_group_need_no_exchange_streaming_them():
    # `BTC/USDC` is nobody's market, but an arbitrage event may name the group that way.
    request = SubscribeRequest(symbols=["BTC/USDC"], channels=["arbitrage"])
    assert not isinstance(subscription(request, MARKETS), ErrorReply)
    request = SubscribeRequest(symbols=["BTC/USDC"], channels=["arbitrage", "price"])
    assert isinstance(subscription(request, MARKETS), ErrorReply)


# -- line splitting ----------------------------------------------------------------------------


def test_line_buffer_splits_lines_across_reads_and_drops_carriage_returns():
    buffer = LineBuffer()
    assert buffer.feed(b'{"cmd":"sta') == []
    assert buffer.feed(b'tus"}\r\n{"cmd"') == [b'{"cmd":"status"}']
    assert buffer.feed(b':"stop"}\n\n') == [b'{"cmd":"stop"}', b""]
    assert not buffer.too_long


def test_line_buffer_flags_a_line_that_grows_too_long_but_keeps_the_lines_before_it():
    buffer = LineBuffer(max_line=10)
    assert buffer.feed(b"short\n" + b"x" * 11 + b"\nlater\n") == [b"short"]
    assert buffer.too_long
    assert buffer.feed(b"more\n") == []
    unended = LineBuffer(max_line=10)
    assert unended.feed(b"y" * 11) == []
    assert unended.too_long


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=8), st.data())
def test_line_buffer_gives_the_same_lines_however_the_bytes_are_cut(lines, data):
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    buffer = LineBuffer()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got.extend(buffer.feed(stream[start:end]))
    assert got == [line.removesuffix(b"\r") for line in lines]


# -- fuzzing -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "cmd": st.sampled_from([*protocol.COMMANDS, "nope", ""]) | json_values,
        "id": json_values,
        "symbols": st.lists(st.sampled_from(["BTC/USDT", "btc", "", "A/B"]), max_size=3)
        | json_values,
        "exchanges": st.lists(st.sampled_from(["binance", "x"]), max_size=2) | json_values,
        "channels": st.lists(st.sampled_from([*ALL_CHANNELS, "nope"]), max_size=3) | json_values,
        "op": st.sampled_from(["add", "remove", "x"]) | json_values,
        "exchange": st.sampled_from(["binance", ""]) | json_values,
        "all": json_values,
    },
)


def _check_reply(result: object) -> None:
    if isinstance(result, ErrorReply):
        assert result.error.code in protocol.ERROR_CODES
        encoded = msgspec.json.encode(result)
        assert b"\n" not in encoded
        assert json.loads(encoded)["ok"] is False
    else:
        assert isinstance(result, protocol.Request.__args__)  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_request_or_an_error_reply(line):
    _check_reply(parse_request(line))


@settings(max_examples=300, deadline=None)
@given(request_like | json_values)
def test_any_json_gives_a_request_or_an_error_reply(value):
    line = json.dumps(value).encode()
    result = parse_request(line)
    _check_reply(result)
    if isinstance(value, dict) and isinstance(result, ErrorReply):
        # The id comes back whenever it is one a request may carry (msgspec ints are 64-bit).
        raw_id = value.get("id")
        if isinstance(raw_id, str) or (type(raw_id) is int and -(2**63) <= raw_id < 2**63):
            assert result.id == raw_id
