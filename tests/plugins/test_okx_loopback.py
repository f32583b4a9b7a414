"""The real OKX adapter and arbd's real feed against the OKX fake over loopback, virtual time.

Two connections per feed, as against OKX: /ws/v5/public (bbo-tbt, books, trades) and
/ws/v5/business (candle1m), the latter's URL derived by the adapter from the former's.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
import trio

from arbd.feed.connection import Connection
from arbd.model import Book, Candle, FeedStatus, Quote, Trade
from arbd.testing.fake import open_fake
from arbd.testing.harness import Harness, run_feed, wait_until
from arbd.testing.market import BookUpdate
from arbd.testing.marketfake import FakeMarket, Out
from arbd_okx.adapter import OkxAdapter
from arbd_okx.fake import OkxFake
from arbd_okx.session import OkxSession

SYMBOLS = ("BTC/USDT", "ETH/USDT")
NATIVES = ("BTC-USDT", "ETH-USDT")
PUBLIC = {f"{channel}:{n}" for channel in ("bbo-tbt", "books", "trades") for n in NATIVES}
BUSINESS = {f"candle1m:{n}" for n in NATIVES}
LIMIT = 20  # virtual seconds for fake-side waits


class RecordingFake(OkxFake):
    """Remembers every trade it printed, so the test can compare texts exactly."""

    def __init__(self, symbols: Any = SYMBOLS, **options: Any) -> None:
        super().__init__(symbols, **options)
        self.printed: dict[str, list[tuple[str, str, str]]] = defaultdict(list)

    def round_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        self.printed[m.symbol] += update.trades
        return super().round_frames(m, update, ts)


def subscribed(fake: OkxFake) -> bool:
    """Every stream of both symbols is subscribed on some live connection."""
    subs: set[str] = set()
    for conn in fake.connections:
        subs |= conn.subscriptions
    return subs >= PUBLIC | BUSINESS


async def started(fake: OkxFake, *, rate: float | None = 10.0) -> None:
    """Wait until the feed subscribed everything; then feed rounds at ``rate`` per second."""
    with trio.fail_after(LIMIT):
        await fake.wait_for(lambda: subscribed(fake))
    if rate is not None:
        fake.start_soon(fake.run_feed, rate)


def public(h: Harness) -> OkxSession:
    """The session of the /public connection (the one carrying books)."""
    for conn in h.connections:
        session = conn.session
        if isinstance(session, OkxSession) and session.books.states:
            return session
    raise AssertionError("no public connection")


def connection_of(h: Harness, session: OkxSession) -> Connection:
    return next(conn for conn in h.connections if conn.session is session)


def books_of(h: Harness, symbol: str) -> list[Book]:
    return [b for b in h.of(Book) if b.symbol == symbol]


def has_books(h: Harness, *symbols: str) -> bool:
    return all(books_of(h, s) for s in symbols)


def assert_invalid_then_valid(h: Harness, symbol: str) -> None:
    """The book went invalid, then valid, and nothing was published for it in between."""
    states = h.book_states(symbol)
    assert states[0] == "invalid" and states[-1] == "valid"
    assert "resyncing" in states
    invalid = next(
        i
        for i, e in enumerate(h.events)
        if isinstance(e, FeedStatus) and e.scope == "book" and e.symbol == symbol
    )
    valid = max(
        i
        for i, e in enumerate(h.events)
        if isinstance(e, FeedStatus) and e.scope == "book" and e.symbol == symbol
    )
    between = h.events[invalid:valid]
    assert not [e for e in between if isinstance(e, Book) and e.symbol == symbol]


def assert_uncrossed(h: Harness) -> None:
    for book in h.of(Book):
        assert Decimal(book.bids[0][0]) < Decimal(book.asks[0][0]), book


async def test_all_four_channels_arrive_normalized_for_two_symbols(virtual_time) -> None:
    fake = RecordingFake()
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS, book_depth=5) as h:
        await started(fake, rate=None)
        await fake.pump(1)  # round 1 always carries a candle push
        await wait_until(lambda: all(_latest(h, Candle, s) for s in SYMBOLS))
        for symbol in SYMBOLS:
            m = fake.market(symbol)
            bar = m.bar
            assert bar is not None
            candle = _latest(h, Candle, symbol)
            assert (candle.start, candle.open, candle.high, candle.low, candle.close) == (
                bar.start_ms,
                m.price(bar.open),
                m.price(bar.high),
                m.price(bar.low),
                m.price(bar.close),
            )
            assert (candle.volume, candle.interval, candle.closed) == (
                m.fmt_volume(bar),
                "1m",
                False,
            )
        await fake.pump(10)
        await wait_until(lambda: all(_synced(h, fake, s) for s in SYMBOLS))
        for symbol in SYMBOLS:
            m = fake.market(symbol)
            (bid, bid_size), (ask, ask_size) = m.book.best()
            quote = _latest(h, Quote, symbol)
            assert (quote.bid, quote.bid_size, quote.ask, quote.ask_size) == (
                bid,
                bid_size,
                ask,
                ask_size,
            )
            book = _latest(h, Book, symbol)
            bids, asks = m.book.snapshot(5)
            assert (book.bids, book.asks, book.depth, book.sequence) == (bids, asks, 5, m.seq)
            trades = [t for t in h.of(Trade) if t.symbol == symbol]
            assert [(t.price, t.size, t.side) for t in trades] == fake.printed[symbol]
            assert trades and [int(t.id) for t in trades] == sorted(int(t.id) for t in trades)
        assert "." in _latest(h, Book, "BTC/USDT").bids[0][0]
        assert len(_latest(h, Book, "BTC/USDT").bids[0][0].partition(".")[2]) == 1  # tick 0.1
        assert {conn.path for conn in fake.connections} == {"/ws/v5/public", "/ws/v5/business"}
        assert h.statuses("book") == []
        assert public(h).stats.ignored == public(h).stats.errors_reported == 0


async def test_sequence_gap_invalidates_and_recovers_one_book(virtual_time) -> None:
    fake = OkxFake(SYMBOLS)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS, stale_after=5.0) as h:
        await started(fake)
        await wait_until(lambda: has_books(h, *SYMBOLS))
        fake.skip_sequence("BTC/USDT")
        await wait_until(lambda: h.book_states("BTC/USDT")[-1:] == ["valid"])
        count = len(books_of(h, "BTC/USDT"))
        await wait_until(lambda: len(books_of(h, "BTC/USDT")) > count + 3)
        assert_invalid_then_valid(h, "BTC/USDT")
        assert h.book_states("ETH/USDT") == []
        assert public(h).stats.sequence_gaps == 1
        assert fake.connection_count == 2


async def test_corrupt_checksum_invalidates_and_recovers_one_book(virtual_time) -> None:
    fake = OkxFake(SYMBOLS, checksum="crc")
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS, stale_after=5.0) as h:
        await started(fake)
        await wait_until(lambda: has_books(h, *SYMBOLS))
        fake.corrupt_checksum("ETH/USDT")
        await wait_until(lambda: h.book_states("ETH/USDT")[-1:] == ["valid"])
        count = len(books_of(h, "ETH/USDT"))
        await wait_until(lambda: len(books_of(h, "ETH/USDT")) > count + 3)
        assert_invalid_then_valid(h, "ETH/USDT")
        assert h.book_states("BTC/USDT") == []
        assert public(h).stats.checksum_failures == 1


async def test_crossed_book_is_never_published(virtual_time) -> None:
    fake = OkxFake(SYMBOLS)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS, stale_after=5.0) as h:
        await started(fake)
        await wait_until(lambda: has_books(h, *SYMBOLS))
        assert fake.send_crossed_book("BTC/USDT") == 1
        await wait_until(lambda: h.book_states("BTC/USDT")[-1:] == ["valid"])
        count = len(books_of(h, "BTC/USDT"))
        await wait_until(lambda: len(books_of(h, "BTC/USDT")) > count + 3)
        assert_invalid_then_valid(h, "BTC/USDT")
        assert_uncrossed(h)
        assert public(h).stats.crossed_books >= 1
        assert h.book_states("ETH/USDT") == []


async def test_a_stall_with_pongs_is_detected_as_stale_and_recovers(virtual_time) -> None:
    fake = OkxFake(SYMBOLS)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS, stale_after=2.0) as h:
        await started(fake)
        await wait_until(lambda: has_books(h, *SYMBOLS) and h.of(Quote))
        fake.faults.stall = True
        await wait_until(lambda: _stale(h) >= {("price", "BTC/USDT"), ("book", "ETH/USDT")})
        await trio.sleep(3.0)  # stalled on, across a resubscribe that gets acked only
        fake.faults.stall = False
        stalled_books = len(h.of(Book))
        await wait_until(lambda: not _stale_now(h) and len(h.of(Book)) > stalled_books + 6)
        await wait_until(lambda: all(_synced(h, fake, s) for s in SYMBOLS))
        assert fake.connection_count == 2  # recovered on the same connections
        assert h.ctx.reconnects == {}
        assert connection_of(h, public(h)).stats.resubscribes >= 2
        assert_uncrossed(h)


async def test_forced_disconnect_reconnects_and_resubscribes(virtual_time) -> None:
    fake = OkxFake(SYMBOLS, disconnect_after=5.0)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS) as h:
        await started(fake)
        await wait_until(lambda: has_books(h, *SYMBOLS))
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: fake.forced_disconnects >= 2)
            await fake.wait_for(lambda: fake.connection_count >= 4 and subscribed(fake))
        counts = {s: len(books_of(h, s)) for s in SYMBOLS}
        await wait_until(lambda: all(len(books_of(h, s)) > counts[s] + 3 for s in SYMBOLS))
        await wait_until(lambda: all(_synced(h, fake, s) for s in SYMBOLS))
        assert h.ctx.reconnects.get("peer_closed", 0) >= 2
        assert h.statuses("book") == []  # each new connection starts from a fresh snapshot
        assert_uncrossed(h)


async def test_garbage_and_unknown_frames_are_counted_and_skipped(virtual_time) -> None:
    fake = OkxFake(SYMBOLS)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS) as h:
        await started(fake, rate=None)
        fake.faults.garbage_every = 3
        for conn in fake.connections:
            fake.send_conn_count(conn)
        await fake.pump(10)
        await wait_until(lambda: all(_synced(h, fake, s) for s in SYMBOLS))
        session = public(h)
        assert connection_of(h, session).stats.decode_errors >= 5
        assert session.stats.ignored >= 1
        assert fake.connection_count == 2
        assert h.ctx.reconnects == {}
        assert h.statuses("book") == []


async def test_an_error_frame_is_surfaced_and_not_fatal(
    virtual_time, caplog: pytest.LogCaptureFixture
) -> None:
    fake = OkxFake(SYMBOLS)
    fake.reject_symbol("ETH/USDT")  # listed, but OKX refuses its subscribes
    caplog.set_level(logging.WARNING)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS, stale_after=2.0) as h:
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: fake.errors_sent == 4)  # 3 on /public, 1 on /business
        fake.start_soon(fake.run_feed, 10.0)
        await wait_until(lambda: _synced(h, fake, "BTC/USDT") and _latest(h, Candle, "BTC/USDT"))
        quotes = len(h.of(Quote))
        await trio.sleep(5 * 2.0)  # five stale deadlines of the refused subscriptions
        session = public(h)
        assert session.stats.errors_reported == 3
        assert ("books", "ETH-USDT") not in session.acknowledged
        assert ("books", "BTC-USDT") in session.acknowledged
        refusals = [r.getMessage() for r in caplog.records if "error 60018" in r.getMessage()]
        assert len(refusals) == 4
        assert any("instId:ETH-USDT" in line and "subscribe" in line for line in refusals)
        assert not [line for line in refusals if "okx: error" in line]  # the driver prefixes
        # Each error names its arg: that subscription is refused, with OKX's words, once.
        refused = [s for s in h.statuses("subscription") if s.state == "refused"]
        assert sorted((s.channel, s.symbol) for s in refused) == [
            (channel, "ETH/USDT") for channel in ("book", "candles", "price", "trades")
        ]
        for status in refused:
            channel = {"book": "books", "candles": "candle1m", "price": "bbo-tbt"}.get(
                status.channel or "", status.channel
            )
            assert status.reason == (
                f"Subscribe failed, wrong URL or channel:{channel},instId:ETH-USDT doesn't exist. "
                "Please use the correct URL, channel and parameters referring to API document."
            )
        assert not _stale(h)
        assert not [e for e in h.events if not isinstance(e, FeedStatus) and e.symbol == "ETH/USDT"]
        assert len(h.of(Quote)) > quotes + 50  # BTC/USDT kept flowing
        assert fake.connection_count == 2
        assert h.ctx.reconnects == {}


async def test_no_snapshot_mode_bootstraps_from_rest_and_recovers_a_gap(virtual_time) -> None:
    fake = OkxFake(SYMBOLS, ws_snapshot=False)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS, stale_after=5.0) as h:
        await started(fake)
        await wait_until(lambda: all(_synced(h, fake, s) for s in SYMBOLS))
        books_asked = [q for path, q in fake.http_requests if path == "/api/v5/market/books"]
        assert sorted(q["instId"] for q in books_asked) == sorted(NATIVES)
        assert h.statuses("book") == []
        fake.skip_sequence("BTC/USDT")
        await wait_until(lambda: h.book_states("BTC/USDT")[-1:] == ["valid"])
        await wait_until(lambda: _synced(h, fake, "BTC/USDT"))
        assert_invalid_then_valid(h, "BTC/USDT")
        assert len(fake.http_requests) > len(books_asked) + 1  # a second REST book for BTC
        assert h.book_states("ETH/USDT") == []


async def test_a_maintenance_seq_reset_is_not_a_gap(virtual_time) -> None:
    fake = OkxFake(SYMBOLS)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS) as h:
        await started(fake, rate=None)
        await fake.pump(3)
        before = fake.market("BTC/USDT").seq
        fake.reset_sequence("BTC/USDT")
        await fake.pump(3)
        await wait_until(lambda: all(_synced(h, fake, s) for s in SYMBOLS))
        assert fake.market("BTC/USDT").seq < before
        assert h.statuses("book") == []
        assert public(h).stats.sequence_gaps == 0


async def test_quiet_connections_are_kept_alive_with_text_pings(virtual_time) -> None:
    fake = OkxFake(SYMBOLS)
    quiet = ("trades", "candles")  # channels that may be silent (price and book go stale)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS, channels=quiet) as h:
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: sum(len(c.subscriptions) for c in fake.connections) == 4)
        await trio.sleep(95.0)  # no market data at all: only the adapter's pings keep them open
        assert fake.idle_closes == 0
        assert fake.connection_count == 2
        assert h.ctx.reconnects == {}
        for conn in fake.connections:
            assert conn.received.count("ping") >= 3


async def test_an_upgrade_notice_makes_the_adapter_reconnect(virtual_time) -> None:
    fake = OkxFake(SYMBOLS)
    async with open_fake(fake), run_feed(fake, OkxAdapter, symbols=SYMBOLS) as h:
        await started(fake)
        await wait_until(lambda: has_books(h, *SYMBOLS))
        (conn,) = [c for c in fake.connections if c.path == "/ws/v5/public"]
        assert fake.send_upgrade_notice(conn)
        with trio.fail_after(LIMIT):
            await fake.wait_for(lambda: fake.connection_count == 3 and subscribed(fake))
        count = len(books_of(h, "BTC/USDT"))
        await wait_until(lambda: len(books_of(h, "BTC/USDT")) > count + 3)
        assert sum(h.ctx.reconnects.values()) == 1


# -- helpers ----------------------------------------------------------------------------------


def _latest(h: Harness, kind: type[Any], symbol: str) -> Any:
    found = [e for e in h.of(kind) if e.symbol == symbol]
    return found[-1] if found else None


def _synced(h: Harness, fake: OkxFake, symbol: str) -> bool:
    """The feed's latest book and quote of ``symbol`` are the fake's current ones."""
    m = fake.market(symbol)
    book, quote = _latest(h, Book, symbol), _latest(h, Quote, symbol)
    if book is None or quote is None:
        return False
    (bid, _), (ask, _) = m.book.best()
    return bool(book.sequence == m.seq and (quote.bid, quote.ask) == (bid, ask))


def _stale(h: Harness) -> set[tuple[str, str]]:
    return {(s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "stale"}


def _stale_now(h: Harness) -> set[tuple[str | None, str | None]]:
    last: dict[tuple[str | None, str | None], str] = {}
    for status in h.statuses("subscription"):
        last[(status.channel, status.symbol)] = status.state
    return {key for key, state in last.items() if state == "stale"}
