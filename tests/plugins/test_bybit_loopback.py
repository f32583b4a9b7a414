"""The real Bybit adapter and arbd's real feed against the Bybit fake over loopback sockets.

Virtual time throughout (``virtual_time``: trio's MockClock, autojump after 5 ms of real idleness);
every wait is bounded by ``wait_until`` or ``trio.fail_after``.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
import trio

from arbd.model import Book, Candle, Event, FeedStatus, Quote, Trade
from arbd.testing.conformance import check_fake
from arbd.testing.connection import FakeConnection
from arbd.testing.fake import open_fake
from arbd.testing.harness import Harness, run_feed, wait_until
from arbd_bybit.adapter import BybitAdapter
from arbd_bybit.fake import BybitFake

SYMBOLS = ("BTC/USDT", "ETH/USDT")


def topics(*symbols: str) -> set[str]:
    out: set[str] = set()
    for symbol in symbols:
        native = symbol.replace("/", "")
        out |= {
            f"orderbook.1.{native}",
            f"orderbook.50.{native}",
            f"publicTrade.{native}",
            f"kline.1.{native}",
        }
    return out


async def subscribed(fake: BybitFake, wanted: set[str], count: int = 1) -> FakeConnection:
    """Wait for the ``count``-th connection to hold ``wanted``; return it."""
    with trio.fail_after(20):
        await fake.wait_for(lambda: fake.connection_count >= count and fake.connections)
        conn = fake.connections[-1]
        await fake.wait_for(lambda: conn.subscriptions >= wanted)
    return conn


def books_of(h: Harness, symbol: str) -> list[Book]:
    return [b for b in h.of(Book) if b.symbol == symbol]


def in_sync(h: Harness, fake: BybitFake, symbol: str) -> bool:
    """The last published book of ``symbol`` carries the fake's current ``u``."""
    books = books_of(h, symbol)
    return bool(books) and books[-1].sequence == fake.update_id(symbol, 50)


def assert_matches_fake(h: Harness, fake: BybitFake, symbol: str, depth: int = 10) -> None:
    last = books_of(h, symbol)[-1]
    bids, asks = fake.market(symbol).book.snapshot(depth)
    assert [tuple(level) for level in last.bids] == bids
    assert [tuple(level) for level in last.asks] == asks


def events_between(h: Harness, symbol: str, first: str, then: str) -> list[Event]:
    """Events after the first ``first`` book status of ``symbol`` up to its next ``then``."""
    events = h.events
    start = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, FeedStatus)
        and e.scope == "book"
        and e.symbol == symbol
        and e.state == first
    )
    end = next(
        i
        for i, e in enumerate(events)
        if i > start
        and isinstance(e, FeedStatus)
        and e.scope == "book"
        and e.symbol == symbol
        and e.state == then
    )
    return events[start:end]


def never_crossed(h: Harness) -> None:
    for book in h.of(Book):
        assert Decimal(book.bids[0][0]) < Decimal(book.asks[0][0]), book
    for quote in h.of(Quote):
        assert Decimal(quote.bid) < Decimal(quote.ask), quote


async def test_all_channels_arrive_normalized_for_two_symbols(virtual_time: Any) -> None:
    # A fixed clock: no minute turns during the test, so every candle is the open one.
    fake = BybitFake(SYMBOLS, clock=lambda: 1_700_000_010_000)
    async with open_fake(fake), run_feed(fake, BybitAdapter, symbols=SYMBOLS) as h:
        conn = await subscribed(fake, topics(*SYMBOLS))
        await fake.pump(10)
        await wait_until(lambda: all(in_sync(h, fake, s) for s in SYMBOLS), 10)
        await wait_until(lambda: {t.symbol for t in h.of(Trade)} == set(SYMBOLS), 10)
        for symbol in SYMBOLS:
            assert_matches_fake(h, fake, symbol)
            bid, ask = fake.market(symbol).book.best()
            quote = [q for q in h.of(Quote) if q.symbol == symbol][-1]
            assert (quote.bid, quote.bid_size, quote.ask, quote.ask_size) == (*bid, *ask)
            trades = [t for t in h.of(Trade) if t.symbol == symbol]
            assert all(t.side in {"buy", "sell"} and t.id.isdigit() for t in trades)
            assert [int(t.id) for t in trades] == list(
                range(int(trades[0].id), int(trades[0].id) + len(trades))
            )
            candles = [c for c in h.of(Candle) if c.symbol == symbol]
            assert candles and all(c.interval == "1m" and not c.closed for c in candles)
            # A bar closes at the last trade price: the same text end to end.
            assert candles[-1].close == trades[-1].price
            assert Decimal(quote.bid).as_tuple().exponent == -2  # tick 0.01: "64009.52"
        assert conn.subscriptions == topics(*SYMBOLS)
        session = h.connections[0].session
        assert session.stats.sequence_gaps == session.stats.errors_reported == 0
        assert h.connections[0].stats.decode_errors == 0
        assert h.ctx.reconnects == {}


async def test_a_lost_delta_invalidates_then_resyncs_one_symbol(virtual_time: Any) -> None:
    async with (
        open_fake(BybitFake(SYMBOLS)) as fake,
        run_feed(fake, BybitAdapter, symbols=SYMBOLS, channels=("book",)) as h,
    ):
        conn = await subscribed(fake, {"orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT"})
        fake.start_soon(fake.run_feed, 20.0)
        await wait_until(lambda: all(books_of(h, s) for s in SYMBOLS), 10)
        fake.skip_sequence("BTC/USDT")
        await wait_until(lambda: "valid" in h.book_states("BTC/USDT"), 10)
        await wait_until(lambda: in_sync(h, fake, "BTC/USDT") and in_sync(h, fake, "ETH/USDT"), 10)
        assert h.book_states("BTC/USDT") == ["invalid", "resyncing", "valid"]
        assert h.book_states("ETH/USDT") == []
        between = events_between(h, "BTC/USDT", "invalid", "valid")
        assert not [e for e in between if isinstance(e, Book) and e.symbol == "BTC/USDT"]
        assert [e for e in between if isinstance(e, Book) and e.symbol == "ETH/USDT"]
        assert h.connections[0].session.stats.sequence_gaps == 1
        unsubscribes = [m for m in conn.received if '"unsubscribe"' in str(m)]
        assert len(unsubscribes) == 1 and "orderbook.50.BTCUSDT" in str(unsubscribes[0])
        assert fake.connection_count == 1


async def test_a_service_restart_snapshot_keeps_the_book_valid(virtual_time: Any) -> None:
    async with (
        open_fake(BybitFake(["BTC/USDT"])) as fake,
        run_feed(fake, BybitAdapter, channels=("book",)) as h,
    ):
        await subscribed(fake, {"orderbook.50.BTCUSDT"})
        await fake.pump(3)
        fake.restart_service("BTC/USDT")  # u starts again at 1: a reset, not a gap
        await fake.pump(3)
        await wait_until(lambda: in_sync(h, fake, "BTC/USDT"), 10)
        assert books_of(h, "BTC/USDT")[-1].sequence == 4
        assert h.book_states("BTC/USDT") == []
        assert_matches_fake(h, fake, "BTC/USDT")


async def test_a_crossed_book_is_never_published(virtual_time: Any) -> None:
    async with (
        open_fake(BybitFake(SYMBOLS)) as fake,
        run_feed(fake, BybitAdapter, symbols=SYMBOLS, channels=("price", "book")) as h,
    ):
        await subscribed(fake, {"orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT"})
        fake.start_soon(fake.run_feed, 20.0)
        await wait_until(lambda: all(books_of(h, s) for s in SYMBOLS), 10)
        assert fake.send_crossed_book("BTC/USDT") == 2  # orderbook.1 and orderbook.50
        await wait_until(lambda: "valid" in h.book_states("BTC/USDT"), 10)
        await wait_until(lambda: in_sync(h, fake, "BTC/USDT"), 10)
        states = h.book_states("BTC/USDT")
        assert states[0] == "invalid" and states[-1] == "valid"
        assert h.book_states("ETH/USDT") == []
        between = events_between(h, "BTC/USDT", "invalid", "valid")
        assert not [e for e in between if isinstance(e, Book) and e.symbol == "BTC/USDT"]
        never_crossed(h)
        assert h.connections[0].session.stats.crossed_books >= 1
        assert_matches_fake(h, fake, "BTC/USDT")


async def test_a_stall_with_pongs_is_detected_as_stale_and_recovers(virtual_time: Any) -> None:
    async with (
        open_fake(BybitFake(["BTC/USDT"])) as fake,
        run_feed(fake, BybitAdapter, stale_after=1.0) as h,
    ):
        conn = await subscribed(fake, topics("BTC/USDT"))
        fake.start_soon(fake.run_feed, 20.0)
        await wait_until(lambda: len(h.of(Book)) > 5, 10)
        fake.faults.stall = True
        await wait_until(lambda: any(s.state == "stale" for s in h.statuses("subscription")), 10)
        fake.faults.stall = False
        await wait_until(
            lambda: (
                {(s.channel, s.state) for s in h.statuses("subscription")}
                >= {("price", "live"), ("book", "live")}
            ),
            10,
        )
        await wait_until(lambda: in_sync(h, fake, "BTC/USDT"), 10)
        stale = {s.channel for s in h.statuses("subscription") if s.state == "stale"}
        assert stale >= {"price", "book"}
        assert conn.frames_suppressed > 0
        assert fake.connection_count == 1 and h.ctx.reconnects == {}
        assert h.connections[0].stats.resubscribes >= 1
        assert_matches_fake(h, fake, "BTC/USDT")


async def test_json_pings_keep_a_quiet_connection_alive(virtual_time: Any) -> None:
    fake = BybitFake(["BTC/USDT"])
    fake.idle_timeout = 30.0  # Bybit's 10 minutes, shortened
    async with open_fake(fake), run_feed(fake, BybitAdapter, channels=("trades",)) as h:
        conn = await subscribed(fake, {"publicTrade.BTCUSDT"})
        await trio.sleep(100.0)  # no data at all: only the adapter's pings every 20 s
        assert fake.idle_closes == 0 and fake.connection_count == 1
        assert sum('"ping"' in str(m) for m in conn.received) >= 4
        assert h.connections[0].session.pongs >= 4  # type: ignore[attr-defined]
        assert h.ctx.reconnects == {}


async def test_a_forced_disconnect_reconnects_and_restores_everything(virtual_time: Any) -> None:
    async with (
        open_fake(BybitFake(SYMBOLS, disconnect_after=4.0)) as fake,
        run_feed(fake, BybitAdapter, symbols=SYMBOLS) as h,
    ):
        await subscribed(fake, topics(*SYMBOLS))
        fake.start_soon(fake.run_feed, 10.0)
        await wait_until(lambda: all(books_of(h, s) for s in SYMBOLS), 10)
        second = await subscribed(fake, topics(*SYMBOLS), count=2)
        seen = len(h.events)
        await wait_until(
            lambda: (
                {b.symbol for b in h.of(Book)[-20:]} == set(SYMBOLS) and len(h.events) > seen + 20
            ),
            10,
        )
        assert fake.forced_disconnects >= 1
        assert second.subscriptions == topics(*SYMBOLS)
        assert h.ctx.reconnects.get("peer_closed", 0) >= 1
        states = [s.state for s in h.statuses("connection")]
        assert "backoff" in states and states.count("live") >= 2
        assert all(h.book_states(s) == [] for s in SYMBOLS)  # fresh sessions start from snapshots
        never_crossed(h)


async def test_garbage_and_unknown_messages_are_counted_and_skipped(virtual_time: Any) -> None:
    async with (
        open_fake(BybitFake(["BTC/USDT"])) as fake,
        run_feed(fake, BybitAdapter) as h,
    ):
        conn = await subscribed(fake, topics("BTC/USDT"))
        fake.faults.garbage_every = 3
        conn.send_text('{"topic":"tickers.BTCUSDT","ts":1,"type":"snapshot","data":{}}')
        conn.send_text('{"success":true,"ret_msg":"","conn_id":"x","op":"auth"}')
        conn.send_text('{"type":"COMMAND_RESP","data":{"successTopics":[]}}')
        await fake.pump(6)
        fake.faults.garbage_every = None
        await fake.pump(1)
        await wait_until(lambda: in_sync(h, fake, "BTC/USDT"), 10)
        connection = h.connections[0]
        assert connection.stats.decode_errors >= 4
        assert connection.session.stats.ignored >= 3
        assert fake.connection_count == 1 and h.ctx.reconnects == {}
        assert h.book_states("BTC/USDT") == []
        assert_matches_fake(h, fake, "BTC/USDT")


async def test_a_refused_symbol_is_reported_and_not_fatal(
    virtual_time: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # ETHUSDT is listed by REST but its subscribes are refused with the real error frame. Bybit
    # refuses a request as a whole, so the adapter asks again for the topics not named, and
    # refuses ETH/USDT's subscriptions: the stale watchdog must not recycle the connection
    # (BTC/USDT with it) waiting for them.
    caplog.set_level(logging.WARNING, logger="arbd.feed")
    fake = BybitFake(SYMBOLS, reject_symbols=["ETHUSDT"])
    async with open_fake(fake), run_feed(fake, BybitAdapter, symbols=SYMBOLS) as h:
        conn = await subscribed(fake, topics("BTC/USDT"))
        fake.start_soon(fake.run_feed, 10.0)
        await wait_until(lambda: h.of(Trade) and h.of(Candle) and h.of(Book), 10)
        quotes = len(h.of(Quote))
        await trio.sleep(30.0)  # fifteen stale deadlines (stale_after 2 s)
        assert len(h.of(Quote)) > quotes
        assert {e.symbol for e in [*h.of(Trade), *h.of(Candle), *h.of(Book), *h.of(Quote)]} == {
            "BTC/USDT"
        }
        assert conn.subscriptions == topics("BTC/USDT")
        reason = "Invalid symbol :[orderbook.50.ETHUSDT]"  # the first ETHUSDT topic asked for
        refused = [s for s in h.statuses("subscription") if s.state == "refused"]
        assert sorted((s.channel, s.symbol, s.reason) for s in refused) == [
            (channel, "ETH/USDT", reason) for channel in ("book", "candles", "price", "trades")
        ]
        stale = [(s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "stale"]
        assert not stale, stale
        notices = [r.getMessage() for r in caplog.records if "subscribe failed" in r.getMessage()]
        (refusal,) = notices
        assert f": subscribe failed: {reason}" in refusal
        assert "bybit: subscribe" not in refusal  # the driver prefixes the notice, not the adapter
        assert h.connections[0].session.stats.errors_reported == 1
        assert fake.connection_count == 1 and h.ctx.reconnects == {}
        assert not [s for s in h.statuses("exchange") if s.state == "failed"]


async def test_conformance_against_the_fake(virtual_time: Any) -> None:
    report = await check_fake(BybitFake(), BybitAdapter, rounds=60)
    assert report.ok, report.summary()
