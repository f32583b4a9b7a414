"""Binance at scale: many books, each needing a REST snapshot of weight 50, under Binance's
6000-per-minute weight allowance, which the fake enforces (429 past it). arbd's real feed in
virtual time: every book becomes valid on the first connection, without a single 429."""

from __future__ import annotations

from typing import Any

import trio

from arbd.model import Book
from arbd.testing.fake import open_fake
from arbd.testing.harness import run_feed
from arbd.testing.marketfake import synthetic_symbols
from arbd_binance.adapter import BinanceAdapter
from arbd_binance.fake import BinanceFake
from arbd_binance.limits import EXCHANGE_INFO_WEIGHT, REST_WEIGHT_PER_MINUTE

SYMBOLS = synthetic_symbols(150)
SNAPSHOT_WEIGHT = 50  # limit=1000, what depth 10 asks for


async def test_150_books_all_become_valid_under_the_weight_budget_without_a_reconnect(
    virtual_time: Any,
) -> None:
    fake = BinanceFake(SYMBOLS, seed=5)
    fake.faults.http_delay = 0.2  # 150 snapshots one after another: 30 s, 15 stale deadlines
    async with (
        open_fake(fake),
        run_feed(
            fake,
            BinanceAdapter,
            symbols=SYMBOLS,
            channels=("book",),
            book_depth=10,
            stale_after=2.0,
        ) as h,
    ):
        fake.start_soon(fake.run_feed, 2.0)
        published: set[str] = set()
        with trio.fail_after(300):  # virtual seconds
            while len(published) < len(SYMBOLS):
                published = {e.symbol for e in h.events if type(e) is Book}
                await trio.sleep(1.0)

        # 150 x 50 + 20 = 7520 weight does not fit one minute: the budget made the last
        # snapshots wait for the next one, and the exchange never had to refuse anything.
        assert fake.weight_refusals == 0
        log = fake.weight_log
        assert sum(w for _, w in log) == EXCHANGE_INFO_WEIGHT + len(SYMBOLS) * SNAPSHOT_WEIGHT
        for start, _ in log:
            window = sum(w for t, w in log if start <= t < start + 60.0)
            assert window <= REST_WEIGHT_PER_MINUTE
        assert log[-1][0] - log[0][0] >= 60.0
        assert h.ctx.rest.budget_waits >= 1

        # Books waiting for their snapshot were never taken for stale: no resubscribe, no
        # reconnect, the one connection kept every snapshot it fetched.
        assert h.statuses("subscription") == []
        assert fake.connection_count == 1 and h.ctx.reconnects == {}
        (connection,) = h.connections
        assert connection.stats.resubscribes == 0
        assert all(s.state == "valid" for s in h.statuses("book"))
