"""Protocol v1 as plain values: parsing, validation, replies, the per-client session."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from arbd.config import ServerConfig
from arbd.hub import Filter
from arbd.server.frames import text_frame
from arbd.server.protocol import (
    BadMessage,
    ClientSession,
    Ping,
    ServerMessage,
    Subscribe,
    parse_message,
)

from .conftest import MARKETS

CONFIG = ServerConfig(max_subscriptions=50, max_messages_per_s=1000.0)


def session(config: ServerConfig = CONFIG, markets=MARKETS) -> ClientSession:
    return ClientSession(config, lambda: markets, now=0.0)


def replies(outcome) -> list[dict]:
    return [json.loads(r) for r in outcome.replies]


def error_of(data: str | bytes) -> BadMessage:
    with pytest.raises(BadMessage) as info:
        parse_message(data.encode() if isinstance(data, str) else data)
    return info.value


# -- parsing ---------------------------------------------------------------------------------


def test_messages_price_stream_clients_send_parse():
    message = parse_message(
        b'{"action":"subscribe","symbols":["BTC/USDT"],"exchanges":["binance"],'
        b'"channels":["price"],"id":7}'
    )
    assert message == Subscribe(
        symbols=["BTC/USDT"], exchanges=["binance"], channels=["price"], id=7
    )
    assert parse_message(b'{"action":"subscribe"}') == Subscribe()
    assert parse_message(b'{"action":"ping"}') == Ping()


@pytest.mark.parametrize(
    ("data", "code", "message", "id"),
    [
        ("{bad", "invalid_json", "not valid JSON: object keys must be strings (byte 1)", None),
        ("[1, 2]", "invalid_message", "expected a JSON object, got array", None),
        (
            '{"id": 3}',
            "invalid_message",
            "action: missing (one of subscribe, unsubscribe, ping)",
            3,
        ),
        (
            '{"action": "jump", "id": "a"}',
            "unknown_action",
            "action: unknown action 'jump' (one of subscribe, unsubscribe, ping)",
            "a",
        ),
        (
            '{"action": "subscribe", "symbols": "BTC/USDT", "id": 4}',
            "invalid_message",
            "symbols: expected array, got str",
            4,
        ),
        (
            '{"action": "subscribe", "symbols": ["BTC/USDT", 5]}',
            "invalid_message",
            "symbols[1]: expected str, got int",
            None,
        ),
        (
            '{"action": "subscribe", "symbol": ["BTC/USDT"]}',
            "invalid_message",
            "symbol: unknown field",
            None,
        ),
        (
            '{"action": "ping", "id": true}',
            "invalid_message",
            "id: expected int | str | null, got bool",
            None,
        ),
        (
            '{"action": "ping", "id": [1]}',
            "invalid_message",
            "id: expected int | str | null, got array",
            None,
        ),
    ],
)
def test_bad_messages_name_the_field_and_keep_a_usable_id(data, code, message, id):
    error = error_of(data)
    assert (error.code, error.message, error.id) == (code, message, id)


def test_an_overlong_id_is_an_error_and_not_echoed():
    error = error_of(json.dumps({"action": "ping", "id": "x" * 300}))
    assert error.code == "invalid_message"
    assert error.message.startswith("id: expected str of length <= 256")
    assert error.id is None


# -- the session -----------------------------------------------------------------------------


def test_hello_lists_markets():
    hello = json.loads(session().hello(123))
    assert hello == {
        "type": "hello",
        "protocol": 1,
        "server": hello["server"],
        "serverTime": 123,
        "exchanges": ["binance", "kraken"],
        "symbols": ["BTC/USDT", "ETH/USDT", "XRP/USD"],
        "channels": ["price", "trades", "book", "candles", "arbitrage", "status"],
        "markets": MARKETS,
    }
    assert hello["server"].startswith("arbd ")


def test_subscribe_reply_change_and_snapshot_filter():
    s = session()
    outcome = s.receive(
        b'{"action":"subscribe","symbols":["btc/usdt"],"exchanges":["Binance"],"id":1}', 0.0, 9
    )
    [reply] = replies(outcome)
    assert reply == {
        "type": "subscribed",
        "id": 1,
        "symbols": ["BTC/USDT"],
        "exchanges": ["binance"],
        "channels": [],
        "subscriptions": [{"channel": "*", "exchange": "binance", "symbol": "BTC/USDT"}],
    }
    assert outcome.change is not None
    expected = Filter(exchanges=frozenset({"binance"}), symbols=frozenset({"BTC/USDT"}))
    assert outcome.change.filter == expected
    assert outcome.change.snapshot == expected
    assert outcome.close is None


def test_unsubscribe_everything_clears_the_filter_and_sends_no_snapshot():
    s = session()
    s.receive(b'{"action":"subscribe","channels":["trades"]}', 0.0, 0)
    outcome = s.receive(b'{"action":"unsubscribe"}', 0.0, 0)
    assert replies(outcome)[0]["subscriptions"] == []
    assert outcome.change is not None
    assert outcome.change.filter is None
    assert outcome.change.snapshot is None


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            {"channels": ["price", "trade"]},
            "unknown_channel",
            "channels[1]: unknown channel 'trade' "
            "(one of price, trades, book, candles, arbitrage, status)",
        ),
        (
            {"exchanges": ["ftx"]},
            "unknown_exchange",
            "exchanges[0]: unknown exchange 'ftx' (streaming: binance, kraken)",
        ),
        (
            {"symbols": ["ETH/USDT"], "exchanges": ["kraken"]},
            "unknown_symbol",
            "symbols[0]: ETH/USDT is not streamed by kraken; did you mean BTC/USDT?",
        ),
        (
            {"symbols": ["PEPE/EUR"]},
            "unknown_symbol",
            "symbols[0]: PEPE/EUR is not streamed by any exchange",
        ),
    ],
)
def test_unknown_names_are_errors_and_change_nothing(request_, code, message):
    s = session()
    outcome = s.receive(json.dumps({"action": "subscribe", "id": 8, **request_}).encode(), 0.0, 0)
    [reply] = replies(outcome)
    assert reply == {"type": "error", "code": code, "message": message, "id": 8}
    assert outcome.change is None
    assert len(s.subscriptions) == 0


def test_markets_are_asked_on_every_subscribe():
    markets = {"binance": ["BTC/USDT"]}
    s = ClientSession(CONFIG, lambda: markets, now=0.0)
    request = b'{"action":"subscribe","symbols":["SOL/USDT"]}'
    assert replies(s.receive(request, 0.0, 0))[0]["code"] == "unknown_symbol"
    markets["binance"].append("SOL/USDT")  # added at runtime
    assert replies(s.receive(request, 0.0, 0))[0]["type"] == "subscribed"


def test_the_subscription_limit_is_checked_before_building_a_huge_product():
    s = session(ServerConfig(max_subscriptions=4))
    symbols = [f"S{i}/USDT" for i in range(5000)]
    markets = {"binance": symbols}
    s = ClientSession(ServerConfig(max_subscriptions=4), lambda: markets, now=0.0)
    outcome = s.receive(
        json.dumps(
            {"action": "subscribe", "symbols": symbols, "channels": ["price", "book"]}
        ).encode(),
        0.0,
        0,
    )
    assert replies(outcome)[0]["message"] == (
        "this would make 10000 subscriptions; the limit is 4 per client"
    )


def test_rate_limit_refuses_then_closes_an_abusive_client():
    s = session(ServerConfig(max_messages_per_s=2.0))
    kinds = [replies(s.receive(b'{"action":"ping","id":1}', 0.0, 0)) for _ in range(2)]
    assert [k[0]["type"] for k in kinds] == ["pong", "pong"]
    refused = s.receive(b'{"action":"ping","id":1}', 0.0, 0)
    assert replies(refused) == [
        {
            "type": "error",
            "code": "rate_limited",
            "message": "more than 2 messages per second; this one was ignored",
            "id": 1,
        }
    ]
    # A second later there is room again.
    assert replies(s.receive(b'{"action":"ping"}', 1.0, 0))[0]["type"] == "pong"
    outcomes = [s.receive(b'{"action":"ping"}', 1.0, 0) for _ in range(20)]
    assert outcomes[-1].close == (1008, "too many messages")
    assert all(o.close is None for o in outcomes[:10])


# -- frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frames_are_what_websockets_would_send(size):
    payload = b"x" * size
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


# -- fuzz ------------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_names = st.sampled_from(["BTC/USDT", "ETH/USDT", "binance", "kraken", "price", "*", "", "x"])
_messages = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"action": st.sampled_from(["subscribe", "unsubscribe", "ping", "pong", 1, None])},
        optional={
            "symbols": st.lists(_names, max_size=4) | _json_values,
            "exchanges": st.lists(_names, max_size=3),
            "channels": st.lists(_names, max_size=3),
            "id": _json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
)
_server_message = msgspec.json.Decoder(ServerMessage)


@settings(max_examples=500, deadline=None)
@given(messages=st.lists(_messages, min_size=1, max_size=8))
def test_any_message_gets_exactly_one_well_formed_reply(messages):
    s = session()
    for data in messages:
        outcome = s.receive(data, 0.0, 0)
        assert outcome.close is None
        [reply] = outcome.replies
        decoded = _server_message.decode(reply)  # a valid server message of the protocol
        if outcome.change is None:
            assert decoded.__struct_config__.tag in ("pong", "error")
        assert len(s.subscriptions) <= CONFIG.max_subscriptions
