"""Announcements that outlive their connection (found by the soak): a book announced
resyncing and a subscription reported stale must be announced valid / live again by the
connection that replaces the one that announced them."""

from __future__ import annotations

from types import SimpleNamespace

import trio

from arbd.exchange.adapter import ConnectionPlan
from arbd.feed.carryover import RESYNCED_REASON, SlotMemory, handover_sink
from arbd.feed.clock import TrioClock
from arbd.feed.connection import Connection
from arbd.feed.handover import Handover
from arbd.model import Book, Event, FeedStatus, Quote, Subscription
from arbd.testing.events import sample_quote, sample_status
from arbd.testing.fake import open_fake
from arbd_simplex.adapter import SimplexAdapter
from arbd_simplex.fake import SimplexFake

from .conftest import running, wait_until

ALL = {"price:BTC-USDT", "trades:BTC-USDT", "book:BTC-USDT", "candles:BTC-USDT"}


def book(symbol: str = "BTC/USDT") -> Book:
    return Book(
        exchange="binance",
        symbol=symbol,
        bids=[("1", "1")],
        asks=[("2", "1")],
        depth=20,
        timestamp=1,
        received_ns=1_000_000,
    )


def test_a_book_announced_not_valid_is_announced_valid_before_its_next_book():
    memory = SlotMemory("binance")
    quiet = [sample_quote(), book()]
    assert memory.settle(quiet) is quiet  # nothing to do: the same list, no copy
    memory.settle([sample_status("binance", "resyncing", "BTC/USDT")])
    assert memory.unsettled == {"BTC/USDT"}
    out = memory.settle([sample_quote(), book("ETH/USDT"), book(), book()])
    kinds = [type(e).__name__ for e in out]
    assert kinds == ["Quote", "Book", "FeedStatus", "Book", "Book"]
    status = out[2]
    assert isinstance(status, FeedStatus)
    assert (status.scope, status.state, status.symbol) == ("book", "valid", "BTC/USDT")
    assert status.reason == RESYNCED_REASON
    assert memory.unsettled == set()


def test_a_session_that_announces_valid_itself_gets_no_second_one():
    memory = SlotMemory("binance")
    memory.settle([sample_status("binance", "invalid", "BTC/USDT")])
    batch = [sample_status("binance", "valid", "BTC/USDT"), book()]
    assert memory.settle(batch) is batch
    assert memory.unsettled == set()


def never_published_while_not_valid(events: list[Event]) -> bool:
    state = "valid"
    for event in events:
        if isinstance(event, FeedStatus) and event.scope == "book":
            state = event.state
        elif isinstance(event, Book) and state != "valid":
            return False
    return True


async def test_a_reconnect_after_stale_data_announces_subscriptions_live_and_books_valid(
    virtual_time,
):
    async with open_fake(SimplexFake()) as fake:
        async with running(fake, stale_after=2.0) as h:
            conn = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: conn.subscriptions >= ALL)
            fake.start_soon(fake.run_feed, 20.0)
            await wait_until(lambda: len(h.of(Quote)) > 5 and h.of(Book))
            # Stalled for three deadlines: stale, two resubscribes, then a new connection.
            fake.faults.stall = True
            with trio.fail_after(60):
                await fake.wait_for(lambda: fake.connection_count == 2)
            assert h.ctx.reconnects.get("stale") == 1
            assert h.book_states("BTC/USDT")[-1] == "resyncing"
            fake.faults.stall = False
            second = fake.connections[-1]
            with trio.fail_after(10):
                await fake.wait_for(lambda: second.subscriptions >= ALL)
            await wait_until(lambda: h.book_states("BTC/USDT")[-1] == "valid")
            await wait_until(
                lambda: (
                    {(s.channel, s.state) for s in h.statuses("subscription")[-2:]}
                    == {("price", "live"), ("book", "live")}
                )
            )
            assert never_published_while_not_valid(h.events)
            assert h.statuses("connection")[-1].state == "live"


def test_during_a_hand_over_only_what_passes_the_filter_counts():
    """Found by the soak: the replacement connection's ``valid`` and unsequenced books are
    dropped by the hand-over filter while the old connection is primary; if they were
    counted, the replacement's later books (once primary) came without ``valid`` after the
    old connection's ``resyncing``."""
    published: list[Event] = []
    memory = SlotMemory("kraken")
    old, new = object(), object()
    handover = Handover(primary=old)
    old_sink = handover_sink(published.extend, memory, handover, old)
    new_sink = handover_sink(published.extend, memory, handover, new)
    old_sink([sample_status("kraken", "resyncing", "BTC/USDT")])
    new_sink([book()])  # not primary yet: dropped, and the book stays unsettled
    assert memory.unsettled == {"BTC/USDT"}
    handover.primary = new
    new_sink([book()])
    assert never_published_while_not_valid(published)
    assert [type(e).__name__ for e in published] == ["FeedStatus", "FeedStatus", "Book"]


async def test_a_rotation_away_from_a_stale_connection_announces_the_subscriptions_live(
    virtual_time,
):
    """Found by the soak: the replacement saw the data and said ``live`` while it was not yet
    primary, so the hand-over filter dropped it, and the old connection's ``stale`` stood."""
    async with open_fake(SimplexFake()) as fake:
        # rotate_after 15 s with rotation_margin 10 s: the replacement opens at 5 s.
        async with running(fake, stale_after=2.0, rotate_after=15.0) as h:
            first = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: first.subscriptions >= ALL)
            fake.start_soon(fake.run_feed, 20.0)
            await wait_until(lambda: len(h.of(Quote)) > 5 and h.of(Book))
            first.faults.stall = True  # this connection only: its replacement gets data
            await wait_until(
                lambda: any(s.state == "stale" for s in h.statuses("subscription")), 10
            )
            await wait_until(lambda: h.feed.supervisors[0].rotations >= 1, 30)
            assert fake.connection_count == 2

            def last() -> dict[tuple[str, str], str]:
                return {(s.channel, s.symbol): s.state for s in h.statuses("subscription")}

            # Whenever the replacement's watchdog ticked (before or after the switch), the
            # subscriptions end up announced live.
            await wait_until(
                lambda: last() == {("price", "BTC/USDT"): "live", ("book", "BTC/USDT"): "live"},
                5,
            )
            assert never_published_while_not_valid(h.events)


async def test_taking_over_announces_where_the_new_primary_differs():
    """The unit under the rotation test: what the previous primary left stale and the new one
    receives is announced live; what only the new one has stale is announced stale."""
    price, book_sub, trades = (
        Subscription("price", "BTC/USDT"),
        Subscription("book", "BTC/USDT"),
        Subscription("trades", "BTC/USDT"),
    )
    plan = ConnectionPlan(url="ws://x", subscriptions=(price, book_sub, trades))
    published: list[Event] = []
    conn = Connection(
        conn_id="simplex-1.2",
        slot="simplex-1",
        spec=SimplexAdapter.spec,
        session=SimpleNamespace(plan=plan),  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        sink=published.extend,
        clock=TrioClock(),
        stale_after=2.0,
        not_live=[price, trades],  # trades is not watched: not inherited
    )
    assert conn.not_live == {price}
    conn.stale = {book_sub}  # since then: price came, the book went quiet
    conn.take_over({price})
    said = [(e.channel, e.state) for e in published if isinstance(e, FeedStatus)]
    assert said == [("price", "live"), ("book", "stale")]
