"""The simplex adapter, pure: verbatim frames from docs/simplex-protocol.md in, events out."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbd.errors import ConfigError, ProtocolError, RestError
from arbd.exchange.adapter import AdapterSettings, ConnectionPlan, HttpRequest, HttpResponse
from arbd.model import CHANNELS, Book, Candle, Event, FeedStatus, Quote, Subscription, Trade
from arbd_simplex.adapter import SimplexAdapter, SimplexSession
from arbd_simplex.fake import SimplexFake

# Verbatim from docs/simplex-protocol.md.
SUBSCRIBED = b'{"op":"subscribed","args":["trades:BTC-USDT"],"id":1}'
UNSUBSCRIBED = b'{"op":"unsubscribed","args":["book:BTC-USDT"],"id":2}'
ERROR = b'{"op":"error","code":"bad_symbol","msg":"unknown symbol FOO-BAR","id":1}'
PONG = b'{"op":"pong","ts":1700000000000}'
SHUTDOWN = b'{"op":"shutdown","msg":"server restarting"}'
PRICE = (
    b'{"ch":"price","s":"BTC-USDT","seq":41,"ts":1700000000123,"b":"64000.10","B":"0.5",'
    b'"a":"64000.20","A":"1.25"}'
)
TRADE = (
    b'{"ch":"trades","s":"BTC-USDT","seq":7,"ts":1700000000124,"p":"64000.15","q":"0.010",'
    b'"side":"buy","id":"7"}'
)
SNAPSHOT = (
    b'{"ch":"book","s":"BTC-USDT","type":"snapshot","seq":100,"ts":1700000000125,'
    b'"bids":[["64000.10","0.5"]],"asks":[["64000.20","1.25"]]}'
)
DELTA = (
    b'{"ch":"book","s":"BTC-USDT","type":"delta","seq":101,"prev":100,"ts":1700000000126,'
    b'"bids":[["64000.10","0"]],"asks":[]}'
)
CANDLE = (
    b'{"ch":"candles","s":"BTC-USDT","ts":1700000000127,"start":1699999980000,"o":"1","h":"2",'
    b'"l":"0.5","c":"1.5","v":"10","closed":false}'
)
INSTRUMENTS = (
    b'{"instruments":[{"symbol":"BTC-USDT","base":"BTC","quote":"USDT","tick":"0.01",'
    b'"lot":"0.0001"}]}'
)
RECEIVED_NS = 1_700_000_000_500_000_000


def make_adapter(symbols: tuple[str, ...] = ("BTC/USDT",), depth: int = 20) -> SimplexAdapter:
    return SimplexAdapter(
        AdapterSettings(
            ws_url="ws://127.0.0.1:1/ws",
            rest_url="http://127.0.0.1:1/",
            symbols=symbols,
            channels=CHANNELS,
            book_depth=depth,
        )
    )


def answer(adapter: SimplexAdapter, body: bytes, status: int = 200) -> list[HttpResponse]:
    (request,) = adapter.instrument_requests()
    return [HttpResponse(request=request, status=status, body=body, received_ns=RECEIVED_NS)]


def make_session(
    symbols: tuple[str, ...] = ("BTC/USDT",), depth: int = 20, load: bool = True
) -> SimplexSession:
    adapter = make_adapter(symbols, depth)
    if load:
        adapter.load_instruments(answer(adapter, INSTRUMENTS))
    (plan,) = adapter.plan_connections(adapter.subscriptions())
    return adapter.new_session(plan)


def feed(session: SimplexSession, *frames: bytes) -> list[Event]:
    out: list[Event] = []
    for frame in frames:
        session.receive(frame, True, RECEIVED_NS, out)
    return out


def sent(session: SimplexSession) -> list[dict[str, object]]:
    frames = session.take_frames()
    assert all(isinstance(f, str) for f in frames)
    return [json.loads(f) for f in frames]


# -- adapter ----------------------------------------------------------------------------------


def test_spec_is_the_documented_one() -> None:
    spec = SimplexAdapter.spec
    assert (spec.id, spec.max_streams_per_connection, spec.stale_action) == (
        "simplex",
        50,
        "resubscribe",
    )
    assert spec.keepalive.app_ping_interval == 15.0
    assert spec.default_symbols == ("BTC/USDT", "ETH/USDT")
    assert not spec.enabled_by_default


def test_load_instruments_parses_precision() -> None:
    adapter = make_adapter()
    (request,) = adapter.instrument_requests()
    assert request == HttpRequest(url="http://127.0.0.1:1/api/instruments", purpose="instruments")
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    btc = adapter.instruments["BTC/USDT"]
    assert (btc.native, btc.base, btc.quote, btc.tick_size, btc.lot_size) == (
        "BTC-USDT",
        "BTC",
        "USDT",
        "0.01",
        "0.0001",
    )
    assert (btc.price_precision, btc.size_precision) == (2, 4)


def test_unknown_configured_symbol_is_a_config_error_with_a_suggestion() -> None:
    adapter = make_adapter(("BTC/USDC",))
    with pytest.raises(ConfigError) as error:
        adapter.load_instruments(answer(adapter, INSTRUMENTS))
    assert "'BTC/USDC' on simplex" in str(error.value)
    assert "did you mean BTC/USDT" in str(error.value)
    assert adapter.instruments == {}


def test_bad_instrument_answers() -> None:
    adapter = make_adapter()
    with pytest.raises(RestError) as error:
        adapter.load_instruments(answer(adapter, b"{}", status=503))
    assert error.value.status == 503
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b'{"instruments":[{"symbol":1}]}'))
    with pytest.raises(RestError):
        adapter.load_instruments([])


# -- session: control frames ------------------------------------------------------------------


def test_start_sends_one_subscribe_with_every_stream() -> None:
    session = make_session(("BTC/USDT",))
    session.start(0)
    assert sent(session) == [
        {
            "op": "subscribe",
            "args": ["book:BTC-USDT", "candles:BTC-USDT", "price:BTC-USDT", "trades:BTC-USDT"],
            "id": 1,
        }
    ]


def test_acks_pong_and_shutdown_are_understood() -> None:
    session = make_session()
    session.start(0)
    assert feed(session, SUBSCRIBED, PONG, UNSUBSCRIBED) == []
    assert session.acknowledged == {"trades:BTC-USDT"}
    assert session.last_pong_ts == 1700000000000
    assert session.reconnect_reason is None
    assert feed(session, SHUTDOWN) == []
    assert session.reconnect_reason == "server shutdown"
    assert session.stats.ignored == 0
    assert session.stats.errors_reported == 0


def test_error_frame_is_a_notice_naming_the_request() -> None:
    session = make_session()
    session.start(0)
    assert feed(session, ERROR) == []
    assert session.stats.errors_reported == 1
    (notice,) = session.notices
    assert notice.startswith("error bad_symbol: unknown symbol FOO-BAR (request 1:")
    assert session.refused == {}  # FOO-BAR was not in the request
    assert "subscribe book:BTC-USDT" in notice


def test_keepalive_queues_an_app_ping() -> None:
    session = make_session()
    session.keepalive(1_700_000_000_000_999_999)
    assert session.take_frames() == ['{"op":"ping","ts":1700000000000}']


def test_unknown_ops_channels_and_fields_are_ignored_not_errors() -> None:
    session = make_session()
    out = feed(
        session,
        b'{"op":"welcome","motd":"hi"}',
        b'{"ch":"funding","s":"BTC-USDT","rate":"0.01"}',
        b'{"ch":"price","s":"ETH-USDT","seq":1,"b":"1","B":"1","a":"2","A":"1"}',  # not ours
        b"{}",
    )
    assert out == []
    assert session.stats.ignored == 4
    out = feed(session, PRICE.replace(b'"seq"', b'"extra":[1,2],"seq"'))
    assert isinstance(out[0], Quote)


@pytest.mark.parametrize(
    "frame",
    [
        b"this is {not json",
        b"[1,2]",
        b'{"ch":"price","s":"BTC-USDT","seq":"forty-one"}',
        b'{"ch":"book","s":"BTC-USDT","type":"snapshot","seq":1,"bids":[["1"]],"asks":[]}',
    ],
)
def test_garbage_raises_for_the_driver_to_count(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        feed(make_session(), frame)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"ch":"price","s":"BTC-USDT","seq":41,"b":"1","a":"2"}',
        b'{"ch":"trades","s":"BTC-USDT","seq":7,"q":"1"}',
        b'{"ch":"candles","s":"BTC-USDT","start":1,"o":"1"}',
        b'{"ch":"book","s":"BTC-USDT","type":"snapshot","bids":[],"asks":[]}',
        b'{"ch":"price","seq":41}',
    ],
)
def test_incomplete_data_frames_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        feed(make_session(), frame)


# -- session: data ----------------------------------------------------------------------------


def test_price_trade_candle_from_the_spec() -> None:
    quote, trade, candle = feed(make_session(), PRICE, TRADE, CANDLE)
    assert quote == Quote(
        exchange="simplex",
        symbol="BTC/USDT",
        bid="64000.10",
        ask="64000.20",
        bid_size="0.5",
        ask_size="1.25",
        timestamp=1700000000123,
        exchange_time=1700000000123,
        received_ns=RECEIVED_NS,
        sequence=41,
    )
    assert trade == Trade(
        exchange="simplex",
        symbol="BTC/USDT",
        price="64000.15",
        size="0.010",
        side="buy",
        id="7",
        timestamp=1700000000124,
        exchange_time=1700000000124,
        received_ns=RECEIVED_NS,
        sequence=7,
    )
    assert candle == Candle(
        exchange="simplex",
        symbol="BTC/USDT",
        interval="1m",
        start=1699999980000,
        open="1",
        high="2",
        low="0.5",
        close="1.5",
        volume="10",
        closed=False,
        timestamp=1700000000127,
        exchange_time=1700000000127,
        received_ns=RECEIVED_NS,
    )


def test_missing_ts_falls_back_to_the_receive_time() -> None:
    (quote,) = feed(make_session(), PRICE.replace(b'"ts":1700000000123,', b""))
    assert isinstance(quote, Quote)
    assert (quote.timestamp, quote.exchange_time) == (RECEIVED_NS // 1_000_000, None)


def test_snapshot_then_delta_from_the_spec() -> None:
    session = make_session()
    snapshot, delta = feed(session, SNAPSHOT, DELTA)
    assert snapshot == Book(
        exchange="simplex",
        symbol="BTC/USDT",
        bids=[("64000.10", "0.5")],
        asks=[("64000.20", "1.25")],
        depth=20,
        timestamp=1700000000125,
        exchange_time=1700000000125,
        received_ns=RECEIVED_NS,
        sequence=100,
    )
    assert isinstance(delta, Book)
    assert (delta.bids, delta.asks, delta.sequence) == ([], [("64000.20", "1.25")], 101)


def test_published_books_hold_the_configured_depth_best_first() -> None:
    session = make_session(depth=2)
    bids = [[f"{100 - i}.00", "1"] for i in range(5)]
    asks = [[f"{101 + i}.00", "1"] for i in range(5)]
    frame = json.dumps(
        {
            "ch": "book",
            "s": "BTC-USDT",
            "type": "snapshot",
            "seq": 5,
            "bids": bids[::-1],
            "asks": asks[::-1],
        }
    ).encode()
    (book,) = feed(session, frame)
    assert isinstance(book, Book)
    assert (book.bids, book.asks, book.depth) == (
        [("100.00", "1"), ("99.00", "1")],
        [("101.00", "1"), ("102.00", "1")],
        2,
    )


def delta(seq: int, prev: int, bids: str = "[]", asks: str = "[]") -> bytes:
    return (
        f'{{"ch":"book","s":"BTC-USDT","type":"delta","seq":{seq},"prev":{prev},'
        f'"ts":1700000000200,"bids":{bids},"asks":{asks}}}'
    ).encode()


def statuses(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.state, e.reason) for e in events if isinstance(e, FeedStatus)]


def test_sequence_gap_invalidates_once_resyncs_and_recovers() -> None:
    session = make_session()
    feed(session, SNAPSHOT)
    out = feed(session, delta(106, 105))
    assert statuses(out) == [
        ("invalid", "sequence gap: delta prev 105 after seq 100"),
        ("resyncing", "sequence gap: delta prev 105 after seq 100"),
    ]
    assert all(isinstance(e, FeedStatus) and e.scope == "book" for e in out)
    assert session.stats.sequence_gaps == 1
    assert session.stats.book_resyncs == 1
    assert sent(session) == [
        {"op": "unsubscribe", "args": ["book:BTC-USDT"], "id": 1},
        {"op": "subscribe", "args": ["book:BTC-USDT"], "id": 2},
    ]
    # Deltas in flight are dropped silently: nothing published, no second "invalid".
    assert feed(session, delta(107, 106), delta(109, 108)) == []
    assert session.stats.sequence_gaps == 1
    out = feed(session, SNAPSHOT.replace(b'"seq":100', b'"seq":120'))
    assert statuses(out) == [("valid", "snapshot received")]
    assert isinstance(out[1], Book)
    assert out[1].sequence == 120
    (book,) = feed(session, delta(121, 120))
    assert isinstance(book, Book)


def test_crossed_book_is_never_published() -> None:
    session = make_session()
    feed(session, SNAPSHOT)
    out = feed(session, delta(101, 100, bids='[["64000.30","1"]]'))
    assert statuses(out) == [("invalid", "crossed book"), ("resyncing", "crossed book")]
    assert session.stats.crossed_books == 1
    assert [f["op"] for f in sent(session)] == ["unsubscribe", "subscribe"]
    crossed = SNAPSHOT.replace(b'"64000.20","1.25"', b'"64000.10","1.25"')  # locked
    out = feed(session, crossed)
    assert statuses(out) == [("invalid", "crossed book in snapshot")] * 1 + [
        ("resyncing", "crossed book in snapshot")
    ]
    assert session.stats.crossed_books == 2
    assert not any(isinstance(e, Book) for e in out)


def test_resubscribe_queues_frames_and_waits_for_a_snapshot() -> None:
    session = make_session()
    feed(session, SNAPSHOT)
    session.resubscribe([Subscription("book", "BTC/USDT"), Subscription("price", "BTC/USDT")], 0)
    assert sent(session) == [
        {"op": "unsubscribe", "args": ["book:BTC-USDT", "price:BTC-USDT"], "id": 1},
        {"op": "subscribe", "args": ["book:BTC-USDT", "price:BTC-USDT"], "id": 2},
    ]
    (resyncing,) = session.take_events()  # not served until the snapshot: announced
    assert isinstance(resyncing, FeedStatus)
    assert (resyncing.scope, resyncing.state) == ("book", "resyncing")
    assert feed(session, DELTA) == []  # the book waits for its snapshot
    out = feed(session, SNAPSHOT)
    assert [type(e) for e in out] == [FeedStatus, Book]
    assert out[0].state == "valid"


def test_replay_session_takes_every_listed_symbol() -> None:
    adapter = make_adapter()
    adapter.load_instruments(answer(adapter, INSTRUMENTS))
    session = adapter.new_session(ConnectionPlan(url="ws://x/ws", subscriptions=()))
    session.start(0)
    assert session.take_frames() == []
    out = feed(session, PRICE, SNAPSHOT, DELTA, PRICE.replace(b"BTC-USDT", b"ETH-USDT"))
    assert [type(e) for e in out] == [Quote, Book, Book]
    assert session.stats.ignored == 1


def test_replay_without_instruments_maps_symbols_mechanically() -> None:
    adapter = make_adapter()
    session = adapter.new_session(ConnectionPlan(url="ws://x/ws", subscriptions=()))
    out = feed(session, PRICE.replace(b"BTC-USDT", b"ETH-USDT"), b'{"ch":"price","s":"X"}')
    assert [e.symbol for e in out] == ["ETH/USDT"]
    assert session.stats.ignored == 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 30), depth=st.integers(1, 12))
def test_books_follow_the_fake_exactly(seed: int, rounds: int, depth: int) -> None:
    """Property: fed the fake's frames, the session's published book is the fake's book."""
    fake = SimplexFake(("BTC/USDT",), seed=seed, depth=depth, clock=lambda: 1_700_000_000_000)
    session = make_session(depth=depth)
    out = feed(session, fake.snapshot_frame("BTC/USDT").encode())
    for _ in range(rounds):
        out += feed(session, *(frame.encode() for _, _, frame in fake.next_round()))
    assert not any(isinstance(e, FeedStatus) for e in out)
    books = [e for e in out if isinstance(e, Book)]
    assert len(books) == rounds + 1
    expected = json.loads(fake.snapshot_frame("BTC/USDT"))
    last = books[-1]
    assert [list(level) for level in last.bids] == expected["bids"]
    assert [list(level) for level in last.asks] == expected["asks"]
    assert last.sequence == expected["seq"]
    quotes = [e for e in out if isinstance(e, Quote)]
    assert [q.sequence for q in quotes] == list(range(1, rounds + 1))
    assert (quotes[-1].bid, quotes[-1].ask) == (last.bids[0][0], last.asks[0][0])
