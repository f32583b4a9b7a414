"""The OKX v5 adapter, pure: payloads from exchange-protocols.md §5 in, events and frames out."""

from __future__ import annotations

import json
import random

import msgspec
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
from arbd_okx import plugin
from arbd_okx.adapter import OkxAdapter, business_url
from arbd_okx.checksum import checksum_text, okx_checksum, signed_crc32
from arbd_okx.session import OkxSession

# -- verbatim payloads (exchange-protocols.md §5.2/§5.3) -----------------------------------------

SUBSCRIBE_ACK = (
    b'{ "id": "1512", "event": "subscribe", "arg": { "channel": "tickers", "instId": "BTC-USDT" },'
    b' "connId": "accb8e21" }'
)
UNSUBSCRIBE_ACK = (
    b'{ "event": "unsubscribe", "arg": { "channel": "tickers", "instId": "BTC-USDT" },'
    b' "connId": "d0b44253" }'
)
ERROR = (
    b'{ "id": "1512", "event": "error", "code": "60012", "msg": "Invalid request: {\\"op\\": '
    b'\\"subscribe\\", \\"argss\\":[{ \\"channel\\" : \\"books\\", \\"instId\\" : '
    b'\\"BTC-USD-191227\\"}]}", "connId": "a4d3ae55" }'
)
NOTICE = (
    b'{ "event": "notice", "code": "64008", "msg": "The connection will soon be closed for a '
    b'service upgrade. Please reconnect.", "connId": "a4d3ae55" }'
)
TICKERS = (
    b'{ "arg": { "channel": "tickers", "instId": "BTC-USDT" },'
    b'  "data": [ { "instType": "SPOT", "instId": "BTC-USDT", "last": "9999.99", "lastSz": "0.1",'
    b' "askPx": "9999.99", "askSz": "11", "bidPx": "8888.88", "bidSz": "5", "open24h": "9000",'
    b' "high24h": "10000", "low24h": "8888.88", "volCcy24h": "2222", "vol24h": "2222",'
    b' "sodUtc0": "2222", "sodUtc8": "2222", "ts": "1597026383085" } ] }'
)
# The documented bbo-tbt example is for BCH-USDT-SWAP; only the instId is changed to our spot pair.
BBO_TBT = (
    b'{ "arg": { "channel": "bbo-tbt", "instId": "BTC-USDT" },'
    b'  "data": [ { "asks": [ [ "111.06","55154","0","2" ] ], "bids": [ [ "111.05","57745","0","2" ]'
    b' ], "ts": "1670324386802", "seqId": 363996337 } ] }'
)
TRADES = (
    b'{ "arg": { "channel": "trades", "instId": "BTC-USDT" },'
    b'  "data": [ { "instId": "BTC-USDT", "tradeId": "130639474", "px": "42219.9",'
    b' "sz": "0.12060306", "side": "buy",'
    b'              "ts": "1630048897897", "count": "3", "source": "0", "seqId": 1234 } ] }'
)
CANDLE_1D = (
    b'{ "arg": { "channel": "candle1D", "instId": "BTC-USDT" },'
    b'  "data": [ [ "1597026383085", "8533.02", "8553.74", "8527.17", "8548.26", "45247",'
    b' "529.5858061", "5529.5858061", "0" ] ] }'
)
CANDLE_1M = CANDLE_1D.replace(b"candle1D", b"candle1m")
BOOK_SNAPSHOT = (
    b'{ "arg": { "channel": "books", "instId": "BTC-USDT" }, "action": "snapshot",'
    b'  "data": [ { "asks": [ ["8476.98", "415", "0", "13"], ["8477", "7", "0", "2"] ],'
    b'              "bids": [ ["8476.97", "256", "0", "12"], ["8475.55", "101", "0", "1"] ],'
    b'              "ts": "1597026383085", "checksum": -855196043, "prevSeqId": -1,'
    b' "seqId": 123456 } ] }'
)
# Production since 2026-06-23: the checksum field is present and always 0.
BOOK_SNAPSHOT_0 = BOOK_SNAPSHOT.replace(b"-855196043", b"0")
BOOKS_ACK = b'{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a1"}'
BOOKS_UNACK = b'{"event":"unsubscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a1"}'

INSTRUMENTS = json.dumps(
    {
        "code": "0",
        "msg": "",
        "data": [
            {
                "instType": "SPOT",
                "instId": "BTC-USDT",
                "uly": "",
                "baseCcy": "BTC",
                "quoteCcy": "USDT",
                "listTime": "1606468572000",
                "tickSz": "0.1",
                "lotSz": "0.00000001",
                "minSz": "0.00001",
                "state": "live",
            },
            {
                "instType": "SPOT",
                "instId": "ETH-USDT",
                "baseCcy": "ETH",
                "quoteCcy": "USDT",
                "tickSz": "0.01",
                "lotSz": "0.000001",
                "minSz": "0.001",
                "state": "live",
            },
            {
                "instType": "SPOT",
                "instId": "LUNA-USDT",
                "baseCcy": "LUNA",
                "quoteCcy": "USDT",
                "tickSz": "0.0001",
                "lotSz": "0.01",
                "state": "suspend",
            },
        ],
    }
).encode()
RECEIVED_NS = 1_700_000_000_500_000_000
REST = "http://127.0.0.1:1"
BOOK_URL = f"{REST}/api/v5/market/books?instId=BTC-USDT&sz=400"


def make_adapter(
    symbols: tuple[str, ...] = ("BTC/USDT",),
    channels: tuple[str, ...] = CHANNELS,
    depth: int = 20,
    ws_url: str = "ws://127.0.0.1:1/ws/v5/public",
) -> OkxAdapter:
    return OkxAdapter(
        AdapterSettings(
            ws_url=ws_url,
            rest_url=REST + "/",
            symbols=symbols,
            channels=channels,
            book_depth=depth,
        )
    )


def answer(adapter: OkxAdapter, body: bytes, status: int = 200) -> list[HttpResponse]:
    (request,) = adapter.instrument_requests()
    return [HttpResponse(request=request, status=status, body=body, received_ns=RECEIVED_NS)]


def make_session(
    channels: tuple[str, ...] = ("price", "trades", "book"), depth: int = 20, acked: bool = True
) -> OkxSession:
    """A public-endpoint session for BTC/USDT; ``acked``: the books subscribe ack was received."""
    adapter = make_adapter(channels=channels, depth=depth)
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    (plan,) = adapter.plan_connections(adapter.subscriptions())
    session = adapter.new_session(plan)
    session.start(0)
    session.take_frames()
    if acked and "book" in channels:
        feed(session, BOOKS_ACK)
    return session


def feed(session: OkxSession, *frames: bytes) -> list[Event]:
    out: list[Event] = []
    for frame in frames:
        session.receive(frame, True, RECEIVED_NS, out)
    return out


def sent(session: OkxSession) -> list[dict[str, object]]:
    frames = session.take_frames()
    assert all(isinstance(f, str) for f in frames)
    return [json.loads(f) for f in frames]


def statuses(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.state, e.reason) for e in events if isinstance(e, FeedStatus)]


def books(events: list[Event]) -> list[Book]:
    return [e for e in events if isinstance(e, Book)]


def book_frame(
    action: str,
    seq: int,
    prev: int,
    bids: list[list[str]] | None = None,
    asks: list[list[str]] | None = None,
    checksum: int = 0,
) -> bytes:
    return json.dumps(
        {
            "arg": {"channel": "books", "instId": "BTC-USDT"},
            "action": action,
            "data": [
                {
                    "asks": asks or [],
                    "bids": bids or [],
                    "ts": "1597026383085",
                    "checksum": checksum,
                    "prevSeqId": prev,
                    "seqId": seq,
                }
            ],
        }
    ).encode()


def update(
    seq: int, prev: int, bids: list[list[str]] | None = None, asks: list[list[str]] | None = None
) -> bytes:
    return book_frame("update", seq, prev, bids=bids, asks=asks)


def rest_book(seq: int | str, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    item = {"asks": asks, "bids": bids, "ts": "1597026383090", "seqId": seq}
    return json.dumps({"code": "0", "msg": "", "data": [item]}).encode()


def respond(
    session: OkxSession, request: HttpRequest, body: bytes, status: int = 200
) -> list[Event]:
    out: list[Event] = []
    session.on_http(
        HttpResponse(request=request, status=status, body=body, received_ns=RECEIVED_NS), out
    )
    return out


BIDS = [["100", "1"], ["99", "1"]]
ASKS = [["101", "1"], ["102", "1"]]


# -- adapter ----------------------------------------------------------------------------------


def test_spec() -> None:
    spec = OkxAdapter.spec
    assert (spec.id, spec.ws_url, spec.rest_url) == (
        "okx",
        "wss://ws.okx.com:8443/ws/v5/public",
        "https://www.okx.com",
    )
    assert (spec.taker_fee_pct, spec.maker_fee_pct) == (0.1, 0.08)
    assert spec.default_symbols == ("BTC/USDT", "ETH/USDT")
    assert spec.continuous_channels == ("price", "book")
    assert spec.max_streams_per_connection < 30
    assert spec.keepalive.protocol_ping_interval is None
    assert spec.keepalive.app_ping_interval is not None
    assert 20 <= spec.keepalive.app_ping_interval <= 25
    assert spec.stale_action == "resubscribe"


def test_plugin_registers_the_adapter() -> None:
    assert plugin.arbd_exchanges() == [OkxAdapter]


def test_load_instruments() -> None:
    adapter = make_adapter(("BTC/USDT", "ETH/USDT"))
    (request,) = adapter.instrument_requests()
    assert request == HttpRequest(
        url=f"{REST}/api/v5/public/instruments?instType=SPOT", purpose="instruments"
    )
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    assert set(adapter.instruments) == {"BTC/USDT", "ETH/USDT"}  # suspended LUNA left out
    btc = adapter.instruments["BTC/USDT"]
    assert (btc.native, btc.base, btc.quote, btc.tick_size, btc.lot_size) == (
        "BTC-USDT",
        "BTC",
        "USDT",
        "0.1",
        "0.00000001",
    )
    assert (btc.price_precision, btc.size_precision) == (1, 8)
    assert adapter.native("ETH/USDT") == "ETH-USDT"


def test_unknown_symbol_is_a_config_error_with_a_suggestion() -> None:
    adapter = make_adapter(("BTC/USDC",))
    with pytest.raises(ConfigError) as error:
        adapter.load_instruments(answer(adapter, INSTRUMENTS))
    assert "'BTC/USDC' on okx" in str(error.value)
    assert "did you mean BTC/USDT" in str(error.value)
    assert error.value.key == "exchanges.okx.symbols"
    assert adapter.instruments == {}


def test_listed_but_suspended_symbol_names_its_state() -> None:
    adapter = make_adapter(("LUNA/USDT",))
    with pytest.raises(ConfigError, match="not trading \\(state suspend\\)"):
        adapter.load_instruments(answer(adapter, INSTRUMENTS))


def test_bad_instrument_answers() -> None:
    adapter = make_adapter()
    with pytest.raises(RestError) as error:
        adapter.load_instruments(answer(adapter, b"{}", status=503))
    assert error.value.status == 503
    with pytest.raises(RestError, match="50011"):
        adapter.load_instruments(answer(adapter, b'{"code":"50011","msg":"Too Many Requests"}'))
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b'{"code":"0","data":[{"instId":1}]}'))
    with pytest.raises(RestError):
        adapter.load_instruments([])


def test_candles_get_connections_of_their_own_on_the_business_endpoint() -> None:
    adapter = make_adapter(("BTC/USDT", "ETH/USDT"))
    plans = adapter.plan_connections(adapter.subscriptions())
    assert [p.url for p in plans] == [
        "ws://127.0.0.1:1/ws/v5/public",
        "ws://127.0.0.1:1/ws/v5/business",
    ]
    assert {s.channel for s in plans[0].subscriptions} == {"price", "trades", "book"}
    assert plans[1].subscriptions == (
        Subscription("candles", "BTC/USDT"),
        Subscription("candles", "ETH/USDT"),
    )


def test_planning_respects_the_per_connection_limit() -> None:
    symbols = tuple(f"C{i:02d}/USDT" for i in range(30))
    adapter = make_adapter(symbols)
    plans = adapter.plan_connections(adapter.subscriptions())
    limit = OkxAdapter.spec.max_streams_per_connection
    public = [p for p in plans if p.url.endswith("/public")]
    business = [p for p in plans if p.url.endswith("/business")]
    assert sum(len(p.subscriptions) for p in public) == 90
    assert sum(len(p.subscriptions) for p in business) == 30
    assert all(0 < len(p.subscriptions) <= limit for p in plans)
    assert all(s.channel == "candles" for p in business for s in p.subscriptions)


def test_business_url() -> None:
    assert business_url("wss://ws.okx.com:8443/ws/v5/public") == (
        "wss://ws.okx.com:8443/ws/v5/business"
    )
    assert business_url("wss://ws.okx.com:8443/ws/v5/public/") == (
        "wss://ws.okx.com:8443/ws/v5/business"
    )
    assert business_url("ws://127.0.0.1:9/ws") == "ws://127.0.0.1:9/ws"


# -- session: control frames ------------------------------------------------------------------


def test_start_sends_one_subscribe_with_every_stream() -> None:
    adapter = make_adapter(channels=CHANNELS)
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    public, business = (
        adapter.new_session(p) for p in adapter.plan_connections(adapter.subscriptions())
    )
    public.start(0)
    business.start(0)
    assert sent(public) == [
        {
            "op": "subscribe",
            "args": [
                {"channel": "books", "instId": "BTC-USDT"},
                {"channel": "bbo-tbt", "instId": "BTC-USDT"},
                {"channel": "trades", "instId": "BTC-USDT"},
            ],
            "id": "1",
        }
    ]
    assert sent(business) == [
        {"op": "subscribe", "args": [{"channel": "candle1m", "instId": "BTC-USDT"}], "id": "1"}
    ]


def test_acks_and_pong_are_understood() -> None:
    session = make_session(acked=False)
    assert feed(session, SUBSCRIBE_ACK, BOOKS_ACK, b"pong") == []
    assert session.acknowledged == {("tickers", "BTC-USDT"), ("books", "BTC-USDT")}
    assert session.last_pong_ns == RECEIVED_NS
    assert feed(session, UNSUBSCRIBE_ACK) == []
    assert session.acknowledged == {("books", "BTC-USDT")}
    assert session.stats.ignored == 0
    assert session.stats.errors_reported == 0


def test_keepalive_is_the_text_ping() -> None:
    session = make_session()
    session.keepalive(RECEIVED_NS)
    assert session.take_frames() == ["ping"]


def test_error_event_is_a_notice() -> None:
    session = make_session()
    assert feed(session, ERROR) == []
    assert session.stats.errors_reported == 1
    (notice,) = session.notices
    assert notice.startswith("error 60012: Invalid request:")
    # An error echoing one of our ids names the request it refused.
    feed(session, b'{"id":"1","event":"error","code":"60018","msg":"doesn\'t exist","connId":"x"}')
    assert session.stats.errors_reported == 2
    assert session.notices[1].endswith(
        "(request 1: subscribe books:BTC-USDT,bbo-tbt:BTC-USDT,trades:BTC-USDT)"
    )
    assert session.refused == {}  # neither error names an arg


def refusal(
    channel: str, inst_id: str, request_id: str | None = None, op: str = "Subscribe"
) -> bytes:
    """OKX's 60018 error event, text as captured (2026-09) on the wrong endpoint."""
    body: dict[str, str] = {} if request_id is None else {"id": request_id}
    body |= {
        "event": "error",
        "msg": f"{op} failed, wrong URL or channel:{channel},instId:{inst_id} doesn't exist. "
        "Please use the correct URL, channel and parameters referring to API document.",
        "code": "60018",
        "connId": "9e3779b9",
    }
    return json.dumps(body).encode()


def test_a_60018_refusal_refuses_the_arg_it_names() -> None:
    session = make_session(acked=False)
    reason = json.loads(refusal("bbo-tbt", "BTC-USDT"))["msg"]
    # Request 1 carried books, bbo-tbt and trades; OKX answers each arg on its own.
    feed(session, BOOKS_ACK.replace(b'{"event"', b'{"id":"1","event"'))
    assert feed(session, refusal("bbo-tbt", "BTC-USDT", "1")) == []
    assert session.refused == {Subscription("price", "BTC/USDT"): reason}
    assert session.notices[-1] == (
        f"error 60018: {reason} (request 1: subscribe bbo-tbt:BTC-USDT,trades:BTC-USDT)"
    )
    # The partial ack and the first error kept the request for its last arg.
    feed(session, refusal("trades", "BTC-USDT", "1"))
    assert session.notices[-1].endswith("(request 1: subscribe trades:BTC-USDT)")
    assert Subscription("trades", "BTC/USDT") in session.refused
    assert Subscription("book", "BTC/USDT") not in session.refused
    assert session.stats.errors_reported == 2


def test_a_60018_refusal_without_id_is_read_from_its_text() -> None:
    business = make_session(channels=("candles",))
    feed(business, refusal("candle1m", "BTC-USDT"))  # the captured frame: no id
    reason = json.loads(refusal("candle1m", "BTC-USDT"))["msg"]
    assert business.refused == {Subscription("candles", "BTC/USDT"): reason}
    session = make_session()
    feed(session, refusal("books", "ETH-USDT"))  # not a subscription of this session
    assert session.refused == {}


@pytest.mark.parametrize(
    "frame",
    [
        refusal("books", "BTC-USDT", "2", op="Unsubscribe"),  # answers the unsubscribe
        refusal("books", "BTC-USDT", op="Unsubscribe"),
        refusal("books", "BTC-USDT", "3").replace(b'"60018"', b'"60014"'),  # not a refusal code
        b'{"id":"3","event":"error","code":"60014","msg":"Requests too frequent.","connId":"x"}',
        b'{"id":"3","event":"error","code":"64004","msg":"conflicting depth","connId":"x"}',
        ERROR,
    ],
)
def test_other_errors_refuse_nothing(frame: bytes) -> None:
    session = make_session()
    session.resubscribe([Subscription("book", "BTC/USDT")], 0)
    assert [(f["op"], f["id"]) for f in sent(session)] == [("unsubscribe", "2"), ("subscribe", "3")]
    feed(session, frame)
    assert session.stats.errors_reported == 1
    assert session.refused == {}


def test_service_upgrade_notice_asks_for_a_reconnect() -> None:
    session = make_session()
    assert session.reconnect_reason is None
    assert feed(session, NOTICE) == []
    assert session.reconnect_reason is not None
    assert "64008" in session.notices[0]


def test_unknown_messages_are_ignored_and_counted() -> None:
    session = make_session()
    out = feed(
        session,
        TICKERS,  # a channel we never asked for
        CANDLE_1D,  # another bar than ours
        BBO_TBT.replace(b"BTC-USDT", b"ETH-USDT"),  # not our symbol
        b'{"event":"login","code":"0","msg":"","connId":"a4d3ae55"}',
        b'{"event":"channel-conn-count","channel":"orders","connCount":"2","connId":"x"}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"partial","data":[{"asks":[],'
        b'"bids":[],"seqId":1,"prevSeqId":0}]}',
        b"{}",
    )
    assert out == []
    assert session.stats.ignored == 7
    out = feed(session, BBO_TBT.replace(b'"seqId"', b'"extra":{"a":[1]},"seqId"'))
    assert isinstance(out[0], Quote)


@pytest.mark.parametrize(
    "frame",
    [
        b"this is {not json",
        b"ping",
        b"[1,2]",
        b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":{"asks":[]}}',
        b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[[111.06,5]],"bids":[]}]}',
        b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"1","sz":"1"}]}',
        b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"1","px":"1",'
        b'"sz":"1","ts":"yesterday"}]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],'
        b'"bids":[],"seqId":5}]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[],'
        b'"bids":[["1"]],"seqId":5,"prevSeqId":-1}]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[],'
        b'"bids":[]}]}',
    ],
)
def test_garbage_raises_for_the_driver_to_count(frame: bytes) -> None:
    with pytest.raises(FRAME_ERRORS):
        feed(make_session(), frame)


def test_short_candle_row_raises() -> None:
    session = make_session(channels=("candles",))
    with pytest.raises(FRAME_ERRORS):
        feed(session, b'{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1","2"]]}')


# -- session: price, trades, candles ----------------------------------------------------------


def test_bbo_tbt_quote() -> None:
    (quote,) = feed(make_session(), BBO_TBT)
    assert quote == Quote(
        exchange="okx",
        symbol="BTC/USDT",
        bid="111.05",
        ask="111.06",
        bid_size="57745",
        ask_size="55154",
        timestamp=1670324386802,
        exchange_time=1670324386802,
        received_ns=RECEIVED_NS,
        sequence=363996337,
    )


def test_one_sided_bbo_is_skipped() -> None:
    session = make_session()
    assert feed(session, BBO_TBT.replace(b'[ [ "111.06","55154","0","2" ] ]', b"[]")) == []
    assert session.stats.ignored == 1


def test_trades_side_is_the_taker_side() -> None:
    (trade,) = feed(make_session(), TRADES)
    assert trade == Trade(
        exchange="okx",
        symbol="BTC/USDT",
        price="42219.9",
        size="0.12060306",
        side="buy",
        id="130639474",
        timestamp=1630048897897,
        exchange_time=1630048897897,
        received_ns=RECEIVED_NS,
        sequence=130639474,
    )
    (sell,) = feed(make_session(), TRADES.replace(b'"buy"', b'"sell"'))
    assert isinstance(sell, Trade)
    assert sell.side == "sell"


def test_a_frame_in_a_bytearray_is_read_like_bytes() -> None:
    """The driver hands reassembled (fragmented) frames over as bytearrays; the push fast path
    caches routes by the arg's bytes and must not choke on an unhashable slice."""
    compact = msgspec.json.encode(msgspec.json.decode(TRADES))  # as OKX sends it: no spaces
    assert compact.startswith(b'{"arg":{"channel":"trades"')
    session = make_session()
    as_bytes = feed(session, compact, compact)
    assert len(as_bytes) == 2
    out: list[Event] = []
    session.receive(bytearray(compact), True, RECEIVED_NS, out)
    session.receive(bytearray(compact), True, RECEIVED_NS, out)
    assert out == as_bytes
    assert feed(session, TRADES) == as_bytes[:1]  # the general path agrees


def test_trade_time_as_a_json_number_is_accepted_too() -> None:
    """OKX sends ``ts`` as a string of milliseconds; a number is read the same."""
    numeric = TRADES.replace(b'"ts": "1630048897897"', b'"ts": 1630048897897')
    assert numeric != TRADES
    for frame in (numeric, msgspec.json.encode(msgspec.json.decode(numeric))):
        (trade,) = feed(make_session(), frame)
        assert isinstance(trade, Trade)
        assert trade.exchange_time == 1630048897897


def test_candle1m() -> None:
    session = make_session(channels=("candles",))
    (candle,) = feed(session, CANDLE_1M)
    assert candle == Candle(
        exchange="okx",
        symbol="BTC/USDT",
        interval="1m",
        start=1597026383085,
        open="8533.02",
        high="8553.74",
        low="8527.17",
        close="8548.26",
        volume="45247",
        closed=False,
        timestamp=RECEIVED_NS // 1_000_000,
        received_ns=RECEIVED_NS,
    )
    (final,) = feed(session, CANDLE_1M.replace(b'"5529.5858061", "0"', b'"5529.5858061", "1"'))
    assert isinstance(final, Candle)
    assert final.closed


# -- session: books ---------------------------------------------------------------------------


def test_snapshot_with_checksum_zero() -> None:
    (book,) = feed(make_session(), BOOK_SNAPSHOT_0)
    assert book == Book(
        exchange="okx",
        symbol="BTC/USDT",
        bids=[("8476.97", "256"), ("8475.55", "101")],
        asks=[("8476.98", "415"), ("8477", "7")],
        depth=20,
        timestamp=1597026383085,
        exchange_time=1597026383085,
        received_ns=RECEIVED_NS,
        sequence=123456,
    )


def test_the_docs_illustrative_checksum_is_a_mismatch() -> None:
    """The doc's -855196043 is not the CRC of the levels shown: a non-zero mismatch."""
    session = make_session()
    out = feed(session, BOOK_SNAPSHOT)
    assert not books(out)
    computed = okx_checksum(
        [("8476.97", "256"), ("8475.55", "101")], [("8476.98", "415"), ("8477", "7")]
    )
    reason = f"checksum mismatch in snapshot: got -855196043, computed {computed}"
    assert statuses(out) == [("invalid", reason), ("resyncing", reason)]
    assert session.stats.checksum_failures == 1
    assert session.stats.book_resyncs == 1
    assert sent(session) == [
        {"op": "unsubscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}], "id": "2"},
        {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}], "id": "3"},
    ]


def test_the_documented_sequence_example_has_no_gaps() -> None:
    """snapshot (-1 -> 10); update (10 -> 15); no-change (15 -> 15); reset (15 -> 3); 3 -> 5."""
    session = make_session()
    out = feed(
        session,
        book_frame("snapshot", 10, -1, bids=[["100", "1"]], asks=[["101", "1"]]),
        update(15, 10, bids=[["99", "2"]]),
        update(15, 15),
        update(3, 15, asks=[["102", "3"]]),
        update(5, 3, bids=[["100", "0"]]),
    )
    assert statuses(out) == []
    assert [b.sequence for b in books(out)] == [10, 15, 15, 3, 5]
    assert session.stats.sequence_gaps == 0
    last = books(out)[-1]
    assert (last.bids, last.asks) == ([("99", "2")], [("101", "1"), ("102", "3")])
    assert session.take_frames() == []


def test_sequence_gap_invalidates_resubscribes_and_recovers() -> None:
    session = make_session()
    feed(session, book_frame("snapshot", 10, -1, bids=[["100", "1"]], asks=[["101", "1"]]))
    out = feed(session, update(20, 12))
    reason = "sequence gap: prevSeqId 12 after seqId 10"
    assert statuses(out) == [("invalid", reason), ("resyncing", reason)]
    assert all(isinstance(e, FeedStatus) and e.scope == "book" for e in out)
    assert (session.stats.sequence_gaps, session.stats.book_resyncs) == (1, 1)
    assert [(f["op"], f["args"]) for f in sent(session)] == [
        ("unsubscribe", [{"channel": "books", "instId": "BTC-USDT"}]),
        ("subscribe", [{"channel": "books", "instId": "BTC-USDT"}]),
    ]
    # The old subscription's tail, then the acks: nothing published, no REST, no second status.
    assert feed(session, update(25, 20), BOOKS_UNACK, BOOKS_ACK) == []
    assert session.take_http_requests() == []
    out = feed(session, book_frame("snapshot", 40, -1, bids=[["100", "2"]], asks=[["101", "1"]]))
    assert statuses(out) == [("valid", "book synchronized")]
    assert [b.sequence for b in books(out)] == [40]
    assert [b.sequence for b in books(feed(session, update(41, 40)))] == [41]
    assert session.stats.sequence_gaps == 1


def test_crossed_book_is_never_published() -> None:
    session = make_session()
    feed(session, book_frame("snapshot", 10, -1, bids=[["100", "1"]], asks=[["101", "1"]]))
    out = feed(session, update(11, 10, bids=[["101", "1"]]))  # locked counts as crossed
    assert statuses(out) == [("invalid", "crossed book"), ("resyncing", "crossed book")]
    assert not books(out)
    assert session.stats.crossed_books == 1
    assert [f["op"] for f in sent(session)] == ["unsubscribe", "subscribe"]


def test_legacy_checksum_reference_vectors() -> None:
    assert signed_crc32("3366.1:7:3366.8:9:3366:6:3368:8") == -1881014294
    assert signed_crc32("3366.1:7:3366.8:9:3368:8:3372:8") == 831078360
    bids = [("3366.1", "7"), ("3366", "6")]
    asks = [("3366.8", "9"), ("3368", "8")]
    assert checksum_text(bids, asks) == "3366.1:7:3366.8:9:3366:6:3368:8"
    assert okx_checksum(bids, asks) == -1881014294
    # One side shorter: its missing entries are skipped.
    assert checksum_text([("3366.1", "7")], [*asks, ("3372", "8")]) == (
        "3366.1:7:3366.8:9:3368:8:3372:8"
    )
    # Original strings: "0.5000" stays "0.5000".
    assert checksum_text([("0.5000", "1.10")], []) == "0.5000:1.10"
    # Only the best 25 levels of each side count.
    many = [(str(1000 - i), "1") for i in range(30)]
    assert checksum_text(many, []).count(":") == 2 * 25 - 1


def test_non_zero_checksums_are_verified_against_the_local_book() -> None:
    session = make_session()
    snapshot = book_frame(
        "snapshot",
        10,
        -1,
        bids=[["3366.1", "7"], ["3366", "6"]],
        asks=[["3366.8", "9"], ["3368", "8"]],
        checksum=-1881014294,
    )
    change = update(11, 10, bids=[["3366", "0"]], asks=[["3372", "8"]])
    good = change.replace(b'"checksum": 0', b'"checksum": 831078360')
    assert b"831078360" in good
    out = feed(session, snapshot, good)
    assert [b.sequence for b in books(out)] == [10, 11]
    assert session.stats.checksum_failures == 0
    bad = update(12, 11, bids=[["3366.1", "8"]]).replace(b'"checksum": 0', b'"checksum": 831078360')
    out = feed(session, bad)
    assert not books(out)
    assert [s for s, _ in statuses(out)] == ["invalid", "resyncing"]
    assert session.stats.checksum_failures == 1


def test_published_books_hold_the_configured_depth() -> None:
    session = make_session(depth=2)
    bids = [[f"{100 - i}.0", "1"] for i in range(5)]
    asks = [[f"{101 + i}.0", "1"] for i in range(5)]
    (book,) = feed(session, book_frame("snapshot", 1, -1, bids=bids, asks=asks))
    assert isinstance(book, Book)
    assert (book.bids, book.asks, book.depth) == (
        [("100.0", "1"), ("99.0", "1")],
        [("101.0", "1"), ("102.0", "1")],
        2,
    )


def test_resubscribe_waits_for_the_ack_then_a_fresh_snapshot() -> None:
    session = make_session()
    feed(session, BOOK_SNAPSHOT_0)
    session.resubscribe([Subscription("book", "BTC/USDT"), Subscription("price", "BTC/USDT")], 0)
    args = [
        {"channel": "books", "instId": "BTC-USDT"},
        {"channel": "bbo-tbt", "instId": "BTC-USDT"},
    ]
    assert sent(session) == [
        {"op": "unsubscribe", "args": args, "id": "2"},
        {"op": "subscribe", "args": args, "id": "3"},
    ]
    assert feed(session, update(123457, 123456)) == []  # in flight from the old subscription
    assert session.take_http_requests() == []
    feed(session, BOOKS_ACK)
    assert [e.state for e in session.take_events() if isinstance(e, FeedStatus)] == ["resyncing"]
    out = feed(session, BOOK_SNAPSHOT_0)
    assert [type(e) for e in out] == [FeedStatus, Book]  # valid again


def test_a_snapshot_after_a_mistaken_rest_bootstrap_leaves_rest_mode() -> None:
    # A stall lost the snapshot sent on resubscribe: the first push after the ack is an update,
    # read as the no-snapshot mode. The next real snapshot must switch the book back, or every
    # later gap would be recovered through REST for good.
    session = make_session()
    feed(session, BOOK_SNAPSHOT_0)
    session.resubscribe([Subscription("book", "BTC/USDT")], 0)
    sent(session)
    feed(session, BOOKS_ACK, update(123460, 123458))  # the snapshot (123458) never came
    (request,) = session.take_http_requests()
    state = session.books.states["BTC-USDT"]
    assert state.rest_mode
    respond(session, request, rest_book(123460, BIDS, ASKS))
    session.resubscribe([Subscription("book", "BTC/USDT")], 0)  # e.g. stale again
    sent(session)
    feed(session, BOOKS_ACK)
    assert books(feed(session, book_frame("snapshot", 200, -1, bids=BIDS, asks=ASKS)))
    assert not state.rest_mode
    out = feed(session, update(210, 205))  # a gap: recovered by resubscribing, not REST
    assert [s for s, _ in statuses(out)] == ["invalid", "resyncing"]
    assert [f["op"] for f in sent(session)] == ["unsubscribe", "subscribe"]
    assert session.take_http_requests() == []


# -- session: no-snapshot mode (REST bootstrap) -----------------------------------------------


def test_no_snapshot_mode_bootstraps_from_rest() -> None:
    session = make_session()
    assert feed(session, update(105, 100, bids=[["99", "2"]])) == []
    (request,) = session.take_http_requests()
    assert request.url == BOOK_URL
    assert session.take_frames() == []
    # Buffered while the snapshot is on its way.
    assert (
        feed(session, update(110, 105, asks=[["102", "0"]]), update(115, 110, bids=[["98", "5"]]))
        == []
    )
    out = respond(session, request, rest_book(110, [["100", "1"], ["99", "2"]], [["101", "1"]]))
    assert statuses(out) == []  # the first sync of a book is not news
    assert [b.sequence for b in books(out)] == [110, 115]  # 105 and 110 were in the snapshot
    assert books(out)[-1].bids == [("100", "1"), ("99", "2"), ("98", "5")]
    (book,) = feed(session, update(120, 115, asks=[["101", "0"], ["103", "1"]]))
    assert isinstance(book, Book)
    assert book.asks == [("103", "1")]
    assert session.stats.sequence_gaps == 0


def test_a_book_bootstrapping_from_rest_is_waiting_until_answered_or_failed() -> None:
    session = make_session()
    book = Subscription("book", "BTC/USDT")
    assert not session.waiting(book)
    feed(session, update(105, 100))
    (request,) = session.take_http_requests()
    assert session.waiting(book)
    assert not session.waiting(Subscription("price", "BTC/USDT"))
    respond(session, request, rest_book(105, BIDS, ASKS))
    assert not session.waiting(book)  # valid
    session.resubscribe([book], 0)
    feed(session, BOOKS_ACK, update(110, 106))
    (request,) = session.take_http_requests()
    assert session.waiting(book)
    session.on_http_failed(request, "connection refused", [])
    assert not session.waiting(book)  # failed: the watchdog may resubscribe it


def test_rest_snapshot_between_updates_and_as_a_string_seq_id() -> None:
    session = make_session()
    feed(session, update(105, 100), update(110, 105))
    (request,) = session.take_http_requests()
    out = respond(session, request, rest_book("107", BIDS, ASKS))  # 105 <= 107 < 110
    assert [b.sequence for b in books(out)] == [107, 110]


def test_empty_snapshot_is_ignored_then_the_rest_bootstrap_runs() -> None:
    session = make_session()
    assert feed(session, book_frame("snapshot", 100, -1)) == []
    assert session.take_http_requests() == []
    feed(session, update(105, 100))
    (request,) = session.take_http_requests()
    assert request.url == BOOK_URL


def test_too_old_rest_snapshot_is_asked_for_again() -> None:
    session = make_session()
    feed(session, update(105, 100))
    (first,) = session.take_http_requests()
    assert respond(session, first, rest_book(95, BIDS, ASKS)) == []  # older than prevSeqId 100
    (second,) = session.take_http_requests()
    assert second.url == first.url
    assert second.purpose != first.purpose
    assert respond(session, first, rest_book(105, BIDS, ASKS)) == []  # a stale answer: dropped
    out = respond(session, second, rest_book(105, BIDS, ASKS))
    assert [b.sequence for b in books(out)] == [105]
    assert books(feed(session, update(106, 105)))[0].sequence == 106


def test_first_live_update_must_start_inside_the_rest_snapshot() -> None:
    session = make_session()
    feed(session, update(105, 100))
    (request,) = session.take_http_requests()
    assert [b.sequence for b in books(respond(session, request, rest_book(105, BIDS, ASKS)))] == [
        105
    ]
    assert feed(session, update(105, 105)) == []  # already in the snapshot: skipped
    out = feed(session, update(120, 110))  # 105 -> 110 never seen
    reason = "REST snapshot seqId 105 older than update prevSeqId 110"
    assert statuses(out) == [("invalid", reason), ("resyncing", reason)]
    assert session.stats.sequence_gaps == 1
    (request,) = session.take_http_requests()
    assert request.url == BOOK_URL


def test_gap_in_no_snapshot_mode_resyncs_by_rest_not_resubscribe() -> None:
    session = make_session()
    feed(session, update(105, 100))
    (request,) = session.take_http_requests()
    respond(session, request, rest_book(105, BIDS, ASKS))
    assert [b.sequence for b in books(feed(session, update(110, 105)))] == [110]
    out = feed(session, update(120, 112))
    reason = "sequence gap: prevSeqId 112 after seqId 110"
    assert statuses(out) == [("invalid", reason), ("resyncing", reason)]
    assert session.take_frames() == []
    (request,) = session.take_http_requests()
    assert request.url == BOOK_URL
    feed(session, update(125, 120))
    out = respond(session, request, rest_book(122, BIDS, ASKS))
    assert statuses(out) == [("valid", "book synchronized")]
    assert [b.sequence for b in books(out)] == [122, 125]


def test_gap_inside_the_buffer_restarts_the_bootstrap() -> None:
    session = make_session()
    feed(session, update(105, 100))
    (first,) = session.take_http_requests()
    feed(session, update(120, 110))  # does not chain on 105
    assert session.stats.sequence_gaps == 1
    (second,) = session.take_http_requests()
    assert respond(session, first, rest_book(130, BIDS, ASKS)) == []  # superseded
    out = respond(session, second, rest_book(115, BIDS, ASKS))
    assert [b.sequence for b in books(out)] == [115, 120]


def test_failed_rest_request_leaves_the_book_invalid_until_resubscribed() -> None:
    session = make_session()
    feed(session, update(105, 100))
    (request,) = session.take_http_requests()
    out: list[Event] = []
    session.on_http_failed(request, "connection refused", out)
    assert statuses(out) == [("invalid", "REST snapshot: connection refused")]
    assert "connection refused" in session.notices[-1]
    assert feed(session, update(106, 105)) == []
    assert session.take_http_requests() == []
    session.resubscribe([Subscription("book", "BTC/USDT")], 0)
    assert [f["op"] for f in sent(session)] == ["unsubscribe", "subscribe"]
    feed(session, BOOKS_ACK, update(110, 106))
    (request,) = session.take_http_requests()
    out = respond(session, request, rest_book(110, BIDS, ASKS))
    assert statuses(out) == [("valid", "book synchronized")]


def test_rest_error_answers() -> None:
    session = make_session()
    feed(session, update(105, 100))
    (request,) = session.take_http_requests()
    out = respond(session, request, b'{"code":"50011","msg":"Too Many Requests","data":[]}')
    assert statuses(out) == [("invalid", "REST snapshot: error 50011: Too Many Requests")]
    session.resubscribe([Subscription("book", "BTC/USDT")], 0)
    feed(session, BOOKS_ACK, update(110, 106))
    (request,) = session.take_http_requests()
    assert statuses(respond(session, request, b"", status=503)) == []  # already announced
    assert "HTTP 503" in session.notices[-1]


def test_rest_answer_without_seq_id_raises() -> None:
    session = make_session()
    feed(session, update(105, 100))
    (request,) = session.take_http_requests()
    body = json.dumps({"code": "0", "msg": "", "data": [{"asks": ASKS, "bids": BIDS, "ts": "1"}]})
    with pytest.raises(ProtocolError):
        respond(session, request, body.encode())


def test_rest_attempts_are_bounded() -> None:
    session = make_session()
    feed(session, update(105, 100))
    out: list[Event] = []
    for _ in range(10):
        requests = session.take_http_requests()
        if not requests:
            break
        out += respond(session, requests[0], rest_book(1, BIDS, ASKS))
    assert statuses(out) == [("invalid", "REST snapshot: no usable REST snapshot after 5 attempts")]
    assert session.take_http_requests() == []


def test_unrelated_http_answers_are_ignored() -> None:
    session = make_session()
    request = HttpRequest(url=BOOK_URL, purpose="book:ETH-USDT:1")
    assert respond(session, request, b"garbage") == []
    assert respond(session, HttpRequest(url="x", purpose="other"), b"") == []


# -- replay -----------------------------------------------------------------------------------


def test_replay_session_takes_every_listed_symbol_on_every_channel() -> None:
    adapter = make_adapter()
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    session = adapter.new_session(ConnectionPlan(url="ws://x/ws/v5/public", subscriptions=()))
    session.start(0)
    assert session.take_frames() == []
    out = feed(
        session,
        BBO_TBT,
        BOOK_SNAPSHOT_0,
        TRADES.replace(b"BTC-USDT", b"ETH-USDT"),
        CANDLE_1M,
        BBO_TBT.replace(b"BTC-USDT", b"LUNA-USDT"),  # not live, not loaded
        TICKERS,
    )
    assert [type(e) for e in out] == [Quote, Book, Trade, Candle]
    assert session.stats.ignored == 2


def test_replay_without_instruments_maps_spot_ids_mechanically() -> None:
    adapter = make_adapter()
    session = adapter.new_session(ConnectionPlan(url="ws://x/ws/v5/public", subscriptions=()))
    out = feed(
        session,
        BBO_TBT.replace(b"BTC-USDT", b"ETH-USDT"),
        BBO_TBT.replace(b"BTC-USDT", b"BTC-USDT-SWAP"),
    )
    assert [e.symbol for e in out] == ["ETH/USDT"]
    assert session.stats.ignored == 1


# -- property: a random book stream with legacy checksums ---------------------------------------


def _stream(seed: int, rounds: int) -> tuple[list[bytes], dict[str, str], dict[str, str]]:
    """A snapshot and ``rounds`` updates of a random 40-level book, each with its true checksum."""
    rng = random.Random(seed)
    bids = {f"{1000 - i}.{rng.randrange(10)}": str(rng.randrange(1, 9)) for i in range(1, 41)}
    asks = {f"{1000 + i}.{rng.randrange(10)}": str(rng.randrange(1, 9)) for i in range(1, 41)}

    def checksum() -> int:
        best_bids = sorted(bids.items(), key=lambda kv: -float(kv[0]))
        best_asks = sorted(asks.items(), key=lambda kv: float(kv[0]))
        return okx_checksum(best_bids, best_asks)

    frames = [
        book_frame(
            "snapshot",
            1,
            -1,
            bids=[list(kv) for kv in bids.items()],
            asks=[list(kv) for kv in asks.items()],
            checksum=checksum(),
        )
    ]
    for n in range(rounds):
        changes: dict[str, list[list[str]]] = {"bids": [], "asks": []}
        for side, book, sign in (("bids", bids, -1), ("asks", asks, 1)):
            for _ in range(rng.randrange(4)):
                price = f"{1000 + sign * rng.randrange(1, 45)}.{rng.randrange(10)}"
                size = "0" if price in book and rng.random() < 0.5 else f"{rng.randrange(1, 99)}.0"
                if size == "0":
                    del book[price]
                else:
                    book[price] = size
                changes[side].append([price, size])
        frames.append(
            update(n + 2, n + 1, bids=changes["bids"], asks=changes["asks"]).replace(
                b'"checksum": 0', f'"checksum": {checksum()}'.encode()
            )
        )
    return frames, bids, asks


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 40), depth=st.integers(1, 30))
def test_books_follow_a_checksummed_stream_exactly(seed: int, rounds: int, depth: int) -> None:
    frames, bids, asks = _stream(seed, rounds)
    assert all(b'"checksum": 0' not in frame for frame in frames)  # every one is verified
    session = make_session(depth=depth)
    out = feed(session, *frames)
    assert statuses(out) == []
    assert session.stats.checksum_failures == 0
    published = books(out)
    assert len(published) == rounds + 1
    last = published[-1]
    assert last.bids == sorted(bids.items(), key=lambda kv: -float(kv[0]))[:depth]
    assert last.asks == sorted(asks.items(), key=lambda kv: float(kv[0]))[:depth]
    assert last.sequence == rounds + 1


# -- compact frames (as OKX sends them) take the one-pass decode; the result is the same -------


def compact(frame: bytes) -> bytes:
    return json.dumps(json.loads(frame), separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "frames",
    [
        [BBO_TBT],
        [TRADES],
        [CANDLE_1M],  # candles live on business-endpoint sessions: ignored here
        [BOOKS_ACK, BOOK_SNAPSHOT_0, update(124, 123, bids=[["8476.97", "0"]])],
        [BOOKS_ACK, BOOK_SNAPSHOT_0, update(200, 190)],  # a gap: invalid, resubscribe
        [TICKERS],  # a channel the session does not take: ignored on both paths
    ],
)
def test_compact_pushes_give_the_same_events_as_spaced_ones(frames: list[bytes]) -> None:
    spaced, tight = make_session(), make_session()
    assert compact(frames[-1]).startswith(b'{"arg":{"channel":"')
    events = feed(tight, *map(compact, frames))
    assert events == feed(spaced, *frames)
    assert tight.stats == spaced.stats
    assert sent(tight) == sent(spaced)
    # Pushes the session takes were routed on the one-pass path (and only those).
    assert any(tight._push_routes.values()) is bool(events)


def test_a_compact_push_of_the_wrong_shape_is_still_a_frame_error() -> None:
    with pytest.raises(FRAME_ERRORS):
        feed(make_session(), b'{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[{"asks":1}]}')
