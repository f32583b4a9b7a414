"""The market-fake base: rounds, topic fan-out, candles, book faults, forced disconnects."""

from __future__ import annotations

import json

import trio

from arbd.testing.client import open_probe
from arbd.testing.fake import FakeConnection, open_fake
from arbd.testing.market import BookUpdate
from arbd.testing.marketfake import FakeMarket, MarketFake, Out


class TinyFake(MarketFake):
    """Subscribing is ``sub <topic>``; each round sends a book frame carrying a sequence."""

    def on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        assert isinstance(message, str)
        conn.subscriptions.add(message.removeprefix("sub "))
        conn.send_text("ok")

    def book_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        prev = m.seq
        m.seq += 2 if m.take_skip() else 1
        body = {"prev": prev, "seq": m.seq, "bids": update.bids, "asks": update.asks}
        return [(f"book:{m.native}", json.dumps(body))]

    def round_frames(self, m: FakeMarket, update: BookUpdate, ts: int) -> list[Out]:
        bars = m.candle(ts, update.trades, self.candle_interval_ms)
        candle = {"start": bars[-1].start_ms, "closed": [b.closed for b in bars]}
        return [*self.book_frames(m, update, ts), (f"candle:{m.native}", json.dumps(candle))]


async def test_frames_reach_only_subscribers_and_a_skip_shows_as_a_gap():
    async with open_fake(TinyFake(["BTC/USDT"], seed=3)) as fake:
        async with open_probe(fake.ws_url("/ws")) as probe:
            probe.send_text("sub book:BTC-USDT")
            with trio.fail_after(5):
                assert await probe.receive() == "ok"
                await fake.pump(3)
                frames = [json.loads(await probe.receive()) for _ in range(3)]
                assert [f["seq"] - f["prev"] for f in frames] == [1, 1, 1]
                fake.skip_sequence("BTC/USDT")
                await fake.pump(1)
                assert json.loads(await probe.receive())["seq"] - frames[-1]["seq"] == 2


async def test_a_crossed_book_is_broadcast_and_repaired_next_round():
    async with open_fake(TinyFake(["BTC/USDT"], seed=3)) as fake:
        book = fake.market("BTC/USDT").book
        async with open_probe(fake.ws_url("/ws")) as probe:
            probe.send_text("sub book:BTC-USDT")
            with trio.fail_after(5):
                await probe.receive()
                assert fake.send_crossed_book("BTC/USDT") == 1
                crossed = json.loads(await probe.receive())
                assert float(crossed["bids"][0][0]) > float(book.best()[1][0])
                await fake.pump(1)
                repair = json.loads(await probe.receive())
                assert [crossed["bids"][0][0], "0.00000"] in repair["bids"]
                assert max(book.bids) < min(book.asks)


def test_candles_close_when_the_minute_turns():
    now = [60_000 * 10 + 59_000]
    fake = TinyFake(["BTC/USDT"], clock=lambda: now[0])
    m = fake.market("BTC/USDT")
    first = m.candle(now[0], [("64000.00", "0.5", "buy")], 60_000)
    assert [b.closed for b in first] == [False] and m.fmt_volume(first[0]) == "0.50000"
    now[0] += 2_000
    rolled = m.candle(now[0], [], 60_000)
    assert [b.closed for b in rolled] == [True, False]
    assert rolled[1].open == rolled[0].close and rolled[1].volume == 0


async def test_connections_are_closed_after_their_lifetime(virtual_time):
    async with open_fake(TinyFake(["BTC/USDT"], disconnect_after=60.0)) as fake:
        async with open_probe(fake.ws_url("/ws")):
            conn = await fake.wait_connected()
            opened = trio.current_time()
            with trio.fail_after(120):
                await fake.wait_for(lambda: fake.forced_disconnects == 1)
            assert 60.0 <= trio.current_time() - opened < 61.0  # virtual seconds
            with trio.fail_after(10):
                await fake.wait_for(lambda: conn.closed)
