"""The real Kraken adapter and arbd's real feed against the Kraken fake over loopback.

Virtual time throughout (``virtual_time``); every wait is bounded (``wait_until``,
``trio.fail_after``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import trio

from arbd.model import CHANNELS, Book, Candle, FeedStatus, Quote, Trade
from arbd.testing.fake import open_fake
from arbd.testing.harness import Harness, run_feed
from arbd_kraken.adapter import KrakenAdapter, subscribe_depth
from arbd_kraken.fake import KrakenFake
from arbd_kraken.session import KrakenSession

SYMBOLS = ("BTC/USD", "ETH/USD")
LIMIT = 20.0  # virtual seconds: the bound of every wait here


async def wait_until(predicate: Callable[[], object], timeout: float = LIMIT) -> None:
    """Poll feed-side state (no change notification to wait on) within a bounded virtual time.
    Every 0.1 s, not the harness's 0.01 s: under the autojump clock each poll costs 5 ms of
    real idleness, and the waits here span virtual seconds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.1)


def topics(*symbols: str, depth: int = 10, channels: tuple[str, ...] = CHANNELS) -> set[str]:
    """What the adapter's subscriptions look like in the fake's ``conn.subscriptions``."""
    names = {
        "price": "ticker:bbo:",
        "trades": "trade:",
        "book": f"book:{depth}:",
        "candles": "ohlc:1:",
    }
    return {names[c] + s for s in symbols for c in channels}


@asynccontextmanager
async def running(fake: KrakenFake, **options: Any) -> AsyncIterator[Harness]:
    """``fake`` serving, a Kraken feed on it subscribed to everything (``symbols`` default
    BTC/USD and ETH/USD)."""
    options.setdefault("symbols", SYMBOLS)
    wanted = topics(
        *options["symbols"],
        depth=subscribe_depth(options.get("book_depth", 10)),
        channels=options.get("channels", CHANNELS),
    )
    async with open_fake(fake), run_feed(fake, KrakenAdapter, **options) as h:
        conn = await fake.wait_connected()
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: conn.subscriptions >= wanted)
        yield h


def session(h: Harness) -> KrakenSession:
    conn = h.connection
    assert conn is not None
    assert isinstance(conn.session, KrakenSession)
    return conn.session


def padded(qty: str) -> str:
    """A fake book size at Kraken's lot_decimals (8), as the adapter must publish it."""
    whole, _, frac = qty.partition(".")
    return f"{whole}.{frac.ljust(8, '0')}"


def fake_book(fake: KrakenFake, symbol: str, depth: int = 10) -> tuple[list[Any], list[Any]]:
    bids, asks = fake.market(symbol).book.snapshot(depth)
    return [(p, padded(q)) for p, q in bids], [(p, padded(q)) for p, q in asks]


def last_book(h: Harness, symbol: str) -> Book | None:
    return next((b for b in reversed(h.of(Book)) if b.symbol == symbol), None)


def matches_fake(h: Harness, fake: KrakenFake, symbol: str, depth: int = 10) -> bool:
    book = last_book(h, symbol)
    top = fake_book(fake, symbol, depth)
    return book is not None and (list(book.bids), list(book.asks)) == top


def books_between_invalid_and_valid(h: Harness, symbol: str) -> list[Book]:
    """Book events of ``symbol`` published after its first ``invalid`` and before the ``valid``
    that follows it (there must be none)."""
    inside, found = False, []
    for event in h.events:
        if event.symbol != symbol:
            continue
        if isinstance(event, FeedStatus) and event.scope == "book":
            if event.state == "valid" and inside:
                return found
            inside = inside or event.state == "invalid"
        elif inside and isinstance(event, Book):
            found.append(event)
    raise AssertionError(f"{symbol}: no invalid followed by valid in {h.book_states(symbol)}")


async def test_all_four_channels_arrive_normalized_with_exact_text(virtual_time):
    fake = KrakenFake(seed=3)
    async with running(fake) as h:
        await fake.pump(20)
        for symbol in SYMBOLS:
            await wait_until(partial(matches_fake, h, fake, symbol))
        await trio.sleep(1.0)  # the frames after the last book update (nothing else is pumped)
        for symbol, places in (("BTC/USD", 1), ("ETH/USD", 2)):
            book = fake.market(symbol).book
            (bid, bid_size), (ask, ask_size) = book.best()
            quote = next(q for q in reversed(h.of(Quote)) if q.symbol == symbol)
            assert (quote.bid, quote.ask) == (bid, ask)
            assert (quote.bid_size, quote.ask_size) == (padded(bid_size), padded(ask_size))
            trades = [t for t in h.of(Trade) if t.symbol == symbol]
            assert trades and all(len(t.price.partition(".")[2]) == places for t in trades)
            assert all(len(t.size.partition(".")[2]) == 8 for t in trades)
            assert len({t.id for t in trades}) == len(trades)
            candle = next(c for c in reversed(h.of(Candle)) if c.symbol == symbol)
            bar = fake.market(symbol).bar
            assert bar is not None and candle.interval == "1m" and candle.start == bar.start_ms
            m = fake.market(symbol)
            assert (candle.open, candle.close) == (m.price(bar.open), m.price(bar.close))
            assert candle.volume == padded(m.fmt_volume(bar))
        assert {e.exchange for e in h.events} == {"kraken"}
        assert session(h).stats.checksum_failures == 0
        assert session(h).system_status == "online"


async def test_numbers_without_trailing_zeros_are_padded_back_for_the_checksum(virtual_time):
    fake = KrakenFake(seed=4, trim_numbers=True)
    async with running(fake) as h:
        await fake.pump(20)
        for symbol in SYMBOLS:
            await wait_until(partial(matches_fake, h, fake, symbol))
        assert session(h).stats.checksum_failures == 0


@pytest.mark.parametrize("book_depth", [5, 25, 100])
async def test_every_book_depth_is_truncated_and_checksummed_like_kraken(virtual_time, book_depth):
    """Subscribed at 10, 25 and 100 (the fake's book holds 50 levels a side): levels pushed
    out of the subscribed depth get no delete, the adapter truncates them itself. DOGE/USD
    (7 price decimals, whole-unit sizes) and USDT/USD (5) test the precision padding."""
    fake = KrakenFake(seed=11)
    symbols = ("DOGE/USD", "USDT/USD")
    async with running(fake, symbols=symbols, channels=("book",), book_depth=book_depth) as h:
        await fake.pump(40)
        for symbol in symbols:
            await wait_until(partial(matches_fake, h, fake, symbol, book_depth))
        assert session(h).stats.checksum_failures == 0
        assert {b.depth for b in h.of(Book)} == {book_depth}


@pytest.mark.parametrize("fault", ["skip_sequence", "corrupt_checksum"])
async def test_a_lost_or_corrupted_update_invalidates_only_that_book(virtual_time, fault):
    fake = KrakenFake(seed=5)
    async with running(fake) as h:
        fake.start_soon(fake.run_feed, 20.0)
        await wait_until(lambda: all(last_book(h, s) for s in SYMBOLS), LIMIT)
        getattr(fake, fault)("BTC/USD")
        await wait_until(lambda: h.book_states("BTC/USD")[-1:] == ["valid"], LIMIT)
        states = h.book_states("BTC/USD")
        assert states[0] == "invalid" and "resyncing" in states
        assert books_between_invalid_and_valid(h, "BTC/USD") == []
        assert h.book_states("ETH/USD") == []
        assert session(h).stats.checksum_failures == 1
        reason = next(s.reason for s in h.statuses("book") if s.state == "invalid")
        assert reason.startswith("checksum mismatch")
        # Recovered by resubscribing the book on the same connection, data flowing again.
        count = len(h.of(Book))
        await wait_until(lambda: len(h.of(Book)) > count + 5, LIMIT)
        assert fake.connection_count == 1


async def test_a_crossed_book_is_never_published_and_recovers(virtual_time):
    fake = KrakenFake(seed=6)
    async with running(fake) as h:
        fake.start_soon(fake.run_feed, 20.0)
        await wait_until(lambda: last_book(h, "BTC/USD") is not None, LIMIT)
        assert fake.send_crossed_book("BTC/USD") == 1
        await wait_until(lambda: h.book_states("BTC/USD")[-1:] == ["valid"], LIMIT)
        assert h.book_states("BTC/USD")[0] == "invalid"
        assert books_between_invalid_and_valid(h, "BTC/USD") == []
        assert session(h).stats.crossed_books >= 1
        for book in h.of(Book):
            assert Decimal(book.bids[0][0]) < Decimal(book.asks[0][0])
        assert h.book_states("ETH/USD") == []


async def test_a_stall_with_live_heartbeats_is_detected_as_stale_and_recovers(virtual_time):
    fake = KrakenFake(seed=7)
    async with running(fake, stale_after=2.0) as h:
        fake.start_soon(fake.run_feed, 20.0)
        await wait_until(lambda: len(h.of(Quote)) > 10 and last_book(h, "BTC/USD"), LIMIT)
        heartbeats = session(h).heartbeats
        fake.faults.stall = True
        await wait_until(lambda: any(s.state == "stale" for s in h.statuses("subscription")))
        stale = {(s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "stale"}
        assert ("price", "BTC/USD") in stale and ("book", "BTC/USD") in stale
        assert session(h).heartbeats > heartbeats  # the connection itself looked alive
        fake.faults.stall = False
        count = len(h.of(Book))

        def recovered() -> bool:
            live = {(s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "live"}
            return live >= {("book", s) for s in SYMBOLS} and len(h.of(Book)) > count

        await wait_until(recovered, LIMIT)
        assert fake.connection_count == 1
        assert h.connection is not None and h.connection.stats.resubscribes >= 1


async def test_a_forced_disconnect_reconnects_and_restores_everything(virtual_time):
    fake = KrakenFake(seed=8, disconnect_after=6.0)
    async with running(fake) as h:
        fake.start_soon(fake.run_feed, 10.0)
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: fake.forced_disconnects == 1)
            await fake.wait_for(lambda: fake.connection_count == 2)
            second = fake.connections[-1]
            await fake.wait_for(lambda: second.subscriptions >= topics(*SYMBOLS))
        count = len(h.of(Book))
        await wait_until(lambda: len(h.of(Book)) > count + 10, LIMIT)
        for symbol in SYMBOLS:
            assert "invalid" not in h.book_states(symbol)
        assert fake.forced_disconnects == 1  # everything above happened on the second one
        assert "backoff" in [s.state for s in h.statuses("connection")]


async def test_garbage_and_unknown_messages_are_counted_and_skipped(virtual_time):
    fake = KrakenFake(seed=9)
    async with running(fake) as h:
        conn = fake.connections[-1]
        fake.faults.garbage_every = 3
        conn.send_text('{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[]}}')
        await fake.pump(10)
        await wait_until(lambda: len(h.of(Trade)) >= 5 and h.connection is not None, LIMIT)
        await wait_until(lambda: matches_fake(h, fake, "BTC/USD"), LIMIT)
        assert h.connection is not None and h.connection.stats.decode_errors >= 5
        assert session(h).stats.ignored >= 1
        assert fake.connection_count == 1 and h.ctx.reconnects == {}


def refused(h: Harness) -> list[FeedStatus]:
    return [s for s in h.statuses("subscription") if s.state == "refused"]


async def test_an_exchange_error_frame_is_surfaced_and_not_fatal(virtual_time, caplog):
    caplog.set_level(logging.WARNING)
    fake = KrakenFake(seed=10)
    fake.reject("ETH/USD")
    async with open_fake(fake), run_feed(fake, KrakenAdapter, symbols=SYMBOLS) as h:
        conn = await fake.wait_connected()
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: conn.subscriptions >= topics("BTC/USD"))
        await fake.pump(10)
        await wait_until(lambda: matches_fake(h, fake, "BTC/USD"), LIMIT)
        await wait_until(lambda: session(h).stats.errors_reported >= 4, LIMIT)
        assert not any(t.endswith(":ETH/USD") for t in conn.subscriptions)
        assert "Currency pair not supported ETH/USD" in caplog.text
        # Each rejection names its request (req_id) and symbol: that channel of ETH/USD is
        # refused for good, reported once with Kraken's words.
        assert sorted((s.channel, s.symbol, s.reason) for s in refused(h)) == [
            (channel, "ETH/USD", "Currency pair not supported ETH/USD")
            for channel in sorted(CHANNELS)
        ]
        assert fake.connection_count == 1 and h.ctx.reconnects == {}
    assert "kraken: subscribe" not in caplog.text  # the driver prefixes notices, not the adapter


async def test_a_refused_symbol_does_not_cost_the_others_their_connection(virtual_time):
    fake = KrakenFake(seed=12)
    fake.reject("ETH/USD")
    async with open_fake(fake), run_feed(fake, KrakenAdapter, symbols=SYMBOLS) as h:
        fake.start_soon(fake.run_feed, 5.0)
        await wait_until(lambda: len(refused(h)) == len(CHANNELS))
        quotes = len(h.of(Quote))
        await trio.sleep(10.0)  # five stale deadlines of the refused symbol
        assert fake.connection_count == 1 and h.ctx.reconnects == {}
        stale = [(s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "stale"]
        assert not stale, stale
        assert len(refused(h)) == len(CHANNELS)  # reported once each
        # BTC/USD kept flowing all along; ETH/USD never did.
        assert len(h.of(Quote)) > quotes
        assert {e.symbol for e in [*h.of(Quote), *h.of(Book), *h.of(Trade)]} == {"BTC/USD"}
