"""The Kraken v2 adapter, pure: frames from the protocol reference in, events and frames out.

Frames marked "verbatim" are copied from /work/shared/reference/exchange-protocols.md §3 (which
quotes Kraken's v2 documentation); the checksum vectors are the reference's §3.4 / §3.7 ones.
"""

from __future__ import annotations

import json
import zlib
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.errors import ConfigError, ProtocolError, RestError
from arbd.exchange.adapter import AdapterSettings, ConnectionPlan, HttpRequest, HttpResponse
from arbd.model import CHANNELS, Book, Candle, Event, FeedStatus, Quote, Subscription, Trade
from arbd_kraken import plugin
from arbd_kraken.adapter import KrakenAdapter, subscribe_depth, v2_symbol
from arbd_kraken.checksum import Checksummer, book_checksum, checksum_string, decimal_text
from arbd_kraken.session import KrakenSession

RECEIVED_NS = 1_700_000_000_500_000_000
RECEIVED_MS = RECEIVED_NS // 1_000_000

# -- verbatim v2 frames (reference §3.2, §3.3, §3.5) ------------------------------------------

SUBSCRIBE_ACK = (
    b'{ "method": "subscribe", "result": { "channel": "book", "depth": 10, "snapshot": true, '
    b'"symbol": "ALGO/USD" }, "success": true, "time_in": "2023-10-06T17:35:55.219022Z", '
    b'"time_out": "2023-10-06T17:35:55.219067Z" }'
)
SUBSCRIBE_ERROR = (
    b'{"error":"Currency pair not supported XBT/USD","method":"subscribe","success":false,'
    b'"symbol":"XBT/USD","time_in":"...","time_out":"..."}'
)
PONG = (
    b'{ "method": "pong", "req_id": 101, "time_in": "2023-09-24T14:10:23.799685Z", '
    b'"time_out": "2023-09-24T14:10:23.799703Z" }'
)
HEARTBEAT = b'{ "channel": "heartbeat" }'
STATUS = (
    b'{ "channel": "status", "data": [ { "api_version": "v2", "connection_id": '
    b'13834774380200032777, "system": "online", "version": "2.0.0" } ], "type": "update" }'
)
TICKER = (
    b'{ "channel": "ticker", "type": "snapshot", "data": [ { "symbol": "ALGO/USD", '
    b'"bid": 0.10025, "bid_qty": 740.0,\n  "ask": 0.10036, "ask_qty": 1361.44813783, '
    b'"last": 0.10035, "volume": 997038.98383185, "vwap": 0.10148,\n  "low": 0.09979, '
    b'"high": 0.10285, "change": -0.00017, "change_pct": -0.17, '
    b'"timestamp": "2023-09-25T09:04:31.742648Z" } ] }'
)
TRADE = (
    b'{ "channel": "trade", "type": "update", "data": [ { "symbol": "MATIC/USD", "side": "sell", '
    b'"price": 0.5117,\n  "qty": 40.0, "ord_type": "market", "trade_id": 4665906, '
    b'"timestamp": "2023-09-25T07:49:37.708706Z" } ] }'
)
BOOK_SNAPSHOT = (
    b'{ "channel": "book", "type": "snapshot", "data": [ { "symbol": "MATIC/USD",\n'
    b'  "bids": [ { "price": 0.5666, "qty": 4831.75496356 }, '
    b'{ "price": 0.5665, "qty": 6658.22734739 } ],\n'
    b'  "asks": [ { "price": 0.5668, "qty": 4410.79769741 }, '
    b'{ "price": 0.5669, "qty": 4655.40412487 } ],\n'
    b'  "checksum": 2439117997, "timestamp": "2023-10-06T17:35:55.440295Z" } ] }'
)
BOOK_UPDATE = (
    b'{ "channel": "book", "type": "update", "data": [ { "symbol": "MATIC/USD",\n'
    b'  "bids": [ { "price": 0.5657, "qty": 1098.3947558 } ], "asks": [],\n'
    b'  "checksum": 2114181697, "timestamp": "2023-10-06T17:35:55.440295Z" } ] }'
)
OHLC = (
    b'{ "channel": "ohlc", "type": "update", "timestamp": "2023-10-04T16:26:30.524394914Z", '
    b'"data": [ {\n  "symbol": "MATIC/USD", "open": 0.5624, "high": 0.5628, "low": 0.5622, '
    b'"close": 0.5627, "trades": 12,\n  "volume": 30927.68066226, "vwap": 0.5626, '
    b'"interval_begin": "2023-10-04T16:25:00.000000000Z", "interval": 5,\n'
    b'  "timestamp": "2023-10-04T16:30:00.000000Z" } ] }'
)

# -- checksum vectors (reference §3.4 and §3.7) -----------------------------------------------

V2_BIDS = (
    "45283.5/0.10000000, 45283.4/1.54582015, 45282.1/0.10000000, 45281.0/0.10000000, "
    "45280.3/1.54592586, 45279.0/0.07990000, 45277.6/0.03310103, 45277.5/0.30000000, "
    "45277.3/1.54602737, 45276.6/0.15445238"
)
V2_ASKS = (
    "45285.2/0.00100000, 45286.4/1.54571953, 45286.6/1.54571109, 45289.6/1.54560911, "
    "45290.2/0.15890660, 45291.8/1.54553491, 45294.7/0.04454749, 45296.1/0.35380000, "
    "45297.5/0.09945542, 45299.5/0.18772827"
)
V2_ASKS_STRING = (
    "45285210000045286415457195345286615457110945289615456091145290215890660452918154553491"
    "452947445474945296135380000452975994554245299518772827"
)
V2_BIDS_STRING = (
    "45283510000000452834154582015452821100000004528101000000045280315459258645279079900004"
    "5277633101034527753000000045277315460273745276615445238"
)
V2_CHECKSUM = 3310070434
# The reference prints the v1 example one character short (its last level "4950500" lost the
# final "0"); CRC32 974947235 is that of the full 140-character string below.
V1_STRING_AS_PRINTED = (
    "50055005010500501550050205005025500503050050355005040500504550050505005000500499550049905"
    "00498050049755004970500496550049605004955500495050"
)
V1_CHECKSUM = 974947235


def levels(text: str) -> list[tuple[str, str]]:
    return [(p, q) for p, q in (item.strip().split("/") for item in text.split(","))]


def oracle(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """The reference's own checksum code (§8), kept independent of the adapter's."""

    def f(s: str) -> str:
        return s.replace(".", "").lstrip("0")

    a = "".join(f(p) + f(q) for p, q in asks[:10])
    b = "".join(f(p) + f(q) for p, q in bids[:10])
    return zlib.crc32((a + b).encode()) & 0xFFFFFFFF


# -- REST AssetPairs (shaped like the live answer; not every field) ---------------------------


def pair(wsname: str | None, pair_decimals: int, lot_decimals: int, **extra: object) -> object:
    entry: dict[str, object] = {
        "altname": (wsname or "X").replace("/", ""),
        "aclass_base": "currency",
        "aclass_quote": "currency",
        "lot": "unit",
        "cost_decimals": 5,
        "pair_decimals": pair_decimals,
        "lot_decimals": lot_decimals,
        "lot_multiplier": 1,
        "fees": [[0, 0.4], [10000, 0.35]],
        "fees_maker": [[0, 0.25], [10000, 0.2]],
        "fee_volume_currency": "ZUSD",
        "margin_call": 80,
        "ordermin": "0.0001",
        "costmin": "0.5",
        "status": "online",
    }
    if wsname is not None:
        entry["wsname"] = wsname
    entry.update(extra)
    return entry


ASSET_PAIRS = json.dumps(
    {
        "error": [],
        "result": {
            "XXBTZUSD": pair("XBT/USD", 1, 8, tick_size="0.1", base="XXBT", quote="ZUSD"),
            "XETHZUSD": pair("ETH/USD", 2, 8, tick_size="0.01"),
            "XDGUSD": pair("XDG/USD", 7, 8),
            "MATICUSD": pair("MATIC/USD", 4, 8),
            "ALGOUSD": pair("ALGO/USD", 5, 8),
            "XXBTZUSD.d": pair(None, 1, 8),  # no WebSocket name: not streamable
            "GONEUSD": pair("GONE/USD", 4, 8, status="delisted"),
        },
    }
).encode()


def make_adapter(
    symbols: tuple[str, ...] = ("BTC/USD",), depth: int = 10, channels: tuple[str, ...] = CHANNELS
) -> KrakenAdapter:
    return KrakenAdapter(
        AdapterSettings(
            ws_url="wss://ws.kraken.com/v2",
            rest_url="http://127.0.0.1:1/",
            symbols=symbols,
            channels=channels,
            book_depth=depth,
        )
    )


def answer(adapter: KrakenAdapter, body: bytes, status: int = 200) -> list[HttpResponse]:
    (request,) = adapter.instrument_requests()
    return [HttpResponse(request=request, status=status, body=body, received_ns=RECEIVED_NS)]


def make_session(
    symbols: tuple[str, ...] = ("BTC/USD", "MATIC/USD", "ALGO/USD"),
    depth: int = 10,
    channels: tuple[str, ...] = CHANNELS,
) -> KrakenSession:
    adapter = make_adapter(symbols, depth, channels)
    adapter.load_instruments(answer(adapter, ASSET_PAIRS))
    (plan,) = adapter.plan_connections(adapter.subscriptions())
    return adapter.new_session(plan)


def feed(session: KrakenSession, *frames: bytes) -> list[Event]:
    out: list[Event] = []
    for frame in frames:
        session.receive(frame, True, RECEIVED_NS, out)
    return out


def sent(session: KrakenSession) -> list[dict[str, object]]:
    frames = session.take_frames()
    assert all(isinstance(f, str) for f in frames)
    return [json.loads(f) for f in frames]


def statuses(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.state, e.reason) for e in events if isinstance(e, FeedStatus)]


def short(text: str) -> str:
    """How Kraken may print a number: no trailing zeros (``0.10000000`` -> ``0.1``)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def book_frame(
    kind: str,
    symbol: str,
    bids: list[tuple[str, str]],
    asks: list[tuple[str, str]],
    checksum: int,
) -> bytes:
    """A v2 book message with prices and quantities as JSON numbers written as given."""

    def side(items: list[tuple[str, str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in items)

    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":[{side(bids)}],"asks":[{side(asks)}],"checksum":{checksum},'
        f'"timestamp":"2023-10-06T17:35:55.440295Z"}}]}}'
    ).encode()


# -- checksum and numbers ---------------------------------------------------------------------


def test_v2_checksum_example_from_the_guide() -> None:
    asks, bids = levels(V2_ASKS), levels(V2_BIDS)
    assert checksum_string(asks, []) == V2_ASKS_STRING
    assert checksum_string([], bids) == V2_BIDS_STRING
    assert book_checksum(asks, bids) == V2_CHECKSUM == 3310070434


def test_v1_checksum_example_from_the_guide() -> None:
    asks = [(f"0.0{5005 + 5 * i}", "0.00000500") for i in range(10)]
    bids = [
        (f"0.0{p}", "0.00000500")
        for p in (5000, 4995, 4990, 4980, 4975, 4970, 4965, 4960, 4955, 4950)
    ]
    assert checksum_string(asks, bids) == V1_STRING_AS_PRINTED + "0"
    assert book_checksum(asks, bids) == V1_CHECKSUM == 974947235


def test_checksum_uses_only_the_top_ten_levels() -> None:
    asks, bids = levels(V2_ASKS), levels(V2_BIDS)
    assert book_checksum([*asks, ("45300.0", "9.00000000")], bids) == V2_CHECKSUM


@pytest.mark.parametrize(
    ("number", "places", "text"),
    [
        ("0.1", 8, "0.10000000"),
        ("740.0", 8, "740.00000000"),
        ("740", 8, "740.00000000"),
        ("45281", 1, "45281.0"),
        ("1e-8", 8, "0.00000001"),
        ("5E+3", 2, "5000.00"),
        ("0", 8, "0.00000000"),
        ("0.10000000", 8, "0.10000000"),
        ("0.123456789", 8, "0.123456789"),  # more digits than the precision: never rounded
        ("740.0", 0, "740.0"),
        ("740.0", None, "740.0"),
        ("1E-8", None, "0.00000001"),
    ],
)
def test_decimal_text_pads_to_the_precision_and_never_rounds(
    number: str, places: int | None, text: str
) -> None:
    assert decimal_text(Decimal(number), places) == text


def test_json_numbers_without_trailing_zeros_still_checksum() -> None:
    """Kraken may print 0.1 for a 0.10000000 size: padding to lot_decimals restores the text."""
    session = make_session(("BTC/USD",))
    bids = [(short(p), short(q)) for p, q in levels(V2_BIDS)]
    asks = [(short(p), short(q)) for p, q in levels(V2_ASKS)]
    assert ("45281", "0.1") in bids  # the frame really carries the short forms
    (book,) = feed(session, book_frame("snapshot", "BTC/USD", bids, asks, V2_CHECKSUM))
    assert isinstance(book, Book)
    assert book.bids == levels(V2_BIDS)
    assert book.asks == levels(V2_ASKS)
    assert session.stats.checksum_failures == 0


# -- adapter ----------------------------------------------------------------------------------


def test_spec() -> None:
    spec = KrakenAdapter.spec
    assert (spec.id, spec.ws_url, spec.rest_url) == (
        "kraken",
        "wss://ws.kraken.com/v2",
        "https://api.kraken.com",
    )
    assert (spec.taker_fee_pct, spec.maker_fee_pct) == (0.8, 0.4)
    assert spec.default_symbols == ("BTC/USD", "ETH/USD")
    assert spec.continuous_channels == ("price", "book")
    assert spec.channels == CHANNELS
    assert spec.keepalive.app_ping_interval is not None
    assert 20.0 <= spec.keepalive.app_ping_interval <= 30.0
    assert spec.keepalive.app_ping_interval < spec.keepalive.idle_timeout < 60.0


def test_plugin_registers_the_adapter() -> None:
    assert plugin.arbd_exchanges() == [KrakenAdapter]


@pytest.mark.parametrize(
    ("book_depth", "depth"),
    [
        (1, 10),
        (10, 10),
        (11, 25),
        (20, 25),
        (25, 25),
        (26, 100),
        (100, 100),
        (400, 500),
        (1000, 1000),
        (5000, 1000),
    ],
)
def test_subscribe_depth_is_the_smallest_valid_one(book_depth: int, depth: int) -> None:
    assert subscribe_depth(book_depth) == depth


def test_v2_symbol_names() -> None:
    assert v2_symbol("XBT/USD") == "BTC/USD"
    assert v2_symbol("XDG/XBT") == "DOGE/BTC"
    assert v2_symbol("ETH/USD") == "ETH/USD"
    assert v2_symbol("XBTUSD") is None
    assert v2_symbol("A/B/C") is None


def test_load_instruments_from_asset_pairs() -> None:
    adapter = make_adapter(("BTC/USD", "DOGE/USD"))
    (request,) = adapter.instrument_requests()
    assert request == HttpRequest(
        url="http://127.0.0.1:1/0/public/AssetPairs", purpose="instruments"
    )
    adapter.load_instruments(answer(adapter, ASSET_PAIRS))
    assert sorted(adapter.instruments) == [
        "ALGO/USD",
        "BTC/USD",
        "DOGE/USD",
        "ETH/USD",
        "MATIC/USD",
    ]
    btc = adapter.instruments["BTC/USD"]
    assert (btc.native, btc.base, btc.quote, btc.tick_size, btc.lot_size) == (
        "BTC/USD",
        "BTC",
        "USD",
        "0.1",
        "0.00000001",
    )
    assert (btc.price_precision, btc.size_precision) == (1, 8)
    doge = adapter.instruments["DOGE/USD"]
    assert (doge.tick_size, doge.price_precision) == ("0.0000001", 7)  # no tick_size: 1e-7
    assert adapter.rest_names["BTC/USD"] == "XXBTZUSD"
    assert adapter.native("BTC/USD") == "BTC/USD"


def test_unknown_symbol_is_a_config_error_with_a_suggestion() -> None:
    adapter = make_adapter(("XBT/USD",))
    with pytest.raises(ConfigError) as error:
        adapter.load_instruments(answer(adapter, ASSET_PAIRS))
    assert "'XBT/USD' on kraken" in str(error.value)
    assert "did you mean BTC/USD" in str(error.value)
    assert adapter.instruments == {}
    delisted = make_adapter(("GONE/USD",))
    with pytest.raises(ConfigError):
        delisted.load_instruments(answer(delisted, ASSET_PAIRS))


def test_bad_asset_pairs_answers() -> None:
    adapter = make_adapter()
    with pytest.raises(RestError) as error:
        adapter.load_instruments(answer(adapter, b"{}", status=503))
    assert error.value.status == 503
    with pytest.raises(RestError, match="EGeneral:Internal error"):
        adapter.load_instruments(answer(adapter, b'{"error":["EGeneral:Internal error"]}'))
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b"<html>"))
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b'{"error":[],"result":{"X":{"wsname":1}}}'))
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b'{"error":[]}'))
    with pytest.raises(RestError):
        adapter.load_instruments([])


# -- session: control frames ------------------------------------------------------------------


def test_start_sends_one_subscribe_per_channel() -> None:
    session = make_session(("BTC/USD", "ETH/USD"), depth=20)
    session.start(0)
    assert sent(session) == [
        {
            "method": "subscribe",
            "params": {
                "channel": "ticker",
                "symbol": ["BTC/USD", "ETH/USD"],
                "event_trigger": "bbo",
            },
            "req_id": 1,
        },
        {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"]},
            "req_id": 2,
        },
        {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 25},
            "req_id": 3,
        },
        {
            "method": "subscribe",
            "params": {"channel": "ohlc", "symbol": ["BTC/USD", "ETH/USD"], "interval": 1},
            "req_id": 4,
        },
    ]


def test_acks_pong_heartbeat_and_status_are_understood() -> None:
    session = make_session()
    assert feed(session, SUBSCRIBE_ACK, PONG, HEARTBEAT, STATUS) == []
    assert session.acknowledged == {("book", "ALGO/USD")}
    assert session.last_pong_req_id == 101
    assert session.heartbeats == 1
    assert session.system_status == "online"
    assert session.notices == []
    assert (session.stats.ignored, session.stats.errors_reported) == (0, 0)
    unsubscribed = SUBSCRIBE_ACK.replace(b'"subscribe"', b'"unsubscribe"')
    assert feed(session, unsubscribed) == []
    assert session.acknowledged == set()


def test_status_other_than_online_is_a_notice() -> None:
    session = make_session()
    feed(session, STATUS.replace(b'"online"', b'"maintenance"'), STATUS)
    assert session.notices == ["system status maintenance", "system status online"]
    assert session.system_status == "online"


def test_subscribe_error_is_a_notice_and_counted() -> None:
    session = make_session()
    assert feed(session, SUBSCRIBE_ERROR) == []
    assert session.stats.errors_reported == 1
    assert session.notices == ["subscribe XBT/USD failed: Currency pair not supported XBT/USD"]
    assert session.refused == {}  # XBT/USD is no symbol of this session


def test_error_naming_a_request_says_which() -> None:
    session = make_session(("BTC/USD",))
    session.start(0)
    error = SUBSCRIBE_ERROR.replace(b'"success":false', b'"success":false,"req_id":3')
    feed(session, error)
    (notice,) = session.notices
    assert notice.endswith("(request 3: subscribe book BTC/USD)")
    assert session.refused == {}  # the request was not about XBT/USD


def rejection(symbol: str, req_id: int | None, error: str | None = None) -> bytes:
    """Kraken's per-symbol subscribe rejection (reference §3.2, with ``req_id`` echoed)."""
    body: dict[str, object] = {
        "error": error or f"Currency pair not supported {symbol}",
        "method": "subscribe",
        "req_id": req_id,
        "success": False,
        "symbol": symbol,
        "time_in": "2023-10-06T17:35:55.219022Z",
        "time_out": "2023-10-06T17:35:55.219067Z",
    }
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_an_unsupported_pair_refuses_the_subscription_its_request_names() -> None:
    session = make_session(("BTC/USD", "MATIC/USD"))
    session.start(0)
    requests = {f["req_id"]: f["params"]["channel"] for f in sent(session)}  # type: ignore[index]
    assert requests == {1: "ticker", 2: "trade", 3: "book", 4: "ohlc"}
    # The book request carries both symbols: BTC/USD is acked, MATIC/USD refused.
    ack = SUBSCRIBE_ACK.replace(b'"ALGO/USD"', b'"BTC/USD"')
    assert feed(session, ack, rejection("MATIC/USD", 3)) == []
    reason = "Currency pair not supported MATIC/USD"
    assert session.refused == {Subscription("book", "MATIC/USD"): reason}
    # The request is kept for the other symbols' answers: the ticker one refuses too.
    feed(session, rejection("MATIC/USD", 1))
    assert session.refused == {
        Subscription("book", "MATIC/USD"): reason,
        Subscription("price", "MATIC/USD"): reason,
    }
    assert session.stats.errors_reported == 2
    assert session.notices[0] == (
        f"subscribe MATIC/USD failed: {reason} (request 3: subscribe book BTC/USD,MATIC/USD)"
    )


def test_an_unsupported_pair_without_req_id_refuses_every_channel_of_it() -> None:
    session = make_session(("BTC/USD", "MATIC/USD"))
    feed(session, SUBSCRIBE_ERROR.replace(b"XBT/USD", b"MATIC/USD"))
    reason = "Currency pair not supported MATIC/USD"
    assert session.refused == {Subscription(c, "MATIC/USD"): reason for c in CHANNELS}


@pytest.mark.parametrize(
    "frame",
    [
        rejection("MATIC/USD", 3, "Already subscribed"),
        rejection("MATIC/USD", 3, "Subscription Not Found"),
        b'{"error":"EGeneral:Invalid arguments:depth","method":"subscribe","req_id":3,'
        b'"success":false,"time_in":"...","time_out":"..."}',
        b'{"error":"Unsupported event","method":"nonsense","req_id":9,"success":false}',
        b'{"error":"Exceeded msg rate","method":"subscribe","success":false}',
    ],
)
def test_other_errors_refuse_nothing(frame: bytes) -> None:
    session = make_session(("BTC/USD", "MATIC/USD"))
    session.start(0)
    feed(session, frame)
    assert session.stats.errors_reported == 1
    assert session.refused == {}


def test_an_unsupported_pair_in_an_unsubscribe_refuses_nothing() -> None:
    session = make_session(("BTC/USD", "MATIC/USD"))
    session.resubscribe([Subscription("book", "MATIC/USD")], 0)
    assert [f["method"] for f in sent(session)] == ["unsubscribe", "subscribe"]
    feed(session, rejection("MATIC/USD", 1).replace(b'"subscribe"', b'"unsubscribe"'))
    assert session.refused == {}
    feed(session, rejection("MATIC/USD", 2))
    assert session.refused == {
        Subscription("book", "MATIC/USD"): "Currency pair not supported MATIC/USD"
    }


def test_warnings_are_noticed_once() -> None:
    session = make_session()
    ack = SUBSCRIBE_ACK.replace(
        b'"success": true',
        b'"success": true, "warnings": ["timestamp is deprecated, use interval_begin"]',
    )
    feed(session, ack, ack)
    assert session.notices == ["warning: timestamp is deprecated, use interval_begin"]


def test_keepalive_queues_an_app_ping() -> None:
    session = make_session()
    session.keepalive(0)
    session.keepalive(0)
    assert session.take_frames() == ['{"method":"ping","req_id":1}', '{"method":"ping","req_id":2}']


def test_resubscribe_queues_unsubscribe_then_subscribe() -> None:
    session = make_session(("BTC/USD",))
    session.resubscribe([Subscription("book", "BTC/USD"), Subscription("price", "BTC/USD")], 0)
    assert sent(session) == [
        {
            "method": "unsubscribe",
            "params": {"channel": "ticker", "symbol": ["BTC/USD"], "event_trigger": "bbo"},
            "req_id": 1,
        },
        {
            "method": "unsubscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
            "req_id": 2,
        },
        {
            "method": "subscribe",
            "params": {"channel": "ticker", "symbol": ["BTC/USD"], "event_trigger": "bbo"},
            "req_id": 3,
        },
        {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
            "req_id": 4,
        },
    ]


def test_unknown_messages_are_ignored_and_counted() -> None:
    session = make_session()
    out = feed(
        session,
        b'{"channel":"level3","type":"snapshot","data":[{"symbol":"BTC/USD"}]}',
        b'{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[]}}',
        b'{"method":"frobnicate","success":true}',
        b'{"channel":"book","type":"mystery","data":[]}',
        b'{"channel":"ticker","type":"update","data":[{"symbol":"ETH/USD","bid":1,"bid_qty":1,'
        b'"ask":2,"ask_qty":1}]}',  # a symbol this session did not subscribe
        b"{}",
    )
    assert out == []
    assert session.stats.ignored == 6
    (quote,) = feed(session, TICKER.replace(b'"symbol"', b'"new_field":{"a":[1]},"symbol"'))
    assert isinstance(quote, Quote)


@pytest.mark.parametrize(
    "frame",
    [
        b"this is {not json",
        b'[1234, {"a": []}, "book-10", "XBT/USD"]',  # v1 array frames are not v2
        b'{"channel":"ticker","type":"update","data":[{"symbol":"ALGO/USD","bid":"x"}]}',
        b'{"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD","bids":[],"asks":[]}]}',
        b'{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","price":1}]}',
        b'{"channel":"ohlc","type":"update","timestamp":"yesterday","data":[]}',
        b'{"channel":"book","type":"update","data":{"symbol":"MATIC/USD"}}',
    ],
)
def test_garbage_raises_for_the_driver_to_count(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        feed(make_session(), frame)


@pytest.mark.parametrize("channel", [b"book", b"ticker", b"trade", b"ohlc", b"status"])
def test_data_channel_without_data_is_a_protocol_error(channel: bytes) -> None:
    with pytest.raises(ProtocolError):
        feed(make_session(), b'{"channel":"' + channel + b'","type":"update"}')


# -- session: market data ---------------------------------------------------------------------


def test_ticker_from_the_reference() -> None:
    (quote,) = feed(make_session(), TICKER)
    assert quote == Quote(
        exchange="kraken",
        symbol="ALGO/USD",
        bid="0.10025",
        ask="0.10036",
        bid_size="740.00000000",
        ask_size="1361.44813783",
        timestamp=1695632671742,
        exchange_time=1695632671742,
        received_ns=RECEIVED_NS,
    )


def test_one_sided_ticker_gives_no_quote() -> None:
    session = make_session()
    assert feed(session, TICKER.replace(b'"bid": 0.10025', b'"bid": null')) == []
    assert session.stats.ignored == 1


def test_trade_from_the_reference() -> None:
    (trade,) = feed(make_session(), TRADE)
    assert trade == Trade(
        exchange="kraken",
        symbol="MATIC/USD",
        price="0.5117",
        size="40.00000000",
        side="sell",
        id="4665906",
        timestamp=1695628177708,
        exchange_time=1695628177708,
        received_ns=RECEIVED_NS,
        sequence=4665906,
    )


def test_ohlc_from_the_reference() -> None:
    (candle,) = feed(make_session(), OHLC)
    assert candle == Candle(
        exchange="kraken",
        symbol="MATIC/USD",
        interval="5m",
        start=1696436700000,
        open="0.5624",
        high="0.5628",
        low="0.5622",
        close="0.5627",
        volume="30927.68066226",
        closed=False,  # 16:26:30 is inside the 16:25-16:30 bar
        timestamp=1696436790524,
        exchange_time=1696436790524,
        received_ns=RECEIVED_NS,
    )


def test_ohlc_snapshot_gives_each_symbols_newest_bar_closed_by_time() -> None:
    def bar(begin: str, close: str) -> str:
        return (
            f'{{"symbol":"BTC/USD","open":1,"high":2,"low":0.5,"close":{close},"trades":3,'
            f'"volume":10,"vwap":1,"interval_begin":"{begin}","interval":1}}'
        )

    frame = (
        '{"channel":"ohlc","type":"snapshot","timestamp":"2023-10-04T16:27:00.000000Z","data":['
        f"{bar('2023-10-04T16:25:00.000000000Z', '1.5')},"
        f"{bar('2023-10-04T16:26:00.000000000Z', '1.6')},"
        f"{bar('2023-10-04T16:24:00.000000000Z', '1.4')}]}}"
    ).encode()
    (candle,) = feed(make_session(), frame)
    assert isinstance(candle, Candle)
    assert (candle.interval, candle.start, candle.close, candle.volume) == (
        "1m",
        1696436760000,
        "1.6",
        "10.00000000",
    )
    assert candle.closed  # 16:26 + 1 min <= 16:27


def test_book_snapshot_and_update_from_the_reference() -> None:
    """The reference trims the snapshot to 2 levels per side, so its checksum (of the full
    10-level book) cannot match: put the checksum of the trimmed book in, as Kraken would."""
    session = make_session()
    bids = [("0.5666", "4831.75496356"), ("0.5665", "6658.22734739")]
    asks = [("0.5668", "4410.79769741"), ("0.5669", "4655.40412487")]
    snapshot = BOOK_SNAPSHOT.replace(b"2439117997", str(oracle(asks, bids)).encode())
    (book,) = feed(session, snapshot)
    assert book == Book(
        exchange="kraken",
        symbol="MATIC/USD",
        bids=bids,
        asks=asks,
        depth=10,
        timestamp=1696613755440,
        exchange_time=1696613755440,
        received_ns=RECEIVED_NS,
    )
    bids = [*bids, ("0.5657", "1098.39475580")]  # 7 decimals on the wire, 8 in the checksum
    update = BOOK_UPDATE.replace(b"2114181697", str(oracle(asks, bids)).encode())
    (book,) = feed(session, update)
    assert isinstance(book, Book)
    assert (book.bids, book.asks) == (bids, asks)
    assert session.stats.checksum_failures == 0


def test_verbatim_trimmed_snapshot_fails_its_checksum() -> None:
    session = make_session()
    out = feed(session, BOOK_SNAPSHOT)
    bids = [("0.5666", "4831.75496356"), ("0.5665", "6658.22734739")]
    asks = [("0.5668", "4410.79769741"), ("0.5669", "4655.40412487")]
    reason = f"checksum mismatch: computed {oracle(asks, bids)}, Kraken sent 2439117997"
    assert statuses(out) == [("invalid", reason), ("resyncing", reason)]
    assert session.stats.checksum_failures == 1


BTC_BIDS = levels(V2_BIDS)
BTC_ASKS = levels(V2_ASKS)


def test_checksum_failure_invalidates_resubscribes_and_recovers() -> None:
    session = make_session(("BTC/USD",))
    (book,) = feed(session, book_frame("snapshot", "BTC/USD", BTC_BIDS, BTC_ASKS, V2_CHECKSUM))
    assert isinstance(book, Book)
    # A good update: the best ask's size changes.
    asks = [("45285.2", "0.50000000"), *BTC_ASKS[1:]]
    (book,) = feed(
        session, book_frame("update", "BTC/USD", [], [("45285.2", "0.5")], oracle(asks, BTC_BIDS))
    )
    assert isinstance(book, Book)
    assert book.asks[0] == ("45285.2", "0.50000000")
    # A bad one: the checksum Kraken sends is not that of our book.
    out = feed(session, book_frame("update", "BTC/USD", [("45283.5", "0.2")], [], 12345))
    assert [type(e) for e in out] == [FeedStatus, FeedStatus]
    assert [(e.state, e.scope, e.symbol) for e in out if isinstance(e, FeedStatus)] == [
        ("invalid", "book", "BTC/USD"),
        ("resyncing", "book", "BTC/USD"),
    ]
    assert "Kraken sent 12345" in statuses(out)[0][1]
    assert session.stats.checksum_failures == 1
    assert session.stats.book_resyncs == 1
    assert sent(session) == [
        {
            "method": "unsubscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
            "req_id": 1,
        },
        {
            "method": "subscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
            "req_id": 2,
        },
    ]
    # Updates in flight are dropped silently: nothing published, no second "invalid".
    assert feed(session, book_frame("update", "BTC/USD", [("45283.5", "0.3")], [], 1)) == []
    assert session.stats.checksum_failures == 1
    out = feed(session, book_frame("snapshot", "BTC/USD", BTC_BIDS, BTC_ASKS, V2_CHECKSUM))
    assert statuses(out) == [("valid", "snapshot received")]
    assert isinstance(out[1], Book)
    assert out[1].bids == BTC_BIDS


def test_book_is_truncated_to_the_subscribed_depth_before_checksumming() -> None:
    """Kraken drops levels pushed beyond the depth without a delete; after the new best bid is
    deleted again, the dropped worst bid must not come back into the checksum."""
    session = make_session(("BTC/USD",))
    feed(session, book_frame("snapshot", "BTC/USD", BTC_BIDS, BTC_ASKS, V2_CHECKSUM))
    bids = [("45284.0", "1.00000000"), *BTC_BIDS[:9]]
    (book,) = feed(
        session, book_frame("update", "BTC/USD", [("45284.0", "1")], [], oracle(BTC_ASKS, bids))
    )
    assert isinstance(book, Book)
    assert book.bids == bids
    bids = BTC_BIDS[:9]
    (book,) = feed(
        session, book_frame("update", "BTC/USD", [("45284.0", "0")], [], oracle(BTC_ASKS, bids))
    )
    assert isinstance(book, Book)
    assert book.bids == bids
    assert session.stats.checksum_failures == 0


def test_published_book_holds_the_configured_depth() -> None:
    session = make_session(("BTC/USD",), depth=3)
    (book,) = feed(session, book_frame("snapshot", "BTC/USD", BTC_BIDS, BTC_ASKS, V2_CHECKSUM))
    assert isinstance(book, Book)
    assert (book.depth, book.bids, book.asks) == (3, BTC_BIDS[:3], BTC_ASKS[:3])


def test_crossed_book_is_never_published() -> None:
    session = make_session(("BTC/USD",))
    feed(session, book_frame("snapshot", "BTC/USD", BTC_BIDS, BTC_ASKS, V2_CHECKSUM))
    bids = [("45285.2", "1.00000000"), *BTC_BIDS[:9]]  # locked with the best ask
    out = feed(
        session, book_frame("update", "BTC/USD", [("45285.2", "1")], [], oracle(BTC_ASKS, bids))
    )
    assert statuses(out) == [("invalid", "crossed book"), ("resyncing", "crossed book")]
    assert session.stats.crossed_books == 1
    assert [f["method"] for f in sent(session)] == ["unsubscribe", "subscribe"]
    crossed = book_frame("snapshot", "BTC/USD", bids, BTC_ASKS, oracle(BTC_ASKS, bids))
    out = feed(session, crossed)
    assert statuses(out) == [
        ("invalid", "crossed book in snapshot"),
        ("resyncing", "crossed book in snapshot"),
    ]
    assert not any(isinstance(e, Book) for e in out)


def test_updates_before_the_first_snapshot_are_dropped() -> None:
    session = make_session(("BTC/USD",))
    assert feed(session, book_frame("update", "BTC/USD", [("1", "1")], [], 1)) == []
    assert session.stats.checksum_failures == 0


def test_watchdog_resubscribe_announces_resyncing_and_waits_for_a_snapshot() -> None:
    session = make_session(("BTC/USD",))
    feed(session, book_frame("snapshot", "BTC/USD", BTC_BIDS, BTC_ASKS, V2_CHECKSUM))
    session.resubscribe([Subscription("book", "BTC/USD")], 0)
    (resyncing,) = session.take_events()
    assert isinstance(resyncing, FeedStatus)
    assert (resyncing.scope, resyncing.state) == ("book", "resyncing")
    assert feed(session, book_frame("update", "BTC/USD", [("45283.5", "1")], [], 1)) == []
    out = feed(session, book_frame("snapshot", "BTC/USD", BTC_BIDS, BTC_ASKS, V2_CHECKSUM))
    assert [type(e) for e in out] == [FeedStatus, Book]
    assert out[0].state == "valid"


def test_one_message_may_carry_several_symbols() -> None:
    session = make_session(("BTC/USD", "ETH/USD"), channels=("trades",))
    frame = (
        b'{"channel":"trade","type":"update","data":['
        b'{"symbol":"BTC/USD","side":"buy","price":64000.1,"qty":0.5,"ord_type":"limit","trade_id":1,'
        b'"timestamp":"2023-09-25T07:49:37.708706Z"},'
        b'{"symbol":"ETH/USD","side":"sell","price":3000,"qty":2,"ord_type":"market","trade_id":9,'
        b'"timestamp":"2023-09-25T07:49:37.708706Z"}]}'
    )
    trades = feed(session, frame)
    assert [(t.symbol, t.price, t.size, t.side) for t in trades if isinstance(t, Trade)] == [
        ("BTC/USD", "64000.1", "0.50000000", "buy"),
        ("ETH/USD", "3000.00", "2.00000000", "sell"),
    ]


# -- replay -----------------------------------------------------------------------------------


def test_replay_session_takes_every_listed_symbol_and_learns_depth_from_acks() -> None:
    adapter = make_adapter(("BTC/USD",), depth=10)
    adapter.load_instruments(answer(adapter, ASSET_PAIRS))
    session = adapter.new_session(ConnectionPlan(url="wss://ws.kraken.com/v2", subscriptions=()))
    session.start(0)
    assert session.take_frames() == []
    out = feed(session, TICKER, TRADE, OHLC, TICKER.replace(b"ALGO/USD", b"NOPE/USD"))
    assert [type(e) for e in out] == [Quote, Trade, Candle]
    assert session.stats.ignored == 1
    # The capture subscribed BTC/USD at depth 25: the ack says so, the book keeps 25 levels.
    ack = SUBSCRIBE_ACK.replace(b'"depth": 10', b'"depth": 25').replace(b"ALGO/USD", b"BTC/USD")
    feed(session, ack)
    bids = [(f"{45000 - i}.0", "1.00000000") for i in range(12)]
    asks = [(f"{45001 + i}.0", "1.00000000") for i in range(12)]
    feed(session, book_frame("snapshot", "BTC/USD", bids[:11], asks, oracle(asks, bids)))
    # Deleting the best bid brings the 11th into the top 10: only a 25-deep book holds it.
    (book,) = feed(
        session, book_frame("update", "BTC/USD", [("45000.0", "0")], [], oracle(asks, bids[1:11]))
    )
    assert isinstance(book, Book)
    assert session.stats.checksum_failures == 0


def test_replay_without_instruments_keeps_numbers_as_written() -> None:
    adapter = make_adapter()
    session = adapter.new_session(ConnectionPlan(url="wss://ws.kraken.com/v2", subscriptions=()))
    out = feed(session, TICKER, b'{"channel":"trade","type":"update","data":[]}')
    (quote,) = out
    assert isinstance(quote, Quote)
    assert (quote.symbol, quote.bid_size, quote.ask_size) == ("ALGO/USD", "740.0", "1361.44813783")


# -- properties -------------------------------------------------------------------------------

_PRICE_TICKS = st.integers(0, 99)
_QTY = st.one_of(st.just(0), st.integers(1, 3 * 10**8))  # deletes are frequent


def _price(ticks: int) -> str:
    return f"{ticks // 10}.{ticks % 10}"


def _qty(units: int) -> str:
    return f"{units // 10**8}.{units % 10**8:08d}"


@settings(max_examples=50, deadline=None)
@given(
    snapshot_bids=st.dictionaries(_PRICE_TICKS, st.integers(1, 3 * 10**8), max_size=12),
    snapshot_asks=st.dictionaries(_PRICE_TICKS, st.integers(1, 3 * 10**8), max_size=12),
    rounds=st.lists(
        st.lists(st.tuples(st.booleans(), _PRICE_TICKS, _QTY), min_size=1, max_size=6),
        max_size=15,
    ),
)
def test_books_follow_a_model_of_kraken(
    snapshot_bids: dict[int, int],
    snapshot_asks: dict[int, int],
    rounds: list[list[tuple[bool, int, int]]],
) -> None:
    """Property: Kraken's rules (apply in order, delete zeros, truncate to depth 10) applied to
    a plain dict model give the checksum the session verifies and the book it publishes."""
    session = make_session(("BTC/USD",), depth=10)
    # Bids live in 45000.0-45009.9, asks in 45010.0-45019.9: never crossed. A snapshot may
    # carry more than 10 levels; the session keeps the best 10.
    snapshot_bid_items = [(450_000 + t, q) for t, q in snapshot_bids.items()]
    snapshot_ask_items = [(450_100 + t, q) for t, q in snapshot_asks.items()]
    bids, asks = dict(snapshot_bid_items), dict(snapshot_ask_items)

    def top(side: dict[int, int], best_high: bool) -> list[tuple[str, str]]:
        keys = sorted(side, reverse=best_high)[:10]
        for key in set(side) - set(keys):
            del side[key]  # beyond the depth: Kraken forgets it
        return [(_price(k), _qty(side[k])) for k in keys]

    def wire(items: list[tuple[int, int]]) -> list[tuple[str, str]]:
        return [(short(_price(k)), short(_qty(q))) for k, q in items]

    model_bids, model_asks = top(bids, True), top(asks, False)
    frame = book_frame(
        "snapshot",
        "BTC/USD",
        wire(snapshot_bid_items),
        wire(snapshot_ask_items),
        oracle(model_asks, model_bids),
    )
    out = feed(session, frame)
    for changes in rounds:
        bid_changes: list[tuple[int, int]] = []
        ask_changes: list[tuple[int, int]] = []
        for is_bid, ticks, qty in changes:
            side, key = (bids, 450_000 + ticks) if is_bid else (asks, 450_100 + ticks)
            (bid_changes if is_bid else ask_changes).append((key, qty))
            if qty:
                side[key] = qty
            else:
                side.pop(key, None)
        model_bids, model_asks = top(bids, True), top(asks, False)
        frame = book_frame(
            "update",
            "BTC/USD",
            wire(bid_changes),
            wire(ask_changes),
            oracle(model_asks, model_bids),
        )
        out += feed(session, frame)
    assert not any(isinstance(e, FeedStatus) for e in out), statuses(out)
    books = [e for e in out if isinstance(e, Book)]
    assert len(books) == len(rounds) + 1
    assert (books[-1].bids, books[-1].asks) == (model_bids, model_asks)


@settings(max_examples=50, deadline=None)
@given(
    books=st.lists(
        st.tuples(
            st.lists(
                st.tuples(
                    st.sampled_from(["1.0", "0.5", "10.25"]),
                    st.sampled_from(["0.00100000", "2.00000000"]),
                ),
                max_size=12,
            ),
            st.lists(
                st.tuples(
                    st.sampled_from(["2.0", "3.5"]), st.sampled_from(["1.00000000", "0.10000000"])
                ),
                max_size=12,
            ),
        ),
        max_size=10,
    ),
    limit=st.integers(1, 50),
)
def test_checksummer_agrees_with_book_checksum(
    books: list[tuple[list[tuple[str, str]], list[tuple[str, str]]]], limit: int
) -> None:
    checksummer = Checksummer(limit=limit)
    for asks, bids in books:
        assert checksummer(asks, bids) == book_checksum(asks, bids) == oracle(asks, bids)
