"""The real Binance adapter and arbd's real feed against the Binance fake over loopback, in
virtual time: channels, the snapshot procedure after gaps and crossed books, stalls, forced
disconnects, garbage, error frames, the message-rate limit and 24 h rotation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import trio

from arbd.model import Book, Candle, FeedStatus, Quote, Trade
from arbd.testing.fake import open_fake
from arbd.testing.harness import Harness, run_feed, wait_until
from arbd_binance import adapter as binance_adapter
from arbd_binance.adapter import BinanceAdapter
from arbd_binance.fake import BinanceFake, pad8

SYMBOLS = ("BTC/USDT", "ETH/USDT")
STREAMS = {
    f"{native}@{suffix}"
    for native in ("btcusdt", "ethusdt")
    for suffix in ("bookTicker", "trade", "depth@100ms", "kline_1m")
}


async def subscribed(fake: BinanceFake, count: int = 1) -> None:
    """Wait until the ``count``-th connection ever opened holds every stream."""
    with trio.fail_after(10):
        await fake.wait_for(lambda: fake.connection_count >= count and fake.connections)
        conn = fake.connections[-1]
        await fake.wait_for(lambda: conn.subscriptions >= STREAMS)


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """``wait_until`` polling every 100 ms instead of 10 ms: under the autojump clock each poll
    costs real idle time, and these waits span many virtual seconds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.1)


def refused(h: Harness) -> list[FeedStatus]:
    return [s for s in h.statuses("subscription") if s.state == "refused"]


def books(h: Harness, symbol: str) -> list[Book]:
    return [b for b in h.of(Book) if b.symbol == symbol]


def synced(fake: BinanceFake, h: Harness, symbol: str) -> bool:
    """The newest published book of ``symbol`` is at the fake's current update id."""
    published = books(h, symbol)
    return bool(published) and published[-1].sequence == fake.market(symbol).seq


def states_in_order(h: Harness, symbol: str) -> list[tuple[int, str]]:
    """(event index, state) of each book status of ``symbol``."""
    return [
        (i, e.state)
        for i, e in enumerate(h.events)
        if getattr(e, "scope", "") == "book" and e.symbol == symbol
    ]


def no_book_while_invalid(h: Harness, symbol: str) -> None:
    """No Book of ``symbol`` between an ``invalid`` and the next ``valid``."""
    invalid = False
    for event in h.events:
        if getattr(event, "scope", "") == "book" and event.symbol == symbol:
            invalid = event.state != "valid"
        elif isinstance(event, Book) and event.symbol == symbol:
            assert not invalid, "a Book was published while the book was invalid"


async def test_all_channels_arrive_normalized_with_the_fake_s_exact_text(virtual_time: Any) -> None:
    async with open_fake(BinanceFake(seed=1)) as fake:
        async with run_feed(fake, BinanceAdapter, symbols=SYMBOLS, book_depth=10) as h:
            await subscribed(fake)
            # Klines are pushed every 2 s of market time (20 rounds): rounds 1 and 21.
            await fake.pump(21)
            await wait_until(lambda: all(synced(fake, h, s) for s in SYMBOLS))
            for symbol in SYMBOLS:
                m = fake.market(symbol)
                bids, asks = m.book.snapshot(10)
                book = books(h, symbol)[-1]
                assert [tuple(level) for level in book.bids] == [
                    (pad8(p), pad8(q)) for p, q in bids
                ]
                assert [tuple(level) for level in book.asks] == [
                    (pad8(p), pad8(q)) for p, q in asks
                ]
                (bid, bid_size), (ask, ask_size) = m.book.best()
                quote = [q for q in h.of(Quote) if q.symbol == symbol][-1]
                assert (quote.bid, quote.bid_size, quote.ask, quote.ask_size) == (
                    pad8(bid),
                    pad8(bid_size),
                    pad8(ask),
                    pad8(ask_size),
                )
                trades = [t for t in h.of(Trade) if t.symbol == symbol]
                assert trades and trades[-1].id == str(m.trade_id)
                assert [t.sequence for t in trades] == list(
                    range(trades[0].sequence, m.trade_id + 1)
                )
                candle = [c for c in h.of(Candle) if c.symbol == symbol][-1]
                assert (candle.interval, candle.start) == ("1m", m.bar.start_ms if m.bar else -1)
                assert candle.close == pad8(m.price(m.bar.close if m.bar else 0))
            assert h.book_states("BTC/USDT") == h.book_states("ETH/USDT") == []
            assert h.ctx.reconnects == {}


async def test_a_lost_depth_event_invalidates_one_book_until_a_new_snapshot(
    virtual_time: Any,
) -> None:
    async with open_fake(BinanceFake(seed=2)) as fake:
        async with run_feed(fake, BinanceAdapter, symbols=SYMBOLS) as h:
            await subscribed(fake)
            await fake.pump(2)
            await wait_until(lambda: all(synced(fake, h, s) for s in SYMBOLS))
            snapshots = len([p for p, _ in fake.http_requests if p == "/api/v3/depth"])
            fake.skip_sequence("BTC/USDT")
            await fake.pump(2)
            await wait_until(lambda: "valid" in h.book_states("BTC/USDT"))
            await fake.pump(2)
            await wait_until(lambda: all(synced(fake, h, s) for s in SYMBOLS))
            assert h.book_states("BTC/USDT") == ["invalid", "resyncing", "valid"]
            assert h.book_states("ETH/USDT") == []
            no_book_while_invalid(h, "BTC/USDT")
            again = [p for p, q in fake.http_requests if p == "/api/v3/depth"]
            assert len(again) == snapshots + 1  # one fresh snapshot, for BTCUSDT only
            assert fake.http_requests[-1][1]["symbol"] == "BTCUSDT"
            assert h.connection is not None and h.connection.session.stats.sequence_gaps == 1


async def test_a_crossed_book_is_never_published_and_is_resynced(virtual_time: Any) -> None:
    async with open_fake(BinanceFake(seed=3)) as fake:
        async with run_feed(fake, BinanceAdapter, symbols=SYMBOLS) as h:
            await subscribed(fake)
            await fake.pump(2)
            await wait_until(lambda: all(synced(fake, h, s) for s in SYMBOLS))
            assert fake.send_crossed_book("ETH/USDT") == 1
            await fake.pump(2)  # the fake's own book is repaired by the next round
            await wait_until(lambda: "valid" in h.book_states("ETH/USDT"))
            await fake.pump(1)
            await wait_until(lambda: synced(fake, h, "ETH/USDT"))
    assert h.book_states("ETH/USDT") == ["invalid", "resyncing", "valid"]
    assert h.book_states("BTC/USDT") == []
    no_book_while_invalid(h, "ETH/USDT")
    for book in h.of(Book):
        assert float(book.bids[0][0]) < float(book.asks[0][0])
    assert h.connection is None or h.connection.session.stats.crossed_books == 1


async def test_a_stall_with_pings_answered_is_detected_and_recovered(virtual_time: Any) -> None:
    fake = BinanceFake(seed=4)
    fake.ping_interval = 0.5  # pings keep flowing during the stall
    async with open_fake(fake):
        async with run_feed(fake, BinanceAdapter, symbols=SYMBOLS, stale_after=2.0) as h:
            await subscribed(fake)
            conn = fake.connections[0]
            fake.start_soon(fake.run_feed, 10.0)
            await until(lambda: len(h.of(Quote)) > 10)
            fake.faults.stall = True
            pongs = conn.pongs_received
            await until(lambda: any(s.state == "stale" for s in h.statuses("subscription")))
            stale = {(s.channel, s.symbol) for s in h.statuses("subscription")}
            assert {("price", "BTC/USDT"), ("book", "ETH/USDT")} <= stale
            assert conn.pongs_received > pongs  # the connection itself stayed healthy
            # The session resubscribed on the same connection: UNSUBSCRIBE then SUBSCRIBE.
            with trio.fail_after(5):
                await fake.wait_for(lambda: any("UNSUBSCRIBE" in str(m) for m in conn.received))
            fake.faults.stall = False
            await until(lambda: any(s.state == "live" for s in h.statuses("subscription")))
            # Depth events were lost in the stall: the books resync and flow again.
            mark = len(h.events)
            await until(
                lambda: (
                    {b.symbol for b in h.of(Book)[-20:]} == set(SYMBOLS)
                    and len(h.events) > mark + 50
                )
            )
            assert fake.connection_count == 1
            assert h.ctx.reconnects == {}
            assert h.connection is not None and h.connection.stats.resubscribes >= 1
            for symbol in SYMBOLS:
                no_book_while_invalid(h, symbol)


async def test_forced_disconnect_reconnects_and_restores_everything(virtual_time: Any) -> None:
    async with open_fake(BinanceFake(seed=5, disconnect_after=5.0)) as fake:
        async with run_feed(fake, BinanceAdapter, symbols=SYMBOLS) as h:
            await subscribed(fake)
            fake.start_soon(fake.run_feed, 10.0)
            with trio.fail_after(20):
                await fake.wait_for(lambda: fake.forced_disconnects == 1)
            await subscribed(fake, count=2)
            mark = len(h.events)
            await until(
                lambda: {b.symbol for b in h.of(Book) if h.events.index(b) > mark} >= set(SYMBOLS)
            )
            assert fake.connection_count == 2
            assert h.ctx.reconnects.get("peer_closed") == 1
            assert fake.connections[-1].subscriptions == STREAMS
            trades = [t.sequence for t in h.of(Trade) if t.symbol == "BTC/USDT"]
            assert trades[-1] is not None and trades[-1] > trades[0]


async def test_garbage_and_unknown_messages_are_counted_and_skipped(virtual_time: Any) -> None:
    async with open_fake(BinanceFake(seed=6)) as fake:
        async with run_feed(fake, BinanceAdapter, symbols=SYMBOLS) as h:
            await subscribed(fake)
            conn = fake.connections[0]
            fake.faults.garbage_every = 3
            fake.send_event(conn, "btcusdt@avgPrice", {"e": "avgPrice", "E": 1, "s": "BTCUSDT"})
            fake.send_event(conn, "btcusdt@blockTrade", {"e": "blockTrade", "E": 1})
            await fake.pump(4)
            await wait_until(lambda: all(synced(fake, h, s) for s in SYMBOLS))
            assert h.connection is not None
            assert h.connection.stats.decode_errors >= 4
            assert h.connection.session.stats.ignored >= 2
            assert fake.connection_count == 1
            assert h.ctx.reconnects == {}


async def test_an_error_frame_is_surfaced_and_not_fatal(
    virtual_time: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake = BinanceFake(seed=7, reject_symbols=["ETH/USDT"])
    caplog.set_level(logging.WARNING)
    async with open_fake(fake):
        async with run_feed(fake, BinanceAdapter, symbols=SYMBOLS, stale_after=2.0) as h:
            fake.start_soon(fake.run_feed, 10.0)
            # The whole first SUBSCRIBE fails ("invalid stream", no stream named): the session
            # asks again by symbol (BTCUSDT's streams are acked), then ETHUSDT's stream by
            # stream, and refuses each.
            await until(lambda: len(refused(h)) == 4)
            await trio.sleep(4 * 2.0)  # four stale deadlines
            assert sorted((s.channel, s.symbol, s.reason) for s in refused(h)) == [
                (channel, "ETH/USDT", "Invalid request: invalid stream")
                for channel in ("book", "candles", "price", "trades")
            ]
            stale = [
                (s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "stale"
            ]
            assert not stale, stale
            assert {q.symbol for q in h.of(Quote)} == {"BTC/USDT"}
            assert {b.symbol for b in h.of(Book)} == {"BTC/USDT"}
            mark = len(h.of(Quote))
            await fake.pump(5)  # BTC/USDT keeps flowing
            await until(lambda: len(h.of(Quote)) > mark)
            assert fake.connection_count == 1
            assert h.ctx.reconnects == {}
            assert fake.connections[0].subscriptions == {
                s for s in STREAMS if s.startswith("btcusdt@")
            }
            assert h.connection is not None
            assert h.connection.session.stats.errors_reported == 1 + 1 + 4
    messages = [r.getMessage() for r in caplog.records]
    # Logged by the driver with the exchange and connection id; the notice itself has neither.
    assert any(
        m.startswith("binance ")
        and ": error 2: Invalid request: invalid stream (request 1: SUBSCRIBE" in m
        for m in messages
    )
    assert not [m for m in messages if "binance: error" in m]


async def test_many_subscribe_frames_stay_within_five_messages_a_second(
    virtual_time: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One stream per SUBSCRIBE frame: eight frames at once, as 1024 streams would be eleven.
    monkeypatch.setattr(binance_adapter, "MAX_PARAMS_PER_FRAME", 1)
    async with open_fake(BinanceFake(seed=8)) as fake:
        async with run_feed(fake, BinanceAdapter, symbols=SYMBOLS):
            await subscribed(fake)
            with trio.fail_after(10):
                await fake.wait_for(lambda: len(fake.connections[0].received) == 8)
            await trio.sleep(2.0)
            assert fake.rate_limit_closes == 0
            assert fake.connection_count == 1


async def test_rotation_opens_the_replacement_first_without_a_trade_gap(
    virtual_time: Any,
) -> None:
    async with open_fake(BinanceFake(["BTC/USDT"], seed=9)) as fake:
        # rotate_after 14 s, rotation_margin 10 s: the replacement opens after 4 s.
        async with run_feed(fake, BinanceAdapter, symbols=["BTC/USDT"], rotate_after=14.0) as h:
            fake.start_soon(fake.run_feed, 10.0)
            with trio.fail_after(20):  # both open at once: the replacement came first
                await fake.wait_for(lambda: len(fake.connections) == 2)
            await until(lambda: h.feed.supervisors[0].rotations >= 1)
            await trio.sleep(3.0)
            trades = [t.sequence for t in h.of(Trade)]
            assert len(trades) > 30
            assert trades == list(range(trades[0], trades[0] + len(trades)))  # no gap, no dup
            assert fake.connection_count == 2 and len(fake.connections) == 1
            assert h.ctx.reconnects == {}
            assert h.book_states("BTC/USDT") == []
