"""The real Coinbase adapter and arbd's real feed against the Coinbase fake over loopback.

Virtual time throughout (``virtual_time``: trio's MockClock, autojump after 5 ms idle); every
wait is bounded. The fake pumps 20 rounds per second of market time while a test runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from arbd.model import Book, Candle, Event, FeedStatus, Quote, Trade
from arbd.testing.fake import FakeConnection, open_fake
from arbd.testing.harness import Harness, run_feed
from arbd_coinbase.adapter import CoinbaseAdapter
from arbd_coinbase.fake import CoinbaseFake, num
from arbd_coinbase.session import CoinbaseSession

SYMBOLS = ("BTC/USD", "ETH/USD")
DEPTH = 10
LIMIT = 30.0  # virtual seconds: every wait in this file is bounded by this
TS = 1_775_571_600_000  # 2026-04-07T14:20:00Z, the start of a five-minute bucket
WANTED = {
    "heartbeats",
    *(
        f"{channel}:{product}"
        for channel in ("level2", "ticker", "market_trades", "candles")
        for product in ("BTC-USD", "ETH-USD")
    ),
}


async def until(predicate: Callable[[], object], timeout: float = LIMIT) -> None:
    """Poll a feed-side condition every 0.1 virtual seconds, bounded by ``timeout``.

    Like ``harness.wait_until`` but coarser: under the autojump clock every poll costs at least
    the 5 ms autojump threshold in real time, so a 10 ms poll makes a virtual second cost half
    a real one.
    """
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.1)


def trio_clock() -> int:
    """Exchange time follows the virtual clock, so candles and timestamps are reproducible."""
    return TS + int(trio.current_time() * 1000)


@asynccontextmanager
async def running(
    rate: float | None = 20.0,
    *,
    rounds: int | None = None,
    rejected: tuple[str, str] | None = None,
    stale_after: float = 4.0,
    **options: Any,
) -> AsyncIterator[tuple[CoinbaseFake, Harness, FakeConnection]]:
    """A fake (two symbols) and a feed subscribed to all four channels on one connection,
    with the fake pumping ``rate`` rounds per second (None: the test pumps)."""
    fake = CoinbaseFake(list(SYMBOLS), depth=20, clock=trio_clock, **options)
    wanted = set(WANTED)
    if rejected is not None:
        fake.reject(*rejected)
        wanted = {t for t in wanted if not t.startswith(f"{rejected[0]}:")}
    async with (
        open_fake(fake),
        run_feed(
            fake, CoinbaseAdapter, symbols=SYMBOLS, book_depth=DEPTH, stale_after=stale_after
        ) as h,
    ):
        with trio.fail_after(LIMIT):
            conn = await fake.wait_connected()
            # The market moves from the start, as a real one does: the five subscribe frames
            # take two seconds at the adapter's pace and the watchdog runs from the connect.
            if rate is not None:
                fake.start_soon(fake.run_feed, rate, rounds)
            await fake.wait_for(lambda: conn.subscriptions >= wanted)
        yield fake, h, conn


def latest(h: Harness, kind: type[Any], symbol: str) -> Any:
    found = [e for e in h.of(kind) if e.symbol == symbol]
    return found[-1] if found else None


def expected_book(fake: CoinbaseFake, symbol: str) -> tuple[list[Any], list[Any]]:
    bids, asks = fake.market(symbol).book.snapshot(DEPTH)
    return [(num(p), num(s)) for p, s in bids], [(num(p), num(s)) for p, s in asks]


def book_matches(h: Harness, fake: CoinbaseFake, symbol: str) -> bool:
    book = latest(h, Book, symbol)
    if book is None:
        return False
    return ([tuple(lv) for lv in book.bids], [tuple(lv) for lv in book.asks]) == expected_book(
        fake, symbol
    )


def books_between(events: list[Event], symbol: str, first: str, last: str) -> list[Book]:
    """Books of ``symbol`` published after its ``first`` book status and before ``last``."""
    inside, found = False, []
    for e in events:
        if isinstance(e, FeedStatus) and e.scope == "book" and e.symbol == symbol:
            if e.state == first:
                inside = True
            elif e.state == last:
                inside = False
        elif inside and isinstance(e, Book) and e.symbol == symbol:
            found.append(e)
    return found


def session_of(h: Harness) -> CoinbaseSession:
    conn = h.connection
    assert conn is not None
    session = conn.session
    assert isinstance(session, CoinbaseSession)
    return session


async def test_all_four_channels_arrive_normalized_with_the_fakes_exact_text(
    virtual_time: trio.testing.MockClock,
) -> None:
    async with running(rounds=100) as (fake, h, _conn):
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: fake.rounds == 100)
        for symbol in SYMBOLS:
            await until(lambda s=symbol: book_matches(h, fake, s))
            tape = fake.tapes[fake.market(symbol).native]
            ticker = tape.ticker
            assert ticker is not None
            await until(
                lambda s=symbol, t=ticker: (
                    (q := latest(h, Quote, s)) is not None
                    and (q.bid, q.ask) == (t["best_bid"], t["best_ask"])
                ),
                LIMIT,
            )
            quote = latest(h, Quote, symbol)
            assert (quote.bid_size, quote.ask_size) == (
                ticker["best_bid_quantity"],
                ticker["best_ask_quantity"],
            )
            # Every trade the fake printed (the snapshot's and the updates'), maker side
            # turned into the taker's side.
            printed = {t["trade_id"]: t for t in tape.recent}
            trades = {t.id: t for t in h.of(Trade) if t.symbol == symbol}
            assert set(printed) <= set(trades)
            for trade_id, wire in printed.items():
                trade = trades[trade_id]
                assert (trade.price, trade.size) == (wire["price"], wire["size"])
                assert trade.side == ("buy" if wire["side"] == "SELL" else "sell")
            market = fake.market(symbol)
            bar = market.bar
            assert bar is not None
            candle = latest(h, Candle, symbol)
            assert (candle.interval, candle.start, candle.closed) == ("5m", TS, False)
            assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == (
                num(market.price(bar.open)),
                num(market.price(bar.high)),
                num(market.price(bar.low)),
                num(market.price(bar.close)),
                num(market.fmt_volume(bar)),
            )
    assert {e.symbol for e in h.events if not isinstance(e, FeedStatus)} == set(SYMBOLS)
    # No book went invalid (a quiet fake may be renewed by the stale watchdog: that shows as
    # "resyncing" then "valid", never "invalid").
    assert "invalid" not in h.book_states("BTC/USD") + h.book_states("ETH/USD")
    stats = session_of(h).stats
    assert (stats.sequence_gaps, stats.crossed_books, stats.errors_reported) == (0, 0, 0)


async def test_a_sequence_gap_invalidates_every_book_on_the_connection_until_resynced(
    virtual_time: trio.testing.MockClock,
) -> None:
    async with running() as (fake, h, _conn):
        await until(lambda: all(latest(h, Book, s) for s in SYMBOLS))
        fake.skip_sequence("ETH/USD")
        # sequence_num is one counter per connection and a gap does not say what was lost:
        # BOTH books go invalid (unlike a crossed book, below, which is per symbol).
        for symbol in SYMBOLS:
            await until(lambda s=symbol: h.book_states(s)[-1:] == ["valid"])
        mark = len(h.events)
        await until(lambda: all(latest(h, Book, s) in h.events[mark:] for s in SYMBOLS))
        session = session_of(h)
    for symbol in SYMBOLS:
        assert h.book_states(symbol) == ["invalid", "resyncing", "valid"]
        assert books_between(h.events, symbol, "invalid", "valid") == []
    assert session.stats.sequence_gaps == 1
    assert fake.connection_count == 1  # resubscribed, not reconnected
    assert "sequence gap" in h.statuses("book")[0].reason


async def test_a_crossed_book_is_never_published_and_resyncs_alone(
    virtual_time: trio.testing.MockClock,
) -> None:
    async with running() as (fake, h, _conn):
        await until(lambda: all(latest(h, Book, s) for s in SYMBOLS))
        assert fake.send_crossed_book("BTC/USD") == 1
        await until(lambda: h.book_states("BTC/USD")[-1:] == ["valid"])
        mark = len(h.events)
        await until(lambda: latest(h, Book, "BTC/USD") in h.events[mark:])
        session = session_of(h)
    assert h.book_states("BTC/USD") == ["invalid", "resyncing", "valid"]
    assert h.book_states("ETH/USD") == []
    assert books_between(h.events, "BTC/USD", "invalid", "valid") == []
    for book in h.of(Book):
        assert float(book.bids[0][0]) < float(book.asks[0][0])
    assert session.stats.crossed_books >= 1
    assert session.stats.sequence_gaps == 0


async def test_a_stall_with_heartbeats_flowing_is_found_stale_and_recovers(
    virtual_time: trio.testing.MockClock,
) -> None:
    async with running(rate=10.0, stale_after=2.0) as (fake, h, conn):
        await until(lambda: all(latest(h, Book, s) for s in SYMBOLS))
        beats = session_of(h).heartbeat_counter or 0
        fake.faults.stall = True
        await until(
            lambda: (
                {(s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "stale"}
                == {(c, s) for c in ("price", "book") for s in SYMBOLS}
            )
        )
        # Heartbeats are not market data: they kept coming, so the connection stayed up and
        # only the data channels' watchdog noticed.
        assert (session_of(h).heartbeat_counter or 0) > beats
        assert conn.frames_suppressed > 0
        fake.faults.stall = False
        await until(
            lambda: (
                {(s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "live"}
                == {(c, s) for c in ("price", "book") for s in SYMBOLS}
            )
        )
        mark = len(h.events)
        await until(lambda: all(latest(h, Book, s) in h.events[mark:] for s in SYMBOLS))
    assert fake.connection_count == 1
    assert session_of(h).stats.sequence_gaps == 0  # a stalled connection spends no numbers


async def test_a_forced_disconnect_reconnects_and_restores_everything(
    virtual_time: trio.testing.MockClock,
) -> None:
    # A slow market (5 rounds a second): the new connection's market_trades snapshot reaches
    # back past the disconnect.
    async with running(rate=5.0, disconnect_after=3.0) as (fake, h, first):
        await until(lambda: all(latest(h, Book, s) for s in SYMBOLS))
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: fake.connection_count >= 2 and fake.connections)
            second = fake.connections[-1]
            await fake.wait_for(lambda: second.subscriptions >= WANTED)
        mark = len(h.events)
        for kind in (Book, Quote, Trade):
            await until(lambda k=kind: all(latest(h, k, s) in h.events[mark:] for s in SYMBOLS))
    assert first.closed and fake.forced_disconnects >= 1
    assert h.ctx.reconnects.get("peer_closed", 0) >= 1
    # No book went invalid (a quiet fake may be renewed by the stale watchdog: that shows as
    # "resyncing" then "valid", never "invalid").
    assert "invalid" not in h.book_states("BTC/USD") + h.book_states("ETH/USD")
    # The new connection's market_trades snapshot repeats recent trades: none twice.
    ids = [(t.symbol, t.id) for t in h.of(Trade)]
    assert len(ids) == len(set(ids))


async def test_garbage_and_unknown_messages_are_counted_and_skipped(
    virtual_time: trio.testing.MockClock,
) -> None:
    async with running() as (fake, h, conn):
        await until(lambda: all(latest(h, Book, s) for s in SYMBOLS))
        ignored = session_of(h).stats.ignored
        fake.faults.garbage_every = 7
        status = {
            "type": "snapshot",
            "products": [{"product_type": "SPOT", "id": "BTC-USD", "status": "online"}],
        }
        assert fake.send_envelope(conn, "status", [status])
        assert fake.send_envelope(conn, "l2_data", [{"type": "mystery", "product_id": "BTC-USD"}])
        await until(lambda: h.connection is not None and h.connection.stats.decode_errors >= 3)
        await until(lambda: session_of(h).stats.ignored >= ignored + 2)
        fake.faults.garbage_every = None
        mark = len(h.events)
        await until(lambda: all(latest(h, Book, s) in h.events[mark:] for s in SYMBOLS))
    assert fake.connection_count == 1
    # Garbage carries no sequence_num and the unknown messages carry the right one: no gap.
    # No book went invalid (a quiet fake may be renewed by the stale watchdog: that shows as
    # "resyncing" then "valid", never "invalid").
    assert "invalid" not in h.book_states("BTC/USD") + h.book_states("ETH/USD")


async def test_an_exchange_error_frame_is_logged_and_not_fatal(
    virtual_time: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="arbd.feed")
    # ETH-USD is listed but refused for candles: the whole candles subscribe fails (Coinbase
    # refuses a subscribe naming a bad product as a whole); the other channels carry on.
    async with running(rejected=("candles", "ETH/USD")) as (fake, h, conn):
        await until(lambda: session_of(h).stats.errors_reported == 1)
        for kind in (Book, Quote, Trade):
            await until(lambda k=kind: all(latest(h, k, s) for s in SYMBOLS))
        await trio.sleep(5)  # the feed keeps running on the same connection
        subscriptions = set(conn.subscriptions)
    assert "Failed to subscribe: ETH-USD is not a valid product" in caplog.text
    assert fake.connection_count == 1
    assert h.of(Candle) == []
    assert not any(s.state in ("failed", "stale") for s in h.statuses())
    assert subscriptions == {t for t in WANTED if not t.startswith("candles:")}
    # The error names only the product (Coinbase errors carry no request id; a product that is
    # not valid is refused on every channel), so ETH/USD's subscriptions are marked refused and
    # the stale watchdog leaves them be.
    refused = {(s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "refused"}
    assert ("candles", "ETH/USD") in refused
    assert all(symbol == "ETH/USD" for _, symbol in refused)
