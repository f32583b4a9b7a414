"""What ``ExchangeFeed.status()`` says about a feed against the simplex fake."""

from __future__ import annotations

import msgspec

from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

from .conftest import FAST, running, wait_until


def status_of(h, book_state=None):
    clock = h.ctx.clock
    return h.feed.status(book_state or {}, clock.now(), clock.wall_ns())


async def test_live_then_degraded_by_an_invalid_book(virtual_time):
    async with open_fake(SimplexFake()) as fake, running(fake) as h:
        await wait_until(lambda: h.feed.supervisors and h.feed.supervisors[0].state == "live")
        status = status_of(h, {("simplex", "BTC/USDT"): "valid"})
        assert (status.state, status.connections, status.connections_live) == ("live", 1, 1)
        assert (status.books_valid, status.books_invalid) == (1, 0)
        resyncing = status_of(h, {("simplex", "BTC/USDT"): "resyncing"})
        assert (resyncing.state, resyncing.books_invalid) == ("degraded", 1)


async def test_down_after_being_live_and_starting_before(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        fake.faults.refuse_status = 503
        async with running(fake) as h:
            await wait_until(lambda: fake.handshake_refusals >= 1)
            assert status_of(h).state == "starting"  # never connected yet
            fake.faults.refuse_status = None
            await wait_until(lambda: h.feed.supervisors[0].state == "live", timeout=60)
            fake.faults.refuse_status = 503
            fake.drop_all()
            await wait_until(lambda: h.feed.supervisors[0].state == "backoff")
            status = status_of(h)
            assert (status.state, status.connections_live) == ("down", 0)
            assert status.reconnects >= 1


async def test_failed_once_every_connection_gave_up(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        fake.faults.refuse_status = 503
        limited = msgspec.structs.replace(FAST, max_attempts=2)
        async with running(fake, feed=limited) as h:
            await wait_until(lambda: h.feed.supervisors and h.feed.supervisors[0].gave_up)
            status = status_of(h)
            assert status.state == "failed"
            assert "gave up" in status.error
