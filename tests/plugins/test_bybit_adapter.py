"""The Bybit v5 spot adapter, pure: payloads from the protocol reference (§4) in, events out."""

from __future__ import annotations

import json

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
from arbd_bybit import plugin
from arbd_bybit.adapter import BybitAdapter, book_topic_depth
from arbd_bybit.session import BybitSession

# -- verbatim from the reference (exchange-protocols.md §4), one line each -----------------------

SUBSCRIBED = (
    b'{ "success": true, "ret_msg": "subscribe", "conn_id": '
    b'"2324d924-aa4d-45b0-a858-7b8be29ab52b", "req_id": "10001", "op": "subscribe" }'
)
SUBSCRIBE_FAILED = (
    b'{"success":false,"ret_msg":"error:handler not found,topic:dcp.future","conn_id":"...",'
    b'"req_id":"dcp.future","op":"subscribe"}'
)
PONG = (
    b'{ "success": true, "ret_msg": "pong", "conn_id": "0970e817-426e-429a-a679-ff7f55e0b16a",'
    b' "op": "ping" }'
)
OPTION_PONG = b'{"args":["1672916271846"],"op":"pong"}'
DELTA = (
    b'{ "topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1687940967466,'
    b'  "data": { "s": "BTCUSDT", "b": [ [ "30247.20", "30.028" ], [ "30240.00", "0" ] ],'
    b'            "a": [ [ "30248.70", "0" ], [ "30249.30", "0.892" ] ], "u": 177400507,'
    b' "seq": 66544703342 },'
    b'  "cts": 1687940967464 }'
)
TRADE = (
    b'{ "topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868,'
    b'  "data": [ { "T": 1672304486865, "s": "BTCUSDT", "S": "Buy", "v": "0.001",'
    b' "p": "16578.50", "L": "PlusTick",'
    b'              "i": "20f43950-d8dd-5b31-9112-a178eb6023af", "BT": false,'
    b' "seq": 1783284617 } ] }'
)
TICKER = (
    b'{ "topic": "tickers.BTCUSDT", "ts": 1673853746003, "type": "snapshot", "cs": 2588407389,'
    b'  "data": { "symbol": "BTCUSDT", "lastPrice": "21109.77", "highPrice24h": "21426.99",'
    b' "lowPrice24h": "20575",'
    b'            "prevPrice24h": "20704.93", "volume24h": "6780.866843",'
    b' "turnover24h": "141946527.22907118",'
    b'            "price24hPcnt": "0.0196", "usdIndexPrice": "21120.2400136" } }'
)
KLINE_5 = (
    b'{ "topic": "kline.5.BTCUSDT", "data": [ { "start": 1672324800000, "end": 1672325099999,'
    b' "interval": "5",'
    b'  "open": "16649.5", "close": "16677", "high": "16677", "low": "16608", "volume": "2.081",'
    b' "turnover": "34666.4005",'
    b'  "confirm": false, "timestamp": 1672324988882 } ], "ts": 1672324988882,'
    b' "type": "snapshot" }'
)
# The same kline as the one-minute topic arbd subscribes.
KLINE_1 = KLINE_5.replace(b"kline.5.", b"kline.1.").replace(b'"interval": "5"', b'"interval": "1"')

# A snapshot in the reference's shape ("Snapshots have the same shape with type snapshot") that
# the verbatim DELTA above chains onto (u 177400506 -> 177400507).
SNAPSHOT = (
    b'{"topic":"orderbook.50.BTCUSDT","ts":1687940967400,"type":"snapshot","data":{"s":"BTCUSDT",'
    b'"b":[["30247.20","1.000"],["30240.00","2.500"]],"a":[["30248.70","0.400"],'
    b'["30250.00","1.000"]],"u":177400506,"seq":66544703300},"cts":1687940967398}'
)
# orderbook.1 (spot BBO; snapshot-only, same shape).
TOP = (
    b'{"topic":"orderbook.1.BTCUSDT","ts":1687940967500,"type":"snapshot","data":{"s":"BTCUSDT",'
    b'"b":[["30247.20","30.028"]],"a":[["30249.30","0.892"]],"u":5012345,"seq":66544703350},'
    b'"cts":1687940967498}'
)

# Official spot example of GET /v5/market/instruments-info (bybit-exchange/docs
# docs/v5/market/instrument.mdx), plus an ETH pair and a pair that is not trading.
BTC_INSTRUMENT = (
    b'{"symbolId":9,"symbol":"BTCUSDT","baseCoin":"BTC","quoteCoin":"USDT","innovation":"0",'
    b'"status":"Trading","marginTrading":"utaOnly","stTag":"0","lotSizeFilter":{'
    b'"basePrecision":"0.000001","quotePrecision":"0.0000001","minOrderQty":"0.000011",'
    b'"maxOrderQty":"83","minOrderAmt":"5","maxOrderAmt":"8000000","maxLimitOrderQty":"83",'
    b'"maxMarketOrderQty":"41.5","postOnlyMaxLimitOrderSize":"60000"},'
    b'"priceFilter":{"tickSize":"0.1"},"riskParameters":{"priceLimitRatioX":"0.005",'
    b'"priceLimitRatioY":"0.01"},"symbolType":""}'
)
ETH_INSTRUMENT = BTC_INSTRUMENT.replace(
    b'"BTCUSDT","baseCoin":"BTC"', b'"ETHUSDT","baseCoin":"ETH"'
)
OLD_INSTRUMENT = BTC_INSTRUMENT.replace(
    b'"BTCUSDT","baseCoin":"BTC"', b'"OLDUSDT","baseCoin":"OLD"'
).replace(b'"Trading"', b'"Closed"')
INSTRUMENTS = (
    b'{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":['
    + b",".join([BTC_INSTRUMENT, ETH_INSTRUMENT, OLD_INSTRUMENT])
    + b']},"retExtInfo":{},"time":1760027412300}'
)
RECEIVED_NS = 1_700_000_000_500_000_000


def make_adapter(
    symbols: tuple[str, ...] = ("BTC/USDT",),
    depth: int = 20,
    channels: tuple[str, ...] = CHANNELS,
) -> BybitAdapter:
    return BybitAdapter(
        AdapterSettings(
            ws_url="wss://stream.bybit.com/v5/public/spot",
            rest_url="http://127.0.0.1:1/",
            symbols=symbols,
            channels=channels,
            book_depth=depth,
        )
    )


def answer(adapter: BybitAdapter, body: bytes, status: int = 200) -> list[HttpResponse]:
    (request,) = adapter.instrument_requests()
    return [HttpResponse(request=request, status=status, body=body, received_ns=RECEIVED_NS)]


def make_session(symbols: tuple[str, ...] = ("BTC/USDT",), depth: int = 20) -> BybitSession:
    adapter = make_adapter(symbols, depth)
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    (plan,) = adapter.plan_connections(adapter.subscriptions())
    return adapter.new_session(plan)


def feed(session: BybitSession, *frames: bytes) -> list[Event]:
    out: list[Event] = []
    for frame in frames:
        session.receive(frame, True, RECEIVED_NS, out)
    return out


def sent(session: BybitSession) -> list[dict[str, object]]:
    frames = session.take_frames()
    assert all(isinstance(f, str) for f in frames)
    return [json.loads(f) for f in frames]


def statuses(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.state, e.reason) for e in events if isinstance(e, FeedStatus)]


def delta(u: int, bids: str = "[]", asks: str = "[]", topic: str = "orderbook.50.BTCUSDT") -> bytes:
    return (
        f'{{"topic":"{topic}","ts":1687940968000,"type":"delta","data":{{"s":"BTCUSDT",'
        f'"b":{bids},"a":{asks},"u":{u},"seq":{66544704000 + u}}},"cts":1687940967999}}'
    ).encode()


# -- adapter ------------------------------------------------------------------------------------


def test_spec_follows_the_reference() -> None:
    spec = BybitAdapter.spec
    assert spec.id == "bybit"
    assert spec.ws_url == "wss://stream.bybit.com/v5/public/spot"
    assert spec.rest_url == "https://api.bybit.com"
    assert spec.keepalive.app_ping_interval == 20.0
    assert spec.keepalive.protocol_ping_interval is None
    assert (spec.taker_fee_pct, spec.maker_fee_pct) == (0.1, 0.1)
    assert spec.default_symbols == ("BTC/USDT", "ETH/USDT")
    assert spec.continuous_channels == ("price", "book")
    assert set(spec.channels) == set(CHANNELS)


def test_plugin_registers_the_adapter() -> None:
    assert plugin.arbd_exchanges() == [BybitAdapter]


@pytest.mark.parametrize(
    ("wanted", "topic_depth"),
    [(1, 50), (20, 50), (50, 50), (51, 200), (200, 200), (201, 1000), (5000, 1000)],
)
def test_book_topic_is_the_smallest_depth_covering_the_setting(
    wanted: int, topic_depth: int
) -> None:
    assert book_topic_depth(wanted) == topic_depth
    adapter = make_adapter(depth=wanted)
    assert adapter.topic(Subscription("book", "BTC/USDT")) == f"orderbook.{topic_depth}.BTCUSDT"
    assert adapter.topic(Subscription("price", "BTC/USDT")) == "orderbook.1.BTCUSDT"
    assert adapter.book_depth == min(wanted, topic_depth)


def test_load_instruments_parses_the_official_example() -> None:
    adapter = make_adapter(("BTC/USDT", "ETH/USDT"))
    (request,) = adapter.instrument_requests()
    assert request == HttpRequest(
        url="http://127.0.0.1:1/v5/market/instruments-info?category=spot", purpose="instruments"
    )
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    assert sorted(adapter.instruments) == ["BTC/USDT", "ETH/USDT"]  # OLDUSDT is not trading
    btc = adapter.instruments["BTC/USDT"]
    assert (btc.native, btc.base, btc.quote, btc.tick_size, btc.lot_size) == (
        "BTCUSDT",
        "BTC",
        "USDT",
        "0.1",
        "0.000001",
    )
    assert (btc.price_precision, btc.size_precision) == (1, 6)
    assert adapter.native("ETH/USDT") == "ETHUSDT"


def test_unknown_configured_symbol_is_a_config_error_with_a_suggestion() -> None:
    adapter = make_adapter(("BTC/USDC",))
    with pytest.raises(ConfigError) as error:
        adapter.load_instruments(answer(adapter, INSTRUMENTS))
    assert "'BTC/USDC' on bybit" in str(error.value)
    assert "did you mean BTC/USDT" in str(error.value)
    assert adapter.instruments == {}
    adapter = make_adapter(("OLD/USDT",))  # listed, but not trading
    with pytest.raises(ConfigError):
        adapter.load_instruments(answer(adapter, INSTRUMENTS))


def test_bad_instrument_answers() -> None:
    adapter = make_adapter()
    with pytest.raises(RestError) as error:
        adapter.load_instruments(answer(adapter, b"{}", status=503))
    assert error.value.status == 503
    with pytest.raises(RestError, match="retCode 10001 params error"):
        adapter.load_instruments(
            answer(adapter, b'{"retCode":10001,"retMsg":"params error","result":{}}')
        )
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b'{"retCode":0,"result":{"list":[{"x":1}]}}'))
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b"<html>"))
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b'{"retCode":0}'))
    with pytest.raises(RestError):
        adapter.load_instruments([])


def test_plan_respects_the_stream_limit_and_the_args_budget() -> None:
    adapter = make_adapter()
    subs = [Subscription("trades", f"C{i:03}/USDT") for i in range(450)]
    plans = adapter.plan_connections(subs)
    assert [len(p.subscriptions) for p in plans] == [200, 200, 50]
    assert all(p.url == "wss://stream.bybit.com/v5/public/spot" for p in plans)
    # Absurdly long names: the 21,000-character args budget splits first.
    long = [Subscription("trades", f"{'X' * 200}{i:03}/USDT") for i in range(150)]
    plans = adapter.plan_connections(long)
    assert len(plans) > 1
    for plan in plans:
        assert sum(len(adapter.topic(s)) + 3 for s in plan.subscriptions) <= 21_000
    assert sum(len(p.subscriptions) for p in plans) == 150


# -- session: control frames ----------------------------------------------------------------------


def test_start_subscribes_at_most_ten_topics_per_request() -> None:
    session = make_session(("BTC/USDT", "ETH/USDT"))
    session.start(0)
    frames = sent(session)
    assert frames == [
        {
            "op": "subscribe",
            "args": [
                "orderbook.50.BTCUSDT",
                "orderbook.50.ETHUSDT",
                "kline.1.BTCUSDT",
                "kline.1.ETHUSDT",
                "orderbook.1.BTCUSDT",
                "orderbook.1.ETHUSDT",
                "publicTrade.BTCUSDT",
                "publicTrade.ETHUSDT",
            ],
            "req_id": "1",
        }
    ]
    adapter = make_adapter(())
    subs = [Subscription("trades", f"C{i:02}/USDT") for i in range(23)]
    (plan,) = adapter.plan_connections(subs)
    session = adapter.new_session(plan)
    session.start(0)
    frames = sent(session)
    assert [len(f["args"]) for f in frames] == [10, 10, 3]  # type: ignore[arg-type]
    assert [f["req_id"] for f in frames] == ["1", "2", "3"]


def test_acks_and_pongs_are_understood() -> None:
    session = make_session()
    session.start(0)
    sent(session)
    assert feed(session, SUBSCRIBED, PONG, OPTION_PONG) == []
    assert (session.pongs, session.last_pong_ns) == (2, RECEIVED_NS)
    assert session.acknowledged == set()  # "10001" is not one of ours
    assert feed(session, SUBSCRIBED.replace(b'"10001"', b'"1"')) == []
    assert "orderbook.50.BTCUSDT" in session.acknowledged
    session.resubscribe([Subscription("trades", "BTC/USDT")], 0)
    unsub, _ = sent(session)
    ack = b'{"success":true,"ret_msg":"","conn_id":"c","req_id":"%s","op":"unsubscribe"}'
    feed(session, ack % str(unsub["req_id"]).encode())
    assert "publicTrade.BTCUSDT" not in session.acknowledged
    assert session.stats.ignored == 0
    assert session.stats.errors_reported == 0
    assert session.notices == []


def test_failed_subscribe_is_a_notice() -> None:
    session = make_session()
    session.start(0)
    assert feed(session, SUBSCRIBE_FAILED) == []
    assert session.stats.errors_reported == 1
    assert session.notices == ["subscribe failed: error:handler not found,topic:dcp.future"]
    session.notices.clear()
    feed(session, SUBSCRIBE_FAILED.replace(b'"dcp.future","op"', b'"1","op"'))
    (notice,) = session.notices
    assert notice.startswith("subscribe failed: error:handler not found")
    assert "(request 1: subscribe orderbook.50.BTCUSDT," in notice
    assert session.stats.errors_reported == 2
    assert session.refused == {}  # dcp.future is no topic of this session


def test_a_refused_subscribe_is_asked_again_without_the_topics_it_names() -> None:
    # Bybit refuses a request as a whole: the topics it did not name are requested again.
    session = make_session(("BTC/USDT", "ETH/USDT"))
    session.start(0)
    (first,) = sent(session)
    refused = (
        b'{"success":false,"ret_msg":"Invalid symbol :[kline.1.ETHUSDT]","conn_id":"c",'
        b'"req_id":"1","op":"subscribe"}'
    )
    feed(session, refused)
    (retry,) = sent(session)
    assert retry["op"] == "subscribe"
    assert retry["args"] == [t for t in first["args"] if "ETHUSDT" not in t]  # type: ignore[union-attr]
    already = (
        b'{"success":false,"ret_msg":"error:already subscribed,topic:publicTrade.BTCUSDT",'
        b'"conn_id":"c","req_id":"2","op":"subscribe"}'
    )
    feed(session, already)
    (again,) = sent(session)
    assert "publicTrade.BTCUSDT" in session.acknowledged
    assert again["args"] == [t for t in retry["args"] if t != "publicTrade.BTCUSDT"]  # type: ignore[union-attr]
    feed(session, SUBSCRIBE_FAILED.replace(b'"dcp.future","op"', b'"3","op"'))
    assert sent(session) == []  # a topic not in the request: nothing to narrow down
    assert session.stats.errors_reported == 3
    # The symbol was refused (every channel of it, as none was asked again); "already
    # subscribed" and a topic outside the request refuse nothing.
    reason = "Invalid symbol :[kline.1.ETHUSDT]"
    assert session.refused == {Subscription(c, "ETH/USDT"): reason for c in CHANNELS}


def test_a_topic_bybit_has_no_handler_for_is_refused_alone() -> None:
    session = make_session(("BTC/USDT", "ETH/USDT"))
    session.start(0)
    sent(session)
    failed = (
        b'{"success":false,"ret_msg":"error:handler not found,topic:orderbook.50.ETHUSDT",'
        b'"conn_id":"c","req_id":"1","op":"subscribe"}'
    )
    feed(session, failed)
    (retry,) = sent(session)
    assert "orderbook.1.ETHUSDT" in retry["args"]  # type: ignore[operator]
    assert "orderbook.50.ETHUSDT" not in retry["args"]  # type: ignore[operator]
    assert session.refused == {
        Subscription("book", "ETH/USDT"): "error:handler not found,topic:orderbook.50.ETHUSDT"
    }


@pytest.mark.parametrize(
    ("op", "ret_msg"),
    [
        ("subscribe", "error:already subscribed,topic:orderbook.50.ETHUSDT"),
        ("subscribe", "args size >10"),
        ("subscribe", "Failed to decode incoming data"),
        ("unsubscribe", "error:handler not found,topic:orderbook.50.ETHUSDT"),
    ],
)
def test_other_failures_refuse_nothing(op: str, ret_msg: str) -> None:
    session = make_session(("BTC/USDT", "ETH/USDT"))
    session.resubscribe([Subscription("book", "ETH/USDT")], 0)
    assert [f["op"] for f in sent(session)] == ["unsubscribe", "subscribe"]  # req_id 1, 2
    req_id = "1" if op == "unsubscribe" else "2"
    frame = {"success": False, "ret_msg": ret_msg, "conn_id": "c", "req_id": req_id, "op": op}
    feed(session, json.dumps(frame).encode())
    assert session.stats.errors_reported == 1
    assert session.refused == {}


def test_keepalive_queues_the_json_ping() -> None:
    session = make_session()
    session.keepalive(1_700_000_000_000_000_000)
    assert session.take_frames() == ['{"op":"ping"}']


def test_unknown_topics_ops_and_fields_are_ignored_not_errors() -> None:
    session = make_session()
    out = feed(
        session,
        TICKER,  # not subscribed (and the spot ticker has no BBO)
        KLINE_5,  # arbd takes one-minute candles only
        delta(1, topic="orderbook.50.ETHUSDT"),  # not ours
        b'{"op":"auth","success":true,"ret_msg":""}',
        b'{"type":"welcome"}',
        b"{}",
    )
    assert out == []
    assert session.stats.ignored == 6
    assert session.stats.errors_reported == 0
    (quote,) = feed(session, TOP.replace(b'"cts"', b'"new":{"x":[1]},"cts"'))
    assert isinstance(quote, Quote)


@pytest.mark.parametrize(
    "frame",
    [
        b"this is {not json",
        b"[1,2]",
        b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","data":{"b":[],"a":[]}}',  # no u
        b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","data":{"u":1,"b":[["1"]],"a":[]}}',
        b'{"topic":"orderbook.1.BTCUSDT","type":"snapshot","data":{"u":1,"b":[[1,2]],"a":[]}}',
        b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":{"T":1}}',
        b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","data":[{"T":1,"p":"1","v":"1"}]}',
        b'{"topic":"kline.1.BTCUSDT","type":"snapshot","data":[{"start":1,"open":"1"}]}',
        b'{"topic":"kline.1.BTCUSDT","type":"snapshot"}',  # no data at all
        b'{"topic":5}',
    ],
)
def test_garbage_raises_for_the_driver_to_count(frame: bytes) -> None:
    session = make_session()
    with pytest.raises(FRAME_ERRORS):
        feed(session, frame)


# -- session: data ---------------------------------------------------------------------------------


def test_top_of_book_is_the_quote() -> None:
    (quote,) = feed(make_session(), TOP)
    assert quote == Quote(
        exchange="bybit",
        symbol="BTC/USDT",
        bid="30247.20",
        ask="30249.30",
        bid_size="30.028",
        ask_size="0.892",
        timestamp=1687940967500,
        exchange_time=1687940967500,
        received_ns=RECEIVED_NS,
        sequence=5012345,
    )


def test_odd_tops_of_book_are_not_quoted() -> None:
    session = make_session()
    one_sided = TOP.replace(b'"a":[["30249.30","0.892"]]', b'"a":[]')
    locked = TOP.replace(b'"30249.30"', b'"30247.20"')
    assert feed(session, one_sided, locked) == []
    assert session.stats.ignored == 1
    assert session.stats.crossed_books == 1
    no_ts = TOP.replace(b'"ts":1687940967500,', b"")
    (quote,) = feed(session, no_ts)
    assert isinstance(quote, Quote)
    assert (quote.timestamp, quote.exchange_time) == (RECEIVED_NS // 1_000_000, None)


def test_public_trade_from_the_reference() -> None:
    (trade,) = feed(make_session(), TRADE)
    assert trade == Trade(
        exchange="bybit",
        symbol="BTC/USDT",
        price="16578.50",
        size="0.001",
        side="buy",
        id="20f43950-d8dd-5b31-9112-a178eb6023af",
        timestamp=1672304486865,
        exchange_time=1672304486865,
        received_ns=RECEIVED_NS,
        sequence=None,  # not numeric
    )
    numeric = TRADE.replace(b'"20f43950-d8dd-5b31-9112-a178eb6023af"', b'"2290000000061666327"')
    two = numeric.replace(
        b"} ] }", b'}, {"T":1672304486866,"S":"Sell","v":"2","p":"1.0","i":"7"} ] }'
    )
    first, second = feed(make_session(), two)
    assert isinstance(first, Trade) and isinstance(second, Trade)
    assert (first.id, first.sequence) == ("2290000000061666327", 2290000000061666327)
    assert (second.side, second.price, second.size, second.sequence) == ("sell", "1.0", "2", 7)


def test_one_minute_kline_is_a_candle() -> None:
    session = make_session()
    (candle,) = feed(session, KLINE_1)
    assert candle == Candle(
        exchange="bybit",
        symbol="BTC/USDT",
        interval="1m",
        start=1672324800000,
        open="16649.5",
        high="16677",
        low="16608",
        close="16677",
        volume="2.081",
        closed=False,
        timestamp=1672324988882,
        exchange_time=1672324988882,
        received_ns=RECEIVED_NS,
    )
    (closed,) = feed(session, KLINE_1.replace(b'"confirm": false', b'"confirm": true'))
    assert isinstance(closed, Candle) and closed.closed


def test_snapshot_then_the_reference_delta() -> None:
    session = make_session()
    snapshot, after = feed(session, SNAPSHOT, DELTA)
    assert snapshot == Book(
        exchange="bybit",
        symbol="BTC/USDT",
        bids=[("30247.20", "1.000"), ("30240.00", "2.500")],
        asks=[("30248.70", "0.400"), ("30250.00", "1.000")],
        depth=20,
        timestamp=1687940967400,
        exchange_time=1687940967400,
        received_ns=RECEIVED_NS,
        sequence=177400506,
    )
    assert isinstance(after, Book)
    assert (after.bids, after.asks, after.sequence, after.timestamp) == (
        [("30247.20", "30.028")],
        [("30249.30", "0.892"), ("30250.00", "1.000")],
        177400507,
        1687940967466,
    )
    assert session.stats.sequence_gaps == 0


def test_deltas_before_the_snapshot_are_dropped() -> None:
    session = make_session()
    assert feed(session, DELTA) == []
    assert session.stats.sequence_gaps == 0
    assert session.take_frames() == []


def test_u_gap_invalidates_once_resyncs_and_recovers() -> None:
    session = make_session()
    feed(session, SNAPSHOT)
    out = feed(session, delta(177400509))
    reason = "sequence gap: delta u 177400509 after u 177400506"
    assert statuses(out) == [("invalid", reason), ("resyncing", reason)]
    assert all(isinstance(e, FeedStatus) and e.scope == "book" for e in out)
    assert session.stats.sequence_gaps == 1
    assert session.stats.book_resyncs == 1
    assert sent(session) == [
        {"op": "unsubscribe", "args": ["orderbook.50.BTCUSDT"], "req_id": "1"},
        {"op": "subscribe", "args": ["orderbook.50.BTCUSDT"], "req_id": "2"},
    ]
    # Deltas still in flight are dropped silently: nothing published, no second "invalid".
    assert feed(session, delta(177400510), delta(177400512)) == []
    assert session.stats.sequence_gaps == 1
    out = feed(session, SNAPSHOT.replace(b'"u":177400506', b'"u":177400600'))
    assert statuses(out) == [("valid", "snapshot received")]
    assert isinstance(out[1], Book) and out[1].sequence == 177400600
    (book,) = feed(session, delta(177400601))
    assert isinstance(book, Book)


def test_repeated_or_old_u_is_a_gap_too() -> None:
    session = make_session()
    feed(session, SNAPSHOT, DELTA)
    out = feed(session, DELTA)  # u 177400507 again
    assert [s for s, _ in statuses(out)] == ["invalid", "resyncing"]
    assert session.stats.sequence_gaps == 1


def test_a_new_snapshot_resets_the_book() -> None:
    session = make_session()
    feed(session, SNAPSHOT, DELTA)
    fresh = (
        b'{"topic":"orderbook.50.BTCUSDT","ts":1687940969000,"type":"snapshot","data":{'
        b'"s":"BTCUSDT","b":[["30100.00","1"]],"a":[["30101.00","2"]],"u":177500000,'
        b'"seq":66544800000}}'
    )
    (book,) = feed(session, fresh)
    assert isinstance(book, Book)
    assert (book.bids, book.asks, book.sequence) == (
        [("30100.00", "1")],
        [("30101.00", "2")],
        177500000,
    )
    (book,) = feed(session, delta(177500001, bids='[["30100.50","3"]]'))
    assert isinstance(book, Book) and book.bids[0] == ("30100.50", "3")
    assert not statuses([book])


def test_u_equal_one_overwrites_the_book() -> None:
    """A service restart: "you'll receive u=1, which is a snapshot ... overwrite" (§4.3)."""
    session = make_session()
    feed(session, SNAPSHOT, DELTA)
    (book,) = feed(session, delta(1, bids='[["30000.00","5"]]', asks='[["30001.00","6"]]'))
    assert isinstance(book, Book)
    assert (book.bids, book.asks, book.sequence) == ([("30000.00", "5")], [("30001.00", "6")], 1)
    (book,) = feed(session, delta(2, asks='[["30001.00","0"]]'))
    assert isinstance(book, Book) and book.asks == []
    assert session.stats.sequence_gaps == 0


def test_crossed_book_is_never_published() -> None:
    session = make_session()
    feed(session, SNAPSHOT)
    out = feed(session, delta(177400507, bids='[["30248.70","1"]]'))  # locked with the best ask
    assert statuses(out) == [("invalid", "crossed book"), ("resyncing", "crossed book")]
    assert not any(isinstance(e, Book) for e in out)
    assert session.stats.crossed_books == 1
    assert [f["op"] for f in sent(session)] == ["unsubscribe", "subscribe"]
    crossed = SNAPSHOT.replace(b'["30240.00","2.500"]', b'["30260.00","2.500"]')
    out = feed(session, crossed)
    assert statuses(out) == [
        ("invalid", "crossed book in snapshot"),
        ("resyncing", "crossed book in snapshot"),
    ]
    assert not any(isinstance(e, Book) for e in out)
    assert session.stats.crossed_books == 2
    out = feed(session, SNAPSHOT)
    assert statuses(out) == [("valid", "snapshot received")]


def test_published_books_hold_the_configured_depth_best_first() -> None:
    session = make_session(depth=2)
    bids = [[f"{100 - i}.00", "1"] for i in range(5)]
    asks = [[f"{101 + i}.00", "1"] for i in range(5)]
    frame = json.dumps(
        {
            "topic": "orderbook.50.BTCUSDT",
            "ts": 1,
            "type": "snapshot",
            "data": {"s": "BTCUSDT", "b": bids[::-1], "a": asks[::-1], "u": 9, "seq": 1},
        }
    ).encode()
    (book,) = feed(session, frame)
    assert isinstance(book, Book)
    assert (book.bids, book.asks, book.depth) == (
        [("100.00", "1"), ("99.00", "1")],
        [("101.00", "1"), ("102.00", "1")],
        2,
    )


def test_resubscribe_queues_frames_and_waits_for_a_snapshot() -> None:
    session = make_session()
    feed(session, SNAPSHOT)
    session.resubscribe([Subscription("book", "BTC/USDT"), Subscription("price", "BTC/USDT")], 0)
    assert sent(session) == [
        {
            "op": "unsubscribe",
            "args": ["orderbook.50.BTCUSDT", "orderbook.1.BTCUSDT"],
            "req_id": "1",
        },
        {"op": "subscribe", "args": ["orderbook.50.BTCUSDT", "orderbook.1.BTCUSDT"], "req_id": "2"},
    ]
    # The dropped book is announced as resyncing (it is not served until the snapshot).
    assert statuses(session.take_events()) == [("resyncing", "resubscribing after stale data")]
    assert feed(session, DELTA) == []  # the book waits for its snapshot
    out = feed(session, SNAPSHOT)
    assert [type(e) for e in out] == [FeedStatus, Book]
    assert statuses(out) == [("valid", "snapshot received")]


def test_replay_session_takes_every_listed_symbol() -> None:
    adapter = make_adapter()
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    session = adapter.new_session(ConnectionPlan(url="ws://x/ws", subscriptions=()))
    session.start(0)
    assert session.take_frames() == []
    deep = SNAPSHOT.replace(b"orderbook.50.", b"orderbook.200.")
    out = feed(
        session,
        TOP,
        deep,
        delta(177400507, topic="orderbook.200.BTCUSDT"),
        TRADE.replace(b"BTCUSDT", b"ETHUSDT"),
        KLINE_1,
        KLINE_5,  # not a one-minute candle
        TOP.replace(b"BTCUSDT", b"XYZUSDT"),  # not listed
        TICKER,
        b'{"topic":"orderbook.full.BTCUSDT","type":"delta","data":{"u":1}}',
    )
    assert [type(e) for e in out] == [Quote, Book, Book, Trade, Candle]
    assert out[3].symbol == "ETH/USDT"
    assert session.stats.ignored == 4


def test_a_wanted_book_at_another_depth_is_taken() -> None:
    """A capture recorded with book_depth 200 replays with the configured depth 20."""
    session = make_session()
    deep = SNAPSHOT.replace(b"orderbook.50.", b"orderbook.200.")
    out = feed(session, deep, deep.replace(b"BTCUSDT", b"ETHUSDT"))
    assert [type(e) for e in out] == [Book]
    assert session.stats.ignored == 1


def test_replay_without_instruments_maps_nothing() -> None:
    session = make_adapter().new_session(ConnectionPlan(url="ws://x/ws", subscriptions=()))
    assert feed(session, TOP, TRADE) == []
    assert session.stats.ignored == 2


# -- property ----------------------------------------------------------------------------------------

_price = st.integers(1, 40)


@settings(max_examples=50, deadline=None)
@given(
    updates=st.lists(st.tuples(st.booleans(), _price, st.integers(0, 3)), min_size=1, max_size=60),
    depth=st.integers(1, 10),
)
def test_chained_deltas_track_a_model_book(
    updates: list[tuple[bool, int, int]], depth: int
) -> None:
    """Property: chained deltas give the model book's top levels, never a crossed one."""
    session = make_session(depth=depth)
    # Bids below 50, asks above 50: never crossed.
    bids = {f"{p}.0": "1" for p in range(1, 11)}
    asks = {f"{100 - p}.0": "1" for p in range(1, 11)}
    snap = {
        "topic": "orderbook.50.BTCUSDT",
        "ts": 1,
        "type": "snapshot",
        "data": {"b": list(map(list, bids.items())), "a": list(map(list, asks.items())), "u": 10},
    }
    out = feed(session, json.dumps(snap).encode())
    u = 10
    for is_bid, p, size in updates:
        u += 1
        price = f"{p}.0" if is_bid else f"{100 - p}.0"
        side = bids if is_bid else asks
        if size:
            side[price] = str(size)
        else:
            side.pop(price, None)
        level = json.dumps([[price, str(size)]])
        frame = delta(u, bids=level) if is_bid else delta(u, asks=level)
        out += feed(session, frame)
    assert not statuses(out)
    last = out[-1]
    assert isinstance(last, Book) and last.sequence == u
    best_bids = sorted(bids.items(), key=lambda kv: -float(kv[0]))[:depth]
    best_asks = sorted(asks.items(), key=lambda kv: float(kv[0]))[:depth]
    assert last.bids == best_bids
    assert last.asks == best_asks


# -- compact pushes of known topics take the one-pass decode; the result is the same -----------


def compact(frame: bytes) -> bytes:
    return json.dumps(json.loads(frame), separators=(",", ":")).encode()


def spaced(frame: bytes) -> bytes:
    return json.dumps(json.loads(frame)).encode()


@pytest.mark.parametrize(
    "frames",
    [
        [TRADE],
        [KLINE_1],
        [TOP],
        [SNAPSHOT, DELTA],
        [SNAPSHOT, DELTA, DELTA],  # a gap on the second delta: invalid, resubscribe
        [TICKER],  # a topic the session does not take: ignored on both paths
    ],
)
def test_compact_pushes_give_the_same_events_as_spaced_ones(frames: list[bytes]) -> None:
    tight, loose = make_session(), make_session()
    assert compact(frames[-1]).startswith(b'{"topic":"')
    assert feed(tight, *map(compact, frames)) == feed(loose, *map(spaced, frames))
    assert tight.stats == loose.stats
    assert tight.take_frames() == loose.take_frames()


def test_a_compact_push_of_the_wrong_shape_is_still_a_frame_error() -> None:
    with pytest.raises(FRAME_ERRORS):
        feed(make_session(), b'{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{"b":1}}')
