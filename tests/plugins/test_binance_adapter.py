"""The Binance spot adapter, pure: verbatim payloads from Binance's documentation in, events out.

Payloads marked "verbatim" are copied from the reference (exchange-protocols.md §1, which quotes
binance-spot-api-docs web-socket-streams.md and rest-api.md); combined-stream frames wrap them
exactly as Binance does: ``{"stream":"<name>","data":<payload>}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.errors import ConfigError, ProtocolError, RestError
from arbd.exchange.adapter import (
    FRAME_ERRORS,
    AdapterSettings,
    ConnectionPlan,
    HttpRequest,
    HttpResponse,
)
from arbd.model import CHANNELS, Book, Candle, Event, FeedStatus, Quote, Subscription, Trade
from arbd.plugins import load_plugins
from arbd_binance import plugin
from arbd_binance.adapter import BinanceAdapter, BinanceSession, stream_url
from arbd_binance.limits import depth_weight

# -- verbatim payloads (exchange-protocols.md §1) ----------------------------------------------

BOOK_TICKER = (
    b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",'
    b'"a":"25.36520000","A":"40.66000000"}'
)
TRADE = (
    b'{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",'
    b'"T":1672515782136,"m":true,"M":true}'
)
DEPTH_UPDATE = (
    b'{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,'
    b'"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
)
KLINE = (
    b'{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,"T":1672515839999,'
    b'"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025",'
    b'"l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500",'
    b'"B":"123456"}}'
)
PARTIAL_DEPTH = b'{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}'
DEPTH_SNAPSHOT = (
    b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
    b'"asks":[["4.00000200","12.00000000"]]}'
)
ACK = b'{"result":null,"id":1}'
ERROR_WRAPPED = b'{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":2}'
ERROR_FLAT = b'{"code":2,"msg":"Invalid request: invalid stream"}'
ERROR_FLAT_WITH_ID = b'{"code": 0, "msg": "Unknown property","id": 3}'
SHUTDOWN_RAW = b'{"e": "serverShutdown", "E": 1770123456789}'
SHUTDOWN_COMBINED = (
    b'{"stream": "!serverShutdown", "data": {"e": "serverShutdown","E": 1770123456789}}'
)


def combined(stream: str, payload: bytes) -> bytes:
    return b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}"


# A small exchangeInfo answer following the real schema (fields Binance sends that the adapter
# does not read are kept, so the decoder proves it ignores them).
def symbol_info(
    symbol: str,
    base: str,
    quote: str,
    tick: str = "0.01000000",
    step: str = "0.00001000",
    status: str = "TRADING",
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "status": status,
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01000000",
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001000",
                "maxQty": "9000.00000000",
                "stepSize": step,
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


EXCHANGE_INFO = json.dumps(
    {
        "timezone": "UTC",
        "serverTime": 1700000000000,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
        ],
        "exchangeFilters": [],
        "symbols": [
            symbol_info("BTCUSDT", "BTC", "USDT"),
            symbol_info("ETHUSDT", "ETH", "USDT", step="0.00010000"),
            symbol_info("BNBUSDT", "BNB", "USDT", tick="0.10000000", step="0.00100000"),
            symbol_info("BNBBTC", "BNB", "BTC", tick="0.00000100", step="0.00100000"),
            symbol_info("BTCUSDC", "BTC", "USDC"),
            symbol_info("1000SATSUSDT", "1000SATS", "USDT", tick="0.00000001", step="1.00000000"),
            symbol_info("LUNAUSDT", "LUNA", "USDT", status="BREAK"),
        ],
    }
).encode()

RECEIVED_NS = 1_700_000_000_500_000_000
RECEIVED_MS = RECEIVED_NS // 1_000_000


def make_adapter(
    symbols: tuple[str, ...] = ("BNB/BTC",), depth: int = 20, ws_url: str = ""
) -> BinanceAdapter:
    return BinanceAdapter(
        AdapterSettings(
            ws_url=ws_url or "wss://stream.binance.com:9443",
            rest_url="https://api.binance.com",
            symbols=symbols,
            channels=CHANNELS,
            book_depth=depth,
        )
    )


def answer(adapter: BinanceAdapter, body: bytes, status: int = 200) -> list[HttpResponse]:
    (request,) = adapter.instrument_requests()
    return [HttpResponse(request=request, status=status, body=body, received_ns=RECEIVED_NS)]


def make_session(
    symbols: tuple[str, ...] = ("BNB/BTC", "BNB/USDT"), depth: int = 20
) -> BinanceSession:
    adapter = make_adapter(symbols, depth)
    adapter.load_instruments(answer(adapter, EXCHANGE_INFO))
    (plan,) = adapter.plan_connections(adapter.subscriptions())
    return adapter.new_session(plan)


def feed(session: BinanceSession, *frames: bytes) -> list[Event]:
    out: list[Event] = []
    for frame in frames:
        session.receive(frame, True, RECEIVED_NS, out)
    return out


def sent(session: BinanceSession) -> list[dict[str, object]]:
    frames = session.take_frames()
    assert all(isinstance(f, str) for f in frames)
    return [json.loads(f) for f in frames]


def statuses(events: Sequence[Event]) -> list[tuple[str, str]]:
    return [(e.state, e.reason) for e in events if isinstance(e, FeedStatus)]


def books(events: Sequence[Event]) -> list[Book]:
    return [e for e in events if isinstance(e, Book)]


# -- adapter ----------------------------------------------------------------------------------


def test_spec() -> None:
    spec = BinanceAdapter.spec
    assert spec.id == "binance"
    assert spec.ws_url == "wss://stream.binance.com:9443"
    assert spec.rest_url == "https://api.binance.com"
    assert spec.channels == ("price", "trades", "book", "candles")
    assert spec.continuous_channels == ("price", "book")
    assert (spec.max_streams_per_connection, spec.max_outgoing_per_second) == (1024, 4.0)
    assert spec.rest_weight_per_minute == 6000
    assert spec.keepalive.protocol_ping_interval is None
    assert spec.keepalive.app_ping_interval is None
    assert spec.keepalive.idle_timeout == 60.0
    assert spec.rotate_after == 24 * 3600
    assert (spec.taker_fee_pct, spec.maker_fee_pct) == (0.1, 0.1)
    assert spec.stale_action == "resubscribe"
    assert spec.default_symbols == ("BTC/USDT", "ETH/USDT")


def test_plugin_registers_the_adapter() -> None:
    assert plugin.arbd_exchanges() == [BinanceAdapter]
    registry = load_plugins(extra=[("binance", plugin)], discover=False)
    assert registry.exchanges["binance"] is BinanceAdapter


def test_exchange_info_parsing() -> None:
    adapter = make_adapter(("BTC/USDT", "1000SATS/USDT"))
    (request,) = adapter.instrument_requests()
    assert request == HttpRequest(
        url="https://api.binance.com/api/v3/exchangeInfo", purpose="instruments", weight=20
    )
    adapter.load_instruments(answer(adapter, EXCHANGE_INFO))
    assert set(adapter.instruments) == {
        "BTC/USDT",
        "ETH/USDT",
        "BNB/USDT",
        "BNB/BTC",
        "BTC/USDC",
        "1000SATS/USDT",
    }  # LUNAUSDT is not TRADING
    btc = adapter.instruments["BTC/USDT"]
    assert (btc.native, btc.base, btc.quote, btc.tick_size, btc.lot_size) == (
        "BTCUSDT",
        "BTC",
        "USDT",
        "0.01000000",
        "0.00001000",
    )
    assert (btc.price_precision, btc.size_precision) == (2, 5)
    sats = adapter.instruments["1000SATS/USDT"]
    assert (sats.native, sats.base, sats.price_precision, sats.size_precision) == (
        "1000SATSUSDT",
        "1000SATS",
        8,
        0,
    )
    assert adapter.native("1000SATS/USDT") == "1000SATSUSDT"


def test_disabled_or_missing_filters_fall_back_to_the_precision() -> None:
    info = symbol_info("BTCUSDT", "BTC", "USDT", tick="0.00000000")
    info["filters"] = [f for f in info["filters"] if f["filterType"] != "LOT_SIZE"]
    info["baseAssetPrecision"] = 6
    adapter = make_adapter(("BTC/USDT",))
    adapter.load_instruments(answer(adapter, json.dumps({"symbols": [info]}).encode()))
    btc = adapter.instruments["BTC/USDT"]
    assert (btc.tick_size, btc.lot_size, btc.price_precision, btc.size_precision) == (
        "0.00000001",
        "0.000001",
        8,
        6,
    )


def test_unknown_configured_symbol_is_a_config_error_with_a_suggestion() -> None:
    adapter = make_adapter(("ETH/USTD",))
    with pytest.raises(ConfigError) as error:
        adapter.load_instruments(answer(adapter, EXCHANGE_INFO))
    assert "unknown symbol 'ETH/USTD' on binance" in str(error.value)
    assert "did you mean ETH/USDT" in str(error.value)
    assert error.value.key == "exchanges.binance.symbols"
    assert adapter.instruments == {}
    # A listed symbol that is not TRADING is unknown too.
    adapter = make_adapter(("LUNA/USDT",))
    with pytest.raises(ConfigError):
        adapter.load_instruments(answer(adapter, EXCHANGE_INFO))


def test_bad_exchange_info_answers() -> None:
    adapter = make_adapter()
    with pytest.raises(RestError) as error:
        adapter.load_instruments(answer(adapter, b"<html>busy</html>", status=503))
    assert error.value.status == 503
    with pytest.raises(RestError) as error:
        adapter.load_instruments(
            answer(adapter, b'{"code":-1003,"msg":"Too much request weight used."}', 400)
        )
    assert "HTTP 400 (-1003 Too much request weight used.)" in str(error.value)
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b'{"symbols":[{"symbol":1}]}'))
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b"not json"))
    with pytest.raises(RestError):
        adapter.load_instruments([])


@pytest.mark.parametrize(
    ("ws_url", "expected"),
    [
        ("wss://stream.binance.com:9443", "wss://stream.binance.com:9443/stream"),
        ("wss://stream.binance.com:443/", "wss://stream.binance.com:443/stream"),
        ("wss://data-stream.binance.vision/ws", "wss://data-stream.binance.vision/stream"),
        ("ws://127.0.0.1:8765/stream", "ws://127.0.0.1:8765/stream"),
        ("ws://127.0.0.1:8765/binance", "ws://127.0.0.1:8765/binance/stream"),
    ],
)
def test_stream_url(ws_url: str, expected: str) -> None:
    assert stream_url(ws_url) == expected


def test_plan_connections_splits_beyond_1024_streams() -> None:
    adapter = make_adapter(ws_url="ws://127.0.0.1:9/")
    subs = [Subscription(ch, f"C{i:03d}/USDT") for i in range(300) for ch in CHANNELS]
    plans = adapter.plan_connections(subs)
    assert [len(p.subscriptions) for p in plans] == [1024, 176]
    assert {p.url for p in plans} == {"ws://127.0.0.1:9/stream"}
    assert sorted(s for p in plans for s in p.subscriptions) == sorted(subs)
    assert adapter.plan_connections(subs[:1024]) == [
        ConnectionPlan(url="ws://127.0.0.1:9/stream", subscriptions=tuple(sorted(subs[:1024])))
    ]


# -- session: subscribing ---------------------------------------------------------------------


def test_start_subscribes_every_stream_in_one_frame() -> None:
    session = make_session()
    session.start(0)
    assert sent(session) == [
        {
            "method": "SUBSCRIBE",
            "params": [
                "bnbbtc@depth@100ms",
                "bnbusdt@depth@100ms",
                "bnbbtc@kline_1m",
                "bnbusdt@kline_1m",
                "bnbbtc@bookTicker",
                "bnbusdt@bookTicker",
                "bnbbtc@trade",
                "bnbusdt@trade",
            ],
            "id": 1,
        }
    ]


def test_a_full_connection_subscribes_in_a_few_packed_frames() -> None:
    adapter = make_adapter()
    subs = [Subscription(ch, f"C{i:03d}/USDT") for i in range(256) for ch in CHANNELS]
    (plan,) = adapter.plan_connections(subs)
    session = adapter.new_session(plan)
    session.start(0)
    frames = sent(session)
    assert [f["id"] for f in frames] == list(range(1, 12))
    assert all(f["method"] == "SUBSCRIBE" for f in frames)
    params: list[str] = [p for f in frames for p in f["params"]]  # type: ignore[attr-defined]
    assert max(len(f["params"]) for f in frames) == 100  # type: ignore[arg-type]
    assert len(params) == len(set(params)) == 1024
    assert "c007usdt@depth@100ms" in params
    assert all(p.split("@")[0].islower() for p in params)


def test_resubscribe_renews_the_streams() -> None:
    session = make_session()
    session.resubscribe([Subscription("price", "BNB/BTC"), Subscription("book", "BNB/BTC")], 0)
    assert sent(session) == [
        {"method": "UNSUBSCRIBE", "params": ["bnbbtc@bookTicker", "bnbbtc@depth@100ms"], "id": 1},
        {"method": "SUBSCRIBE", "params": ["bnbbtc@bookTicker", "bnbbtc@depth@100ms"], "id": 2},
    ]


def test_acks_are_understood() -> None:
    session = make_session()
    session.start(0)
    assert feed(session, ACK) == []
    assert "bnbbtc@trade" in session.acknowledged
    assert feed(session, b'{"result":["bnbbtc@trade"],"id":77}') == []  # LIST_SUBSCRIPTIONS-like
    assert (session.stats.ignored, session.stats.errors_reported, session.notices) == (0, 0, [])


def test_error_frames_in_both_forms_are_notices() -> None:
    session = make_session()
    session.start(0)
    session.resubscribe([Subscription("trades", "BNB/BTC")], 0)
    assert feed(session, ERROR_WRAPPED, ERROR_FLAT, ERROR_FLAT_WITH_ID) == []
    assert session.stats.errors_reported == 3
    assert session.notices == [
        "error 2: Invalid request: invalid stream (request 2: UNSUBSCRIBE bnbbtc@trade)",
        "error 2: Invalid request: invalid stream",
        "error 0: Unknown property (request 3: SUBSCRIBE bnbbtc@trade)",
    ]
    assert session.stats.ignored == 0
    # An unsubscribe that failed, an error naming no request, and another error: no refusal.
    assert session.refused == {}
    assert [f["id"] for f in sent(session)] == [1, 2, 3]  # start and resubscribe only


def ack(request_id: int) -> bytes:
    return b'{"result":null,"id":%d}' % request_id


def error(request_id: int, msg: str = "Invalid request: invalid stream", code: int = 2) -> bytes:
    """The observed (wrapped) error form (reference §1.2, §8.8)."""
    return json.dumps({"error": {"code": code, "msg": msg}, "id": request_id}).encode()


def test_an_invalid_stream_is_narrowed_down_and_refused() -> None:
    # Binance fails a SUBSCRIBE as a whole and does not say which stream was invalid: the
    # session asks again by symbol, then stream by stream, and refuses what still fails.
    session = make_session()
    session.start(0)
    sent(session)
    assert feed(session, error(1)) == []
    halves = sent(session)
    assert halves == [
        {
            "method": "SUBSCRIBE",
            "params": [
                "bnbbtc@depth@100ms",
                "bnbbtc@kline_1m",
                "bnbbtc@bookTicker",
                "bnbbtc@trade",
            ],
            "id": 2,
        },
        {
            "method": "SUBSCRIBE",
            "params": [
                "bnbusdt@depth@100ms",
                "bnbusdt@kline_1m",
                "bnbusdt@bookTicker",
                "bnbusdt@trade",
            ],
            "id": 3,
        },
    ]
    assert session.notices[-1].endswith("; asking again in 2 smaller requests to find it")
    assert feed(session, ack(2), error(3)) == []
    assert "bnbbtc@bookTicker" in session.acknowledged
    singles = sent(session)
    assert [(f["params"], f["id"]) for f in singles] == [
        (["bnbusdt@depth@100ms"], 4),
        (["bnbusdt@kline_1m"], 5),
        (["bnbusdt@bookTicker"], 6),
        (["bnbusdt@trade"], 7),
    ]
    assert session.refused == {}
    assert feed(session, error(4), error(5), error(6), error(7)) == []
    assert sent(session) == []  # nothing left to narrow down
    reason = "Invalid request: invalid stream"
    assert session.refused == {
        Subscription("book", "BNB/USDT"): reason,
        Subscription("candles", "BNB/USDT"): reason,
        Subscription("price", "BNB/USDT"): reason,
        Subscription("trades", "BNB/USDT"): reason,
    }
    assert session.stats.errors_reported == 6
    assert session.notices[-1] == (
        "error 2: Invalid request: invalid stream (request 7: SUBSCRIBE bnbusdt@trade)"
    )


def test_a_single_stream_of_a_symbol_can_be_refused_alone() -> None:
    session = make_session(("BNB/BTC",))
    session.start(0)
    sent(session)
    feed(session, error(1))
    assert [f["params"] for f in sent(session)] == [
        ["bnbbtc@depth@100ms"],
        ["bnbbtc@kline_1m"],
        ["bnbbtc@bookTicker"],
        ["bnbbtc@trade"],
    ]
    feed(session, ack(2), error(3), ack(4), ack(5))
    assert session.refused == {
        Subscription("candles", "BNB/BTC"): "Invalid request: invalid stream"
    }


@pytest.mark.parametrize(
    "frame",
    [
        error(1, "Invalid request: too many parameters"),
        error(1, "Invalid request: too many streams (max 1024)"),
        error(1, "Invalid JSON: expected value at line 1 column 1", code=3),
        b'{"code":2,"msg":"Invalid request: invalid stream"}',  # names no request
        error(99),  # a request the session never made (or forgot)
    ],
)
def test_other_errors_refuse_nothing(frame: bytes) -> None:
    session = make_session()
    session.start(0)
    sent(session)
    assert feed(session, frame) == []
    assert session.stats.errors_reported == 1
    assert session.refused == {}
    assert sent(session) == []


def test_a_failed_unsubscribe_refuses_nothing() -> None:
    session = make_session(("BNB/BTC",))
    session.resubscribe([Subscription("price", "BNB/BTC")], 0)
    sent(session)
    feed(session, error(1))  # the UNSUBSCRIBE of the pair
    assert session.refused == {}
    assert sent(session) == []


def test_server_shutdown_asks_for_a_reconnect() -> None:
    for frame in (SHUTDOWN_COMBINED, SHUTDOWN_RAW):
        session = make_session()
        assert session.reconnect_reason is None
        assert feed(session, frame) == []
        assert session.reconnect_reason == "server shutdown"
        assert session.has_output
        assert session.notices
        assert session.stats.ignored == 0


def test_unknown_messages_are_ignored_and_counted() -> None:
    session = make_session()
    out = feed(
        session,
        combined("bnbbtc@aggTrade", b'{"e":"aggTrade","E":1,"s":"BNBBTC","a":5,"p":"1","q":"1"}'),
        combined("bnbbtc@depth5@100ms", PARTIAL_DEPTH),
        combined("ethusdt@trade", TRADE.replace(b"BNBBTC", b"ETHUSDT")),  # not ours
        combined("!miniTicker@arr", b"[]"),
        b'{"e":"24hrTicker","E":1,"s":"BNBBTC"}',
        b'{"e":"trade","E":1,"s":"ETHUSDT","t":1,"p":"1","q":"1","T":1,"m":true}',
        PARTIAL_DEPTH,
        b'{"someday":"a new field"}',
        b"{}",
    )
    assert out == []
    assert session.stats.ignored == 9
    (quote,) = feed(session, combined("bnbusdt@bookTicker", BOOK_TICKER[:-1] + b',"x":[1]}'))
    assert isinstance(quote, Quote)


@pytest.mark.parametrize(
    "frame",
    [
        b"this is {not json",
        b"[1,2]",
        b'"text"',
        combined("bnbusdt@bookTicker", BOOK_TICKER.replace(b'"25.35190000"', b"25.3519")),
        combined("bnbbtc@trade", TRADE.replace(b'"t":12345', b'"t":"12345"')),
        combined("bnbbtc@trade", b'{"e":"trade"}'),
        combined("bnbbtc@depth@100ms", DEPTH_UPDATE.replace(b'["0.0024","10"]', b'["0.0024"]')),
        combined("bnbbtc@kline_1m", b'{"e":"kline","E":1,"s":"BNBBTC","k":{}}'),
        b'{"stream":"bnbbtc@trade"}',
        b'{"stream":"bnbbtc@trade","data":null}',
        b'{"error":"nope","id":1}',
    ],
)
def test_garbage_raises_a_frame_error(frame: bytes) -> None:
    session = make_session()
    with pytest.raises(FRAME_ERRORS):
        feed(session, frame)


# -- session: price, trades, candles ----------------------------------------------------------


def test_book_ticker_trade_and_kline_from_the_docs() -> None:
    session = make_session()
    quote, trade, candle = feed(
        session,
        combined("bnbusdt@bookTicker", BOOK_TICKER),
        combined("bnbbtc@trade", TRADE),
        combined("bnbbtc@kline_1m", KLINE),
    )
    assert quote == Quote(
        exchange="binance",
        symbol="BNB/USDT",
        bid="25.35190000",
        ask="25.36520000",
        bid_size="31.21000000",
        ask_size="40.66000000",
        timestamp=RECEIVED_MS,  # bookTicker has no event time
        exchange_time=None,
        received_ns=RECEIVED_NS,
        sequence=400900217,
    )
    assert trade == Trade(
        exchange="binance",
        symbol="BNB/BTC",
        price="0.001",
        size="100",
        side="sell",  # m: the buyer is the maker, so the taker sold
        id="12345",
        timestamp=1672515782136,
        exchange_time=1672515782136,
        received_ns=RECEIVED_NS,
        sequence=12345,
    )
    assert candle == Candle(
        exchange="binance",
        symbol="BNB/BTC",
        interval="1m",
        start=1672515780000,
        open="0.0010",
        high="0.0025",
        low="0.0015",
        close="0.0020",
        volume="1000",
        closed=False,
        timestamp=1672515782136,
        exchange_time=1672515782136,
        received_ns=RECEIVED_NS,
    )


def test_taker_buy_and_closed_kline() -> None:
    session = make_session()
    trade, candle = feed(
        session,
        combined("bnbbtc@trade", TRADE.replace(b'"m":true', b'"m":false')),
        combined("bnbbtc@kline_1m", KLINE.replace(b'"x":false', b'"x":true')),
    )
    assert isinstance(trade, Trade)
    assert trade.side == "buy"
    assert isinstance(candle, Candle)
    assert candle.closed


def test_raw_stream_payloads_are_understood_too() -> None:
    session = make_session()
    out = feed(session, BOOK_TICKER, TRADE, KLINE, DEPTH_UPDATE)
    assert [type(e) for e in out] == [Quote, Trade, Candle]  # the depth event is buffered
    assert len(session.take_http_requests()) == 1


# -- session: the order book ------------------------------------------------------------------


def depth(first: int, last: int, bids: str = "[]", asks: str = "[]", event_time: int = 1) -> bytes:
    return combined(
        "bnbbtc@depth@100ms",
        (
            f'{{"e":"depthUpdate","E":{event_time},"s":"BNBBTC","U":{first},"u":{last},'
            f'"b":{bids},"a":{asks}}}'
        ).encode(),
    )


def snapshot(
    session: BinanceSession,
    body: bytes,
    status: int = 200,
    request: HttpRequest | None = None,
) -> list[Event]:
    if request is None:
        (request,) = session.take_http_requests()
    out: list[Event] = []
    session.on_http(
        HttpResponse(request=request, status=status, body=body, received_ns=RECEIVED_NS + 1),
        out,
    )
    return out


def snap(last_update_id: int, bids: str, asks: str) -> bytes:
    return f'{{"lastUpdateId":{last_update_id},"bids":{bids},"asks":{asks}}}'.encode()


SNAP_158 = snap(158, '[["0.0024","5"],["0.0023","7"]]', '[["0.0026","50"],["0.0027","60"]]')


def synced(session: BinanceSession) -> None:
    """Bring BNB/BTC's book to update id 160 with the verbatim diff event."""
    assert feed(session, combined("bnbbtc@depth@100ms", DEPTH_UPDATE)) == []
    out = snapshot(session, SNAP_158)
    assert [type(e) for e in out] == [Book]


def test_snapshot_request_follows_the_first_buffered_event() -> None:
    session = make_session()
    session.start(0)
    session.take_frames()
    assert session.take_http_requests() == []  # nothing to buffer yet: no snapshot
    assert feed(session, combined("bnbbtc@depth@100ms", DEPTH_UPDATE)) == []
    assert session.take_http_requests() == [
        HttpRequest(
            url="https://api.binance.com/api/v3/depth?symbol=BNBBTC&limit=1000",
            purpose="depth:BNBBTC",
            weight=50,
        )
    ]
    assert feed(session, depth(161, 162), depth(163, 165)) == []  # buffered, no second request
    assert session.take_http_requests() == []


def test_snapshot_limit_grows_with_the_published_depth() -> None:
    session = make_session(depth=500)
    feed(session, depth(1, 2))
    (request,) = session.take_http_requests()
    assert request.url.endswith("/api/v3/depth?symbol=BNBBTC&limit=5000")
    assert request.weight == 250


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)],
)
def test_depth_weight_follows_the_documented_table(limit: int, weight: int) -> None:
    assert depth_weight(limit) == weight


def test_a_book_waits_while_its_snapshot_is_queued_or_in_flight() -> None:
    session = make_session()
    session.start(0)
    book, price = Subscription("book", "BNB/BTC"), Subscription("price", "BNB/BTC")
    assert not session.waiting(book)  # no data yet: nothing asked for
    feed(session, depth(1, 2))
    (request,) = session.take_http_requests()
    assert session.waiting(book)  # buffered, snapshot asked for
    assert not session.waiting(price)  # quotes are never held back
    assert not session.waiting(Subscription("book", "BNB/USDT"))
    snapshot(session, snap(1, '[["0.0024","5"]]', '[["0.0026","50"]]'), request=request)
    assert not session.waiting(book)  # valid and published
    # A failed request ends the wait, so the watchdog's resubscribe recovers the book.
    feed(session, depth(5, 6))  # a gap: the book restarts and asks for a new snapshot
    (request,) = session.take_http_requests()
    assert session.waiting(book)
    session.on_http_failed(request, "GET failed: ConnectTimeout", [])
    assert not session.waiting(book)


def test_the_documented_procedure_with_buffered_events() -> None:
    session = make_session()
    # Buffered before the snapshot: one stale (u <= lastUpdateId), one straddling, one chained.
    assert (
        feed(
            session,
            depth(1027020, 1027022, bids='[["3.9","1"]]', event_time=10),
            depth(1027023, 1027026, bids='[["4.00000000","0"],["3.99","2"]]', event_time=11),
            depth(1027027, 1027030, asks='[["4.00000300","1.5"]]', event_time=12),
        )
        == []
    )
    (book,) = snapshot(session, DEPTH_SNAPSHOT)
    assert book == Book(
        exchange="binance",
        symbol="BNB/BTC",
        bids=[("3.99", "2")],  # 4.00000000 removed by the straddling event; 3.9 was stale
        asks=[("4.00000200", "12.00000000"), ("4.00000300", "1.5")],
        depth=20,
        timestamp=12,
        exchange_time=12,
        received_ns=RECEIVED_NS + 1,
        sequence=1027030,
    )
    # Live events chain on: U == previous u + 1.
    (live,) = feed(session, depth(1027031, 1027031, bids='[["3.99","0.5"]]', event_time=13))
    assert isinstance(live, Book)
    assert (live.bids, live.sequence, live.exchange_time) == ([("3.99", "0.5")], 1027031, 13)
    assert session.stats.sequence_gaps == session.stats.book_resyncs == 0


def test_snapshot_newer_than_every_buffered_event() -> None:
    session = make_session()
    feed(session, depth(150, 155))
    (book,) = snapshot(session, SNAP_158)
    assert isinstance(book, Book)
    assert (book.sequence, book.exchange_time, book.timestamp) == (158, None, RECEIVED_MS)
    assert book.bids == [("0.0024", "5"), ("0.0023", "7")]
    # The first live event must straddle 159: the verbatim U=157..u=160 does.
    (live,) = feed(session, combined("bnbbtc@depth@100ms", DEPTH_UPDATE))
    assert isinstance(live, Book)
    assert (live.sequence, live.exchange_time) == (160, 1672515782136)
    assert live.bids == [("0.0024", "10"), ("0.0023", "7")]
    assert live.asks == [("0.0026", "100"), ("0.0027", "60")]


def test_stale_events_are_discarded() -> None:
    session = make_session()
    synced(session)
    assert feed(session, depth(150, 155), depth(157, 160)) == []
    assert session.stats.sequence_gaps == 0
    (book,) = feed(session, depth(161, 161))
    assert isinstance(book, Book)
    assert book.sequence == 161


@pytest.mark.parametrize("bids", ['[["0.0024"]]', '[["0.0024","x"]]', '{"0.0024":"1"}'])
def test_a_malformed_update_of_a_live_book_is_a_frame_error_and_resyncs(bids: str) -> None:
    """The sides are read in place when applied, so a malformed one is found mid-apply: the
    frame is an error (counted and skipped by the driver), nothing half-applied is published,
    and the next update resyncs the emptied book."""
    session = make_session()
    synced(session)
    with pytest.raises(FRAME_ERRORS):
        feed(session, depth(161, 161, bids=bids))
    out = feed(session, depth(162, 162, bids='[["0.0024","1"]]'))
    assert books(out) == []
    assert statuses(out)[0] == ("invalid", "sequence gap: expected 1, got 162")
    assert len(session.take_http_requests()) == 1


def test_first_event_after_the_snapshot_must_straddle() -> None:
    session = make_session()
    feed(session, depth(150, 155))
    snapshot(session, SNAP_158)
    out = feed(session, depth(160, 162))  # 159 is missing
    assert statuses(out) == [
        ("invalid", "sequence gap: expected 159, got 160"),
        ("resyncing", "sequence gap: expected 159, got 160"),
    ]
    assert session.stats.sequence_gaps == 1
    assert len(session.take_http_requests()) == 1


def test_snapshot_older_than_the_stream_is_fetched_again() -> None:
    session = make_session()
    feed(session, combined("bnbbtc@depth@100ms", DEPTH_UPDATE))  # U=157
    assert snapshot(session, snap(150, '[["0.0024","5"]]', '[["0.0026","1"]]')) == []
    (again,) = session.take_http_requests()  # Binance: "go back to step 3"
    assert again.purpose == "depth:BNBBTC"
    assert feed(session, depth(161, 163)) == []
    out = snapshot(session, SNAP_158, request=again)
    assert [type(e) for e in out] == [Book]  # a routine retry is not announced
    assert books(out)[0].sequence == 163


def test_snapshots_that_never_line_up_stop_until_resubscribe() -> None:
    session = make_session()
    feed(session, depth(1000, 1001))
    out: list[Event] = []
    for _ in range(5):
        out += snapshot(session, snap(10, "[]", "[]"))
    reason = "snapshot 10 is older than the buffered update 1000 (5 snapshots in a row)"
    assert statuses(out) == [("invalid", reason)]
    assert session.notices == [f"BNBBTC book: {reason}; waiting for a resubscribe"]
    assert session.take_http_requests() == []
    assert feed(session, depth(1002, 1003)) == []
    assert session.take_http_requests() == []  # no request storm
    session.resubscribe([Subscription("book", "BNB/BTC")], 0)
    assert feed(session, depth(1004, 1005)) == []
    (request,) = session.take_http_requests()
    out = snapshot(session, snap(1001, "[]", '[["1","1"]]'), request=request)
    assert statuses(out) == [("valid", "snapshot applied")]
    assert books(out)[0].sequence == 1005


def test_a_gap_invalidates_once_and_resyncs() -> None:
    session = make_session()
    synced(session)
    out = feed(session, depth(163, 165))
    assert statuses(out) == [
        ("invalid", "sequence gap: expected 161, got 163"),
        ("resyncing", "sequence gap: expected 161, got 163"),
    ]
    assert all(isinstance(e, FeedStatus) and e.scope == "book" for e in out)
    assert (session.stats.sequence_gaps, session.stats.book_resyncs) == (1, 1)
    (request,) = session.take_http_requests()  # the gapped event starts the new buffer
    assert request.purpose == "depth:BNBBTC"
    # Further events are buffered silently: no second "invalid", no second request.
    assert feed(session, depth(166, 170), depth(180, 181)) == []
    assert session.take_http_requests() == []
    out = snapshot(session, snap(168, '[["0.0020","1"]]', '[["0.0030","1"]]'), request=request)
    # 166..170 straddles 169, but 180 does not chain on 170: a gap inside the buffer.
    assert statuses(out) == []  # still announced invalid: nothing new to say
    assert session.stats.sequence_gaps == 2
    (request,) = session.take_http_requests()
    out = snapshot(session, snap(180, '[["0.0020","1"]]', '[["0.0030","1"]]'), request=request)
    assert statuses(out) == [("valid", "snapshot applied")]
    (book,) = books(out)
    assert book.sequence == 181


def test_a_crossed_book_is_never_published() -> None:
    session = make_session()
    synced(session)
    out = feed(session, depth(161, 161, bids='[["0.0026","1"]]'))  # locked: bid == ask
    assert statuses(out) == [("invalid", "crossed book"), ("resyncing", "crossed book")]
    assert books(out) == []
    assert session.stats.crossed_books == 1
    assert session.take_http_requests() == []  # the next event starts the buffer
    assert feed(session, depth(162, 162)) == []
    (request,) = session.take_http_requests()
    crossed = snap(161, '[["0.0030","1"]]', '[["0.0026","1"]]')
    out = snapshot(session, crossed, request=request)
    assert statuses(out) == []  # still invalid
    assert books(out) == []
    assert session.stats.crossed_books == 2
    feed(session, depth(163, 163))
    (request,) = session.take_http_requests()
    out = snapshot(session, SNAP_158.replace(b"158", b"162"), request=request)
    assert statuses(out) == [("valid", "snapshot applied")]
    assert books(out)[0].sequence == 163


def test_failed_snapshot_waits_for_a_resubscribe() -> None:
    session = make_session()
    feed(session, depth(1, 2))
    out = snapshot(session, b'{"code":-1003,"msg":"Too many requests."}', status=429)
    assert statuses(out) == [("invalid", "depth snapshot HTTP 429 (-1003 Too many requests.)")]
    assert session.stats.errors_reported == 1
    assert session.notices == [
        "BNBBTC book: depth snapshot HTTP 429 (-1003 Too many requests.); waiting for a resubscribe"
    ]
    assert feed(session, depth(3, 4)) == []
    assert session.take_http_requests() == []
    session.resubscribe([Subscription("book", "BNB/BTC")], 0)
    feed(session, depth(5, 6))
    (request,) = session.take_http_requests()
    failed: list[Event] = []
    session.on_http_failed(request, "GET failed: ConnectTimeout", failed)
    assert statuses(failed) == []  # already announced
    assert session.notices[-1].startswith("BNBBTC book: depth snapshot failed: GET")
    assert feed(session, depth(7, 8)) == []
    assert session.take_http_requests() == []


def test_unparseable_snapshot_raises_and_the_book_waits() -> None:
    session = make_session()
    feed(session, depth(1, 2))
    (request,) = session.take_http_requests()
    with pytest.raises(FRAME_ERRORS):
        snapshot(session, b'{"lastUpdateId":"x"}', request=request)
    feed(session, depth(3, 4))
    assert session.take_http_requests() == []


def test_answers_nobody_asked_for_are_ignored() -> None:
    session = make_session()
    request = session.books.snapshot_request("BNBBTC")
    assert snapshot(session, SNAP_158, request=request) == []
    other = HttpRequest(url="https://api.binance.com/x", purpose="other")
    assert snapshot(session, b"junk", request=other) == []


def test_levels_beyond_the_snapshot_are_never_published() -> None:
    session = make_session(depth=3)
    feed(session, depth(1, 1))
    (request,) = session.take_http_requests()
    assert request.url.endswith("limit=1000")
    bids = json.dumps([[f"{1000 - i}.00", "1"] for i in range(1000)])  # cut at 1000 levels
    (book,) = snapshot(session, snap(1, bids, '[["1001.00","1"]]'), request=request)
    assert isinstance(book, Book)
    assert book.bids == [("1000.00", "1"), ("999.00", "1"), ("998.00", "1")]
    # Remove all but the last three snapshot levels, add one beyond the snapshot's range.
    removed = json.dumps([[f"{1000 - i}.00", "0"] for i in range(997)] + [["0.50", "9"]])
    (book,) = feed(session, depth(2, 2, bids=removed))
    assert isinstance(book, Book)
    assert book.bids == [("3.00", "1"), ("2.00", "1"), ("1.00", "1")]
    # One more gone: fewer levels known than the published depth -> resync.
    out = feed(session, depth(3, 3, bids='[["3.00","0"]]'))
    assert statuses(out) == [
        ("invalid", "book moved beyond the 1000-level snapshot"),
        ("resyncing", "book moved beyond the 1000-level snapshot"),
    ]


def test_replay_session_takes_every_listed_symbol() -> None:
    adapter = make_adapter()
    adapter.load_instruments(answer(adapter, EXCHANGE_INFO))
    session = adapter.new_session(ConnectionPlan(url="wss://x/stream", subscriptions=()))
    session.start(0)
    assert session.take_frames() == []
    out = feed(
        session,
        combined("bnbusdt@bookTicker", BOOK_TICKER),
        combined("ethusdt@trade", TRADE.replace(b"BNBBTC", b"ETHUSDT")),
        combined("xyzusdt@trade", TRADE.replace(b"BNBBTC", b"XYZUSDT")),  # not listed
        combined("bnbbtc@depth", DEPTH_UPDATE),
    )
    assert [(type(e).__name__, e.symbol) for e in out] == [
        ("Quote", "BNB/USDT"),
        ("Trade", "ETH/USDT"),
    ]
    assert session.stats.ignored == 1
    assert len(session.take_http_requests()) == 1


@settings(max_examples=40, deadline=None)
@given(
    updates=st.lists(
        st.lists(
            st.tuples(st.booleans(), st.integers(1, 40), st.sampled_from(["0", "1", "2.5"])),
            max_size=6,
        ),
        min_size=1,
        max_size=30,
    ),
    depth=st.integers(1, 8),
)
def test_published_book_matches_a_reference_book(
    updates: list[list[tuple[bool, int, str]]], depth: int
) -> None:
    """Property: after any chained updates, the published book is the reference book's top."""
    session = make_session(depth=depth)
    # Bids at prices 1..40 below asks at 101..140 never cross.
    reference: dict[bool, dict[str, str]] = {
        True: {f"{p}.0": "1" for p in range(1, 41)},
        False: {f"{100 + p}.0": "1" for p in range(1, 41)},
    }
    feed(session, depth_event(1, 1, []))
    body = snap(
        1,
        json.dumps(sorted(reference[True].items(), key=lambda kv: -float(kv[0]))),
        json.dumps(sorted(reference[False].items(), key=lambda kv: float(kv[0]))),
    )
    out = snapshot(session, body)
    for index, changes in enumerate(updates, start=2):
        levels = [(is_bid, f"{p if is_bid else 100 + p}.0", size) for is_bid, p, size in changes]
        for is_bid, price, size in levels:
            if size == "0":
                reference[is_bid].pop(price, None)
            else:
                reference[is_bid][price] = size
        out += feed(session, depth_event(index, index, levels))
    assert statuses(out) == []
    last = books(out)[-1]
    bids = sorted(reference[True].items(), key=lambda kv: -float(kv[0]))[:depth]
    asks = sorted(reference[False].items(), key=lambda kv: float(kv[0]))[:depth]
    assert (last.bids, last.asks, last.sequence) == (bids, asks, len(updates) + 1)


def depth_event(first: int, last: int, levels: list[tuple[bool, str, str]]) -> bytes:
    bids = json.dumps([[p, s] for is_bid, p, s in levels if is_bid])
    asks = json.dumps([[p, s] for is_bid, p, s in levels if not is_bid])
    return depth(first, last, bids=bids, asks=asks)


# -- the one-pass decode of a known stream gives what the general path gives -------------------


@pytest.mark.parametrize(
    ("stream", "payload"),
    [
        ("bnbusdt@bookTicker", BOOK_TICKER),
        ("bnbbtc@trade", TRADE),
        ("bnbbtc@kline_1m", KLINE),
    ],
)
def test_a_known_stream_decodes_the_same_on_the_one_pass_path(stream: str, payload: bytes) -> None:
    session = make_session()
    frame = combined(stream, payload)
    # The first frame of a stream resolves its name on the general path; later ones are decoded
    # whole by the stream's own decoder. A reordered frame always takes the general path.
    reordered = b'{"data":' + payload + b',"stream":"' + stream.encode() + b'"}'
    first, second, third = (feed(session, f) for f in (frame, frame, reordered))
    assert first == second == third
    assert len(first) == 1
    assert session.stats.ignored == 0


def test_a_known_stream_with_a_payload_of_the_wrong_shape_is_a_frame_error() -> None:
    session = make_session()
    feed(session, combined("bnbbtc@trade", TRADE))
    with pytest.raises(FRAME_ERRORS):
        feed(session, combined("bnbbtc@trade", b'{"e":"trade","p":1}'))
