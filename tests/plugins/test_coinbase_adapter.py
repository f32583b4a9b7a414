"""The Coinbase Advanced Trade adapter, pure: reference payloads in, events and frames out.

Payloads marked "verbatim" are copied from the shared exchange-protocols reference §2.1 (Coinbase
docs examples, the nautilus ``subscriptions`` fixture, the legacy error frame). Every docs
example carries ``"sequence_num": 0``; since the counter is one per connection, tests renumber
them with ``seq()`` before feeding several to one session.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from arbd.errors import ConfigError, ProtocolError, RestError
from arbd.exchange.adapter import AdapterSettings, ConnectionPlan, HttpRequest, HttpResponse
from arbd.model import CHANNELS, Book, Candle, Event, FeedStatus, Quote, Subscription, Trade
from arbd_coinbase import plugin
from arbd_coinbase.adapter import CoinbaseAdapter
from arbd_coinbase.session import CoinbaseSession
from arbd_coinbase.wire import rfc3339_ms

# -- verbatim reference payloads (§2.1) -------------------------------------------------------

HEARTBEATS = b"""{
  "channel": "heartbeats", "client_id": "", "timestamp": "2023-06-23T20:31:26.122969572Z", "sequence_num": 0,
  "events": [ { "current_time": "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105", "heartbeat_counter": "3049" } ]
}"""
TICKER = b"""{
  "channel": "ticker", "client_id": "", "timestamp": "2023-02-09T20:30:37.167359596Z", "sequence_num": 0,
  "events": [ { "type": "snapshot", "tickers": [ {
        "type": "ticker", "product_id": "BTC-USD", "price": "21932.98", "volume_24_h": "16038.28770938",
        "low_24_h": "21835.29", "high_24_h": "23011.18", "low_52_w": "15460", "high_52_w": "48240",
        "price_percent_chg_24_h": "-4.15775596190603", "best_bid": "21931.98", "best_bid_quantity": "8000.21",
        "best_ask": "21933.98", "best_ask_quantity": "8038.07770938" } ] } ]
}"""
MARKET_TRADES = b"""{
  "channel": "market_trades", "client_id": "", "timestamp": "2023-02-09T20:19:35.39625135Z", "sequence_num": 0,
  "events": [ { "type": "snapshot", "trades": [ {
        "trade_id": "000000000", "product_id": "ETH-USD", "price": "1260.01", "size": "0.3",
        "side": "BUY", "time": "2019-08-14T20:42:27.265Z" } ] } ]
}"""
L2_SNAPSHOT = b"""{
  "channel": "l2_data", "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z", "sequence_num": 0,
  "events": [ { "type": "snapshot", "product_id": "BTC-USD", "updates": [
        { "side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73", "new_quantity": "0.06317902" },
        { "side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.3", "new_quantity": "0.02" } ] } ]
}"""
CANDLES = b"""{
  "channel": "candles", "client_id": "", "timestamp": "2023-06-09T20:19:35.39625135Z", "sequence_num": 0,
  "events": [ { "type": "snapshot", "candles": [ { "start": "1688998200", "high": "1867.72", "low": "1865.63",
        "open": "1867.38", "close": "1866.81", "volume": "0.20269406", "product_id": "ETH-USD" } ] } ]
}"""
SUBSCRIPTIONS = b"""{"channel":"subscriptions","client_id":"","timestamp":"2026-04-07T14:30:00.000000Z","sequence_num":0,
   "events":[{"subscriptions":{"level2":["BTC-USD"],"market_trades":["BTC-USD","ETH-USD"]}}]}"""
ERROR_LEGACY = b'{"type":"error","message":"Failed to subscribe","reason":"No channels provided"}'

# -- derived frames (same envelope, our values) -----------------------------------------------

# An update in the l2_data shape of the snapshot above: adds two offers, removes a bid.
L2_UPDATE = b"""{
  "channel": "l2_data", "client_id": "", "timestamp": "2023-02-09T20:32:50.814964855Z", "sequence_num": 0,
  "events": [ { "type": "update", "product_id": "BTC-USD", "updates": [
        { "side": "offer", "event_time": "2023-02-09T20:32:50.01136Z", "price_level": "21921.74", "new_quantity": "1.5" },
        { "side": "offer", "event_time": "2023-02-09T20:32:50.01136Z", "price_level": "21925", "new_quantity": "0.1" },
        { "side": "bid", "event_time": "2023-02-09T20:32:50.01136Z", "price_level": "21921.3", "new_quantity": "0" } ] } ]
}"""


def product(
    product_id: str,
    *,
    tick: str = "0.01",
    lot: str = "0.00000001",
    status: str = "online",
    kind: str = "SPOT",
    alias: str | None = "",
) -> dict[str, object]:
    """One products-list entry with the fields of the Advanced Trade ``Product`` schema."""
    base, _, quote = product_id.partition("-")
    entry: dict[str, object] = {
        "product_id": product_id,
        "price": "140.21",
        "base_increment": lot,
        "quote_increment": tick,
        "price_increment": tick,
        "base_name": base,
        "quote_name": quote,
        "is_disabled": False,
        "status": status,
        "trading_disabled": False,
        "product_type": kind,
        "quote_currency_id": quote,
        "base_currency_id": base,
        "base_display_symbol": base,
        "quote_display_symbol": quote,
        "product_venue": "CBE",
    }
    if alias is not None:
        entry["alias"] = alias
        entry["alias_to"] = []
    return entry


PRODUCTS = json.dumps(
    {
        "products": [
            product("BTC-USD"),
            product("ETH-USD"),
            product("BTC-USDC", alias="BTC-USD"),
            product("USDT-USDC", tick="0.0001", lot="0.01"),
            product("DOGE-USD", tick="0.00001", lot="0.1"),
            product("BTC-PERP-INTX", kind="FUTURE"),
            product("OLD-USD", status="delisted"),
        ],
        "num_products": 7,
    }
).encode()
RECEIVED_NS = 1_700_000_000_500_000_000


def seq(frame: bytes, n: int) -> bytes:
    out, count = re.subn(rb'"sequence_num": ?\d+', b'"sequence_num": %d' % n, frame)
    assert count == 1
    return out


def make_adapter(
    symbols: tuple[str, ...] = ("BTC/USD", "ETH/USD"),
    depth: int = 20,
    channels: tuple[str, ...] = CHANNELS,
) -> CoinbaseAdapter:
    return CoinbaseAdapter(
        AdapterSettings(
            ws_url=CoinbaseAdapter.spec.ws_url,
            rest_url="https://api.coinbase.com/",
            symbols=symbols,
            channels=channels,
            book_depth=depth,
        )
    )


def answer(adapter: CoinbaseAdapter, body: bytes, status: int = 200) -> list[HttpResponse]:
    (request,) = adapter.instrument_requests()
    return [HttpResponse(request=request, status=status, body=body, received_ns=RECEIVED_NS)]


def make_session(
    symbols: tuple[str, ...] = ("BTC/USD", "ETH/USD"),
    depth: int = 20,
    channels: tuple[str, ...] = CHANNELS,
) -> CoinbaseSession:
    adapter = make_adapter(symbols, depth, channels)
    adapter.load_instruments(answer(adapter, PRODUCTS))
    (plan,) = adapter.plan_connections(adapter.subscriptions())
    return adapter.new_session(plan)


def feed(session: CoinbaseSession, *frames: bytes) -> list[Event]:
    out: list[Event] = []
    for frame in frames:
        session.receive(frame, True, RECEIVED_NS, out)
    return out


def sent(session: CoinbaseSession) -> list[dict[str, object]]:
    frames = session.take_frames()
    assert all(isinstance(f, str) for f in frames)
    return [json.loads(f) for f in frames]


def statuses(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.symbol, e.state, e.reason) for e in events if isinstance(e, FeedStatus)]


def ms(text: str) -> int:
    """Reference conversion for tests (datetime keeps microseconds), in integer arithmetic."""
    return (datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


# -- adapter ----------------------------------------------------------------------------------


def test_spec() -> None:
    spec = CoinbaseAdapter.spec
    assert (spec.id, spec.ws_url, spec.rest_url) == (
        "coinbase",
        "wss://advanced-trade-ws.coinbase.com",
        "https://api.coinbase.com",
    )
    assert spec.channels == ("price", "trades", "book", "candles")
    assert spec.continuous_channels == ("price", "book")
    assert spec.keepalive.protocol_ping_interval is None  # heartbeats channel instead
    assert spec.keepalive.app_ping_interval is None
    assert spec.keepalive.idle_timeout == 30.0
    assert (spec.taker_fee_pct, spec.maker_fee_pct) == (0.6, 0.4)
    assert spec.default_symbols == ("BTC/USD", "ETH/USD")
    assert spec.enabled_by_default
    assert plugin.arbd_exchanges() == [CoinbaseAdapter]


def test_products_are_parsed_into_instruments() -> None:
    adapter = make_adapter()
    (request,) = adapter.instrument_requests()
    assert request == HttpRequest(
        url="https://api.coinbase.com/api/v3/brokerage/market/products?product_type=SPOT",
        purpose="instruments",
    )
    adapter.load_instruments(answer(adapter, PRODUCTS))
    assert sorted(adapter.instruments) == [
        "BTC/USD",
        "BTC/USDC",
        "DOGE/USD",
        "ETH/USD",
        "USDT/USDC",
    ]  # no futures, nothing delisted
    doge = adapter.instruments["DOGE/USD"]
    assert (doge.native, doge.base, doge.quote, doge.tick_size, doge.lot_size) == (
        "DOGE-USD",
        "DOGE",
        "USD",
        "0.00001",
        "0.1",
    )
    assert (doge.price_precision, doge.size_precision) == (5, 1)
    # USDC aliasing: market data for BTC-USDC is the BTC-USD book; USDT-USDC is its own.
    assert adapter.native("BTC/USDC") == "BTC-USDC"
    assert adapter.stream_id("BTC/USDC") == "BTC-USD"
    assert adapter.stream_id("USDT/USDC") == "USDT-USDC"
    assert adapter.stream_id("BTC/USD") == "BTC-USD"


def test_without_alias_fields_the_documented_usdc_rule_applies() -> None:
    body = json.dumps(
        {
            "products": [
                product(p, alias=None)
                for p in ("BTC-USD", "BTC-USDC", "EURC-USDC", "USDT-USDC", "ABC-USDC")
            ]
        }
    ).encode()
    adapter = make_adapter(("BTC/USDC",))
    adapter.load_instruments(answer(adapter, body))
    assert adapter.stream_id("BTC/USDC") == "BTC-USD"
    assert adapter.stream_id("EURC/USDC") == "EURC-USDC"
    assert adapter.stream_id("USDT/USDC") == "USDT-USDC"
    assert adapter.stream_id("ABC/USDC") == "ABC-USDC"  # no ABC-USD listed


def test_unknown_configured_symbol_is_a_config_error_with_a_suggestion() -> None:
    adapter = make_adapter(("BTC/USD", "BTC/USDX"))
    with pytest.raises(ConfigError) as error:
        adapter.load_instruments(answer(adapter, PRODUCTS))
    assert "'BTC/USDX' on coinbase" in str(error.value)
    assert "did you mean BTC/USD" in str(error.value)
    assert error.value.key == "exchanges.coinbase.symbols"
    assert adapter.instruments == {}
    with pytest.raises(ConfigError):  # delisted products are not instruments
        make_adapter(("OLD/USD",)).load_instruments(answer(adapter, PRODUCTS))


def test_bad_product_answers() -> None:
    adapter = make_adapter()
    with pytest.raises(RestError) as error:
        adapter.load_instruments(answer(adapter, b"{}", status=429))
    assert error.value.status == 429
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b'{"products":[{"product_id":1}]}'))
    with pytest.raises(ProtocolError):
        adapter.load_instruments(answer(adapter, b"<html>"))
    with pytest.raises(RestError):
        adapter.load_instruments([])


# -- control frames ---------------------------------------------------------------------------


def test_start_subscribes_heartbeats_then_one_frame_per_channel() -> None:
    session = make_session()
    session.start(0)
    assert session.take_frames() == [
        '{"type":"subscribe","channel":"heartbeats"}',
        '{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"level2"}',
        '{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"candles"}',
        '{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"ticker"}',
        '{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"market_trades"}',
    ]


def test_heartbeats_and_subscriptions_ack_are_understood() -> None:
    session = make_session()
    assert feed(session, seq(SUBSCRIPTIONS, 0), seq(HEARTBEATS, 1)) == []
    assert session.subscribed == {"level2": ["BTC-USD"], "market_trades": ["BTC-USD", "ETH-USD"]}
    assert session.heartbeat_counter == 3049
    feed(session, seq(HEARTBEATS, 2).replace(b'"3049"', b"3050"))  # AsyncAPI: an integer
    assert session.heartbeat_counter == 3050
    assert (session.stats.ignored, session.stats.errors_reported) == (0, 0)


def test_error_frames_become_notices() -> None:
    session = make_session()
    assert feed(session, ERROR_LEGACY, b'{"type":"error","message":"rate limit exceeded"}') == []
    assert session.stats.errors_reported == 2
    assert session.notices == [
        "error: Failed to subscribe (No channels provided)",
        "error: rate limit exceeded",
    ]
    assert session.refused == {}  # neither refuses a subscription


def test_an_invalid_product_error_refuses_that_products_subscriptions() -> None:
    session = make_session()
    frame = b'{"type":"error","message":"Failed to subscribe: ETH-USD is not a valid product"}'
    assert feed(session, frame) == []
    refused = sorted(session.refused)
    assert refused and all(sub.symbol == "ETH/USD" for sub in refused)
    assert {sub.channel for sub in refused} == {s.channel for s in session.plan.subscriptions}
    assert all("ETH-USD is not a valid product" in reason for reason in session.refused.values())


# -- data -------------------------------------------------------------------------------------


def test_ticker_from_the_reference() -> None:
    (quote,) = feed(make_session(), TICKER)
    when = rfc3339_ms("2023-02-09T20:30:37.167359596Z")
    assert when == 1675974637167
    assert quote == Quote(
        exchange="coinbase",
        symbol="BTC/USD",
        bid="21931.98",
        ask="21933.98",
        bid_size="8000.21",
        ask_size="8038.07770938",
        timestamp=when,
        exchange_time=when,
        received_ns=RECEIVED_NS,
        sequence=None,
    )


def test_ticker_without_best_bid_ask_is_ignored() -> None:
    legacy = re.sub(rb'(?s),\s*"best_bid".*"best_ask_quantity": "8038.07770938"', b"", TICKER)
    assert b"best_bid" not in legacy
    session = make_session()
    assert feed(session, legacy) == []
    assert session.stats.ignored == 1


def test_market_trades_from_the_reference() -> None:
    (trade,) = feed(make_session(), MARKET_TRADES)
    assert trade == Trade(
        exchange="coinbase",
        symbol="ETH/USD",
        price="1260.01",
        size="0.3",
        side="sell",  # "side refers to the makers side": a BUY maker means a selling taker
        id="000000000",
        timestamp=ms("2019-08-14T20:42:27.265Z"),
        exchange_time=ms("2019-08-14T20:42:27.265Z"),
        received_ns=RECEIVED_NS,
        sequence=0,
    )


def test_a_trade_batch_is_published_in_trade_id_order() -> None:
    trades = [
        {"trade_id": str(n), "product_id": "BTC-USD", "price": "1", "size": "1", "side": "SELL"}
        for n in (12, 10, 11)
    ]
    frame = json.dumps(
        {"channel": "market_trades", "sequence_num": 0, "events": [{"trades": trades}]}
    ).encode()
    out = feed(make_session(), frame)
    assert [(e.sequence, e.side, e.timestamp) for e in out if isinstance(e, Trade)] == [
        (10, "buy", RECEIVED_NS // 1_000_000),
        (11, "buy", RECEIVED_NS // 1_000_000),
        (12, "buy", RECEIVED_NS // 1_000_000),
    ]


def test_a_new_sessions_trade_snapshot_does_not_repeat_published_trades() -> None:
    """A subscribe is answered with recent trades: after a reconnect they were seen before."""

    def frame(kind: str, *ids: int) -> bytes:
        trades = [
            {"trade_id": str(n), "product_id": "BTC-USD", "price": "1", "size": "1", "side": "BUY"}
            for n in ids
        ]
        body = {
            "channel": "market_trades",
            "sequence_num": 0,
            "events": [{"type": kind, "trades": trades}],
        }
        return json.dumps(body).encode()

    adapter = make_adapter()
    adapter.load_instruments(answer(adapter, PRODUCTS))
    (plan,) = adapter.plan_connections(adapter.subscriptions())
    first = feed(adapter.new_session(plan), frame("snapshot", 10, 11))
    second_session = adapter.new_session(plan)
    second = feed(second_session, frame("snapshot", 10, 11, 12, 13))
    assert [e.id for e in first if isinstance(e, Trade)] == ["10", "11"]
    assert [e.id for e in second if isinstance(e, Trade)] == ["12", "13"]
    assert second_session.repeated_trades == 2


def test_candles_from_the_reference() -> None:
    (candle,) = feed(make_session(), CANDLES)
    when = ms("2023-06-09T20:19:35.39625135Z")
    assert candle == Candle(
        exchange="coinbase",
        symbol="ETH/USD",
        interval="5m",
        start=1688998200000,
        open="1867.38",
        high="1867.72",
        low="1865.63",
        close="1866.81",
        volume="0.20269406",
        closed=False,
        timestamp=when,
        exchange_time=when,
        received_ns=RECEIVED_NS,
    )


def test_a_candle_is_closed_once_the_exchange_clock_passed_its_bucket() -> None:
    session = make_session()
    end = datetime.fromtimestamp(1688998200 + 300, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    at_end = CANDLES.replace(b"2023-06-09T20:19:35.39625135Z", f"{end}Z".encode())
    just_before = at_end.replace(end.encode(), b"2023-07-10T14:14:59")
    (open_bar,) = feed(session, seq(just_before, 0))
    (closed_bar,) = feed(session, seq(at_end, 1))
    assert isinstance(open_bar, Candle) and isinstance(closed_bar, Candle)
    assert (open_bar.closed, closed_bar.closed) == (False, True)


def test_level2_snapshot_then_update() -> None:
    session = make_session()
    (snapshot,) = feed(session, seq(L2_SNAPSHOT, 0))
    when = rfc3339_ms("2023-02-09T20:32:50.714964855Z")
    assert snapshot == Book(
        exchange="coinbase",
        symbol="BTC/USD",
        bids=[("21921.73", "0.06317902"), ("21921.3", "0.02")],
        asks=[],
        depth=20,
        timestamp=when,
        exchange_time=when,
        received_ns=RECEIVED_NS,
        sequence=None,
    )
    (update,) = feed(session, seq(L2_UPDATE, 1))
    assert isinstance(update, Book)
    assert update.bids == [("21921.73", "0.06317902")]
    assert update.asks == [("21921.74", "1.5"), ("21925", "0.1")]
    assert update.timestamp == when + 100
    assert session.stats.sequence_gaps == 0


def test_updates_before_the_snapshot_are_dropped() -> None:
    session = make_session()
    assert feed(session, seq(L2_UPDATE, 0)) == []
    assert isinstance(feed(session, seq(L2_SNAPSHOT, 1))[0], Book)


def test_published_books_hold_the_configured_depth() -> None:
    session = make_session(depth=1)
    (book,) = feed(session, L2_SNAPSHOT)
    assert isinstance(book, Book)
    assert (book.bids, book.asks, book.depth) == ([("21921.73", "0.06317902")], [], 1)


def eth_snapshot(n: int) -> bytes:
    return seq(
        L2_SNAPSHOT.replace(b"BTC-USD", b"ETH-USD")
        .replace(b"21921.73", b"1600.1")
        .replace(b"21921.3", b"1600"),
        n,
    )


def test_a_sequence_gap_on_any_channel_invalidates_every_book_and_resubscribes() -> None:
    session = make_session()
    session.start(0)
    session.take_frames()
    feed(session, seq(SUBSCRIPTIONS, 0), seq(L2_SNAPSHOT, 1), eth_snapshot(2), seq(HEARTBEATS, 3))
    out = feed(session, seq(TICKER, 5))  # sequence_num 4 was lost, on whatever channel
    reason = "sequence gap: sequence_num 5 after 3"
    assert statuses(out) == [
        ("BTC/USD", "invalid", reason),
        ("BTC/USD", "resyncing", reason),
        ("ETH/USD", "invalid", reason),
        ("ETH/USD", "resyncing", reason),
    ]
    assert all(isinstance(e, FeedStatus) and e.scope == "book" for e in out[:4])
    assert isinstance(out[4], Quote)  # the frame that showed the gap is still good data
    assert (session.stats.sequence_gaps, session.stats.book_resyncs) == (1, 2)
    assert sent(session) == [
        {"type": "unsubscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
    ]
    # Updates in flight are dropped; no second "invalid"; the new snapshots recover.
    assert feed(session, seq(L2_UPDATE, 6)) == []
    out = feed(session, seq(L2_SNAPSHOT, 7))
    assert statuses(out) == [("BTC/USD", "valid", "snapshot received")]
    assert isinstance(out[1], Book)
    out = feed(session, eth_snapshot(8), seq(L2_UPDATE, 9))
    assert statuses(out) == [("ETH/USD", "valid", "snapshot received")]
    assert [type(e) for e in out] == [FeedStatus, Book, Book]
    assert session.stats.sequence_gaps == 1


def test_a_second_gap_while_resyncing_resubscribes_without_announcing_again() -> None:
    session = make_session()
    feed(session, seq(L2_SNAPSHOT, 0))
    assert len(statuses(feed(session, seq(HEARTBEATS, 2)))) == 4  # both books (ETH pending)
    session.take_frames()
    assert feed(session, seq(HEARTBEATS, 4)) == []  # the snapshots may be what was lost
    assert [f["type"] for f in sent(session)] == ["unsubscribe", "subscribe"]
    assert session.stats.sequence_gaps == 2


def test_stragglers_and_duplicates_are_dropped_and_a_reset_counter_reconnects() -> None:
    session = make_session()
    feed(session, seq(L2_SNAPSHOT, 10))
    assert feed(session, seq(TICKER, 10), seq(TICKER, 3)) == []
    assert session.stats.ignored == 2
    assert session.stats.sequence_gaps == 0
    assert len(feed(session, seq(TICKER, 11))) == 1
    for _ in range(49):  # the counter restarted below the last number seen
        feed(session, seq(HEARTBEATS, 5))
    assert session.reconnect_reason is None
    feed(session, seq(HEARTBEATS, 5))
    assert session.reconnect_reason == "sequence_num went backwards (5 after 11)"


def test_crossed_book_is_never_published() -> None:
    session = make_session()
    feed(session, seq(L2_SNAPSHOT, 0), eth_snapshot(1))
    session.take_frames()
    crossing = L2_UPDATE.replace(b'"21921.3", "new_quantity": "0"', b'"21930", "new_quantity": "2"')
    out = feed(session, seq(crossing, 2))
    assert statuses(out) == [
        ("BTC/USD", "invalid", "crossed book"),
        ("BTC/USD", "resyncing", "crossed book"),
    ]
    assert session.stats.crossed_books == 1
    assert sent(session) == [  # only the broken book
        {"type": "unsubscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
    ]
    locked = L2_SNAPSHOT.replace(
        b'{ "side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.3"',
        b'{ "side": "offer", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73"',
    )
    out = feed(session, seq(locked, 3))
    assert statuses(out) == []  # still announced invalid: nothing new to say
    assert not any(isinstance(e, Book) for e in out)
    assert session.stats.crossed_books == 2
    assert feed(session, seq(L2_UPDATE, 4)) == []  # resyncing: updates wait for a snapshot
    out = feed(session, seq(L2_SNAPSHOT, 5))
    assert statuses(out) == [("BTC/USD", "valid", "snapshot received")]


def test_usdc_symbols_are_served_by_the_unified_usd_stream() -> None:
    session = make_session(("BTC/USD", "BTC/USDC"), channels=("book", "price"))
    session.start(0)
    assert sent(session)[1:] == [
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "ticker"},
    ]
    out = feed(session, seq(L2_SNAPSHOT, 0), seq(TICKER, 1))
    assert [(type(e).__name__, e.symbol) for e in out] == [
        ("Book", "BTC/USD"),
        ("Book", "BTC/USDC"),
        ("Quote", "BTC/USD"),
        ("Quote", "BTC/USDC"),
    ]
    out = feed(session, seq(HEARTBEATS, 3))
    assert [s[:2] for s in statuses(out)] == [
        ("BTC/USD", "invalid"),
        ("BTC/USD", "resyncing"),
        ("BTC/USDC", "invalid"),
        ("BTC/USDC", "resyncing"),
    ]
    assert sent(session)[1] == {
        "type": "subscribe",
        "product_ids": ["BTC-USD"],
        "channel": "level2",
    }


def test_resubscribe_queues_frames_per_channel_and_waits_for_a_snapshot() -> None:
    session = make_session()
    feed(session, seq(L2_SNAPSHOT, 0))
    session.resubscribe([Subscription("book", "BTC/USD"), Subscription("price", "ETH/USD")], 0)
    assert sent(session) == [
        {"type": "unsubscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"},
        {"type": "unsubscribe", "product_ids": ["ETH-USD"], "channel": "ticker"},
        {"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "ticker"},
    ]
    assert feed(session, seq(L2_UPDATE, 1)) == []
    out = feed(session, seq(L2_SNAPSHOT, 2))
    assert [type(e) for e in out] == [FeedStatus, Book]  # valid again, after "resyncing"


# -- what is ignored, what raises -------------------------------------------------------------


def test_unknown_channels_types_products_and_fields_are_ignored_and_counted() -> None:
    session = make_session()
    out = feed(
        session,
        b'{"channel":"status","sequence_num":0,"events":[{"type":"snapshot","products":[]}]}',
        b'{"channel":"ticker_batch","sequence_num":1,"events":[]}',
        b'{"channel":"futures_balance_summary","sequence_num":2,"events":[{"x":1}]}',
        b'{"type":"welcome","note":"hi"}',
        b"{}",
        seq(TICKER.replace(b"BTC-USD", b"SOL-USD"), 3),  # not subscribed here
        seq(L2_SNAPSHOT.replace(b'"snapshot"', b'"reset"'), 4),
    )
    assert out == []
    assert session.stats.ignored == 7
    assert session.stats.sequence_gaps == 0
    (quote,) = feed(session, seq(TICKER.replace(b'"price":', b'"new_field":[1,{}],"price":'), 5))
    assert isinstance(quote, Quote)


@pytest.mark.parametrize(
    "frame",
    [
        b"this is {not json",
        b"[1,2]",
        b'{"channel":"ticker","sequence_num":"seven"}',
        b'{"channel":"ticker","sequence_num":0,"events":[{"tickers":[{"product_id":"BTC-USD",'
        b'"best_bid":21931.98}]}]}',
        b'{"channel":"l2_data","sequence_num":0,"events":[{"type":"snapshot"}]}',
    ],
)
def test_garbage_raises_for_the_driver_to_count(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        feed(make_session(), frame)


def test_bad_timestamps_raise() -> None:
    with pytest.raises(ValueError):
        feed(make_session(), TICKER.replace(b"2023-02-09T20:30:37", b"yesterday at noon"))
    with pytest.raises(ValueError):
        feed(make_session(), MARKET_TRADES.replace(b"2019-08-14T20:42:27.265Z", b"1565815347"))


def test_an_unusable_l2_frame_resyncs_every_book_before_raising() -> None:
    session = make_session()
    feed(session, seq(L2_SNAPSHOT, 0), eth_snapshot(1))
    session.take_frames()
    out: list[Event] = []
    with pytest.raises(ProtocolError, match="unknown level2 side 'middle'"):
        session.receive(seq(L2_UPDATE.replace(b'"offer"', b'"middle"'), 2), True, 0, out)
    assert [s[:2] for s in statuses(out)] == [
        ("BTC/USD", "invalid"),
        ("BTC/USD", "resyncing"),
        ("ETH/USD", "invalid"),
        ("ETH/USD", "resyncing"),
    ]
    assert out[0].reason == "unreadable l2_data frame"  # type: ignore[union-attr]
    assert [f["type"] for f in sent(session)] == ["unsubscribe", "subscribe"]


def test_an_undecodable_frame_shows_up_as_a_gap() -> None:
    session = make_session()
    feed(session, seq(L2_SNAPSHOT, 0))
    with pytest.raises(msgspec.DecodeError):
        feed(session, seq(L2_UPDATE, 1)[:-20])
    out = feed(session, seq(HEARTBEATS, 2))
    assert ("BTC/USD", "invalid", "sequence gap: sequence_num 2 after 0") in statuses(out)


# -- replay -----------------------------------------------------------------------------------


def test_replay_session_takes_every_listed_product() -> None:
    adapter = make_adapter()
    adapter.load_instruments(answer(adapter, PRODUCTS))
    session = adapter.new_session(ConnectionPlan(url="ws://x/ws", subscriptions=()))
    session.start(0)
    assert session.take_frames() == []
    out = feed(
        session,
        seq(L2_SNAPSHOT.replace(b"BTC-USD", b"DOGE-USD"), 0),
        seq(TICKER, 1),
        seq(TICKER.replace(b"BTC-USD", b"NOPE-USD"), 2),
    )
    assert [(type(e).__name__, e.symbol) for e in out] == [
        ("Book", "DOGE/USD"),
        ("Quote", "BTC/USD"),
    ]
    assert session.stats.ignored == 1


def test_replay_without_instruments_maps_product_ids_mechanically() -> None:
    session = make_adapter().new_session(ConnectionPlan(url="ws://x/ws", subscriptions=()))
    out = feed(session, seq(MARKET_TRADES, 0), seq(TICKER.replace(b"BTC-USD", b"BTCUSD"), 1))
    assert [e.symbol for e in out] == ["ETH/USD"]
    assert session.stats.ignored == 1


# -- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2023-02-09T20:32:50.714964855Z", 1675974770714),
        ("2023-02-09T20:32:50.7Z", 1675974770700),
        ("2023-02-09T20:32:50.999999999Z", 1675974770999),
        ("2023-02-09T20:32:50Z", 1675974770000),
        ("2023-02-09t20:32:50.5z", 1675974770500),
        ("2023-02-09T21:32:50.714+01:00", 1675974770714),
        ("2023-02-09T19:02:50.714-01:30", 1675974770714),
    ],
)
def test_rfc3339_to_ms_is_exact(text: str, expected: int) -> None:
    assert rfc3339_ms(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2023-02-09",
        "2023-02-09T20:32:50",
        "2023-02-09T20:32:50.Z",
        "2023-02-09T25:32:50Z",
        "2023-02-30T20:32:50Z",
        "2023-02-09T20:32:50+0100",
        "2023-02-09T20:32:50.1234 Z",
        "2023-02-09 20:31:56.121961769 +0000 UTC m=+91717.525857105",
    ],
)
def test_rfc3339_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        rfc3339_ms(text)


def test_rfc3339_agrees_with_datetime_over_many_days() -> None:
    for day in range(0, 20000, 97):
        stamp = datetime.fromtimestamp(day * 86400 + 12345, UTC)
        text = stamp.strftime("%Y-%m-%dT%H:%M:%S") + ".987654321Z"
        assert rfc3339_ms(text) == (day * 86400 + 12345) * 1000 + 987
