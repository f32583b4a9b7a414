"""The supervised connection against the simplex fake over real loopback sockets, with virtual
time where time matters."""

from __future__ import annotations

import trio

from arbd.model import Book, Candle, Quote, Trade
from arbd.testing.fake import open_fake
from arbd_simplex.fake import SimplexFake

from .conftest import adapter_with, running, wait_until

ALL = {"price:BTC-USDT", "trades:BTC-USDT", "book:BTC-USDT", "candles:BTC-USDT"}


async def test_subscribes_goes_live_and_normalizes_all_channels(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        async with running(fake) as h:
            conn = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: conn.subscriptions >= ALL)
            await fake.pump(3)
            await wait_until(lambda: h.of(Candle) and h.of(Book) and len(h.of(Trade)) >= 3)
            states = [s.state for s in h.statuses("connection")]
            assert states[:3] == ["connecting", "subscribing", "live"]
            assert {type(e) for e in h.events} >= {Quote, Trade, Book, Candle}
            assert all(e.symbol == "BTC/USDT" for e in h.of(Trade))


async def test_reconnects_with_backoff_and_restores_subscriptions(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        async with running(fake, symbols=("BTC/USDT", "ETH/USDT")) as h:
            first = await fake.wait_connected()
            wanted = ALL | {s.replace("BTC", "ETH") for s in ALL}
            with trio.fail_after(10):
                await fake.wait_for(lambda: first.subscriptions >= wanted)
            fake.drop_all()
            with trio.fail_after(20):
                await fake.wait_for(lambda: fake.connection_count == 2)
                second = fake.connections[-1]
                await fake.wait_for(lambda: second.subscriptions >= wanted)
            states = [s.state for s in h.statuses("connection")]
            assert "backoff" in states
            assert h.ctx.reconnects.get("peer_closed") == 1


async def test_stalled_but_pinging_subscription_is_detected_and_resubscribed(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        async with running(fake, stale_after=2.0) as h:
            conn = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: conn.subscriptions >= ALL)
            fake.start_soon(fake.run_feed, 20.0)
            await wait_until(lambda: len(h.of(Quote)) > 5)
            fake.faults.stall = True
            stalled_at = trio.current_time()
            await wait_until(lambda: any(s.state == "stale" for s in h.statuses("subscription")))
            detected_after = trio.current_time() - stalled_at
            # Deadline plus one watchdog tick (stale_after / 4) plus a frame interval.
            assert detected_after <= 2.0 + 0.5 + 0.1
            stale = {
                (s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "stale"
            }
            assert ("price", "BTC/USDT") in stale and ("book", "BTC/USDT") in stale
            # Recovery: the session resubscribed on the same connection.
            with trio.fail_after(5):
                await fake.wait_for(lambda: any('"unsubscribe"' in str(m) for m in conn.received))
            fake.faults.stall = False
            await wait_until(lambda: any(s.state == "live" for s in h.statuses("subscription")))
            assert fake.connection_count == 1
            assert h.connection.stats.resubscribes >= 1
            # The book dropped for a fresh snapshot was announced, then served again.
            await wait_until(lambda: h.book_states("BTC/USDT")[-1:] == ["valid"])
            assert h.book_states("BTC/USDT") == ["resyncing", "valid"]
            (resync,) = [s for s in h.statuses("book") if s.state == "resyncing"]
            assert resync.reason == "resubscribing after stale data"


async def test_quiet_by_nature_channels_do_not_cause_reconnects(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        async with running(fake, channels=("trades", "candles"), stale_after=1.0) as h:
            conn = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: conn.subscriptions)
            await trio.sleep(30.0)  # 30 deadlines of silence on trades and candles
            assert fake.connection_count == 1
            assert h.statuses("subscription") == []
            assert h.ctx.reconnects == {}


async def test_missing_pong_is_detected(virtual_time):
    from arbd.exchange.adapter import Keepalive

    tuned = adapter_with(
        keepalive=Keepalive(
            protocol_ping_interval=1.0, pong_timeout=2.0, app_ping_interval=None, idle_timeout=600.0
        )
    )
    async with open_fake(SimplexFake()) as fake:
        async with running(fake, adapter_cls=tuned, channels=("trades",)) as h:
            await fake.wait_connected()
            await trio.sleep(5.0)
            assert h.ctx.reconnects == {}  # pongs arrive: nothing happens
            fake.faults.ignore_pings = True
            await wait_until(lambda: h.ctx.reconnects.get("heartbeat_timeout", 0) >= 1)
            assert fake.connection_count >= 2 or any(
                s.state == "backoff" for s in h.statuses("connection")
            )


async def test_handshake_429_retry_after_is_honoured(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        fake.faults.refuse_status = 429
        fake.faults.retry_after = 7.0
        fake.faults.refuse_times = 1
        started = trio.current_time()
        async with running(fake) as h:
            await fake.wait_connected()
            waited = trio.current_time() - started
            assert fake.handshake_refusals == 1
            assert waited >= 7.0  # the backoff alone would have been at most 0.2 s
            assert h.ctx.reconnects == {"rate_limited": 1}


async def test_garbage_frames_are_counted_and_skipped(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        async with running(fake) as h:
            conn = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: conn.subscriptions >= ALL)
            fake.faults.garbage_every = 2
            await fake.pump(4)
            await wait_until(lambda: len(h.of(Trade)) >= 4)
            assert h.connection.stats.decode_errors >= 4
            assert fake.connection_count == 1
            assert h.ctx.reconnects == {}


async def test_rotation_opens_new_connection_first_and_delivers_without_gaps(virtual_time):
    async with open_fake(SimplexFake()) as fake:
        # rotate_after 14 s with rotation_margin 10 s: the replacement opens at 4 s.
        async with running(fake, rotate_after=14.0) as h:
            fake.start_soon(fake.run_feed, 10.0)
            await wait_until(lambda: h.feed.supervisors and h.feed.supervisors[0].rotations >= 1)
            await trio.sleep(3.0)
            trades = [e.sequence for e in h.of(Trade)]
            assert len(trades) > 50
            assert trades == list(range(trades[0], trades[0] + len(trades)))  # no gap, no dup
            assert fake.connection_count == 2
            assert len(fake.connections) == 1  # the old one is closed
            rotated = [s for s in h.statuses("connection") if s.reason == "rotated"]
            assert [s.state for s in rotated] == ["live"]
            assert {s.connection for s in h.statuses("connection")} == {"simplex-1"}
            assert h.ctx.reconnects == {}


async def test_subscriptions_are_split_across_connections_by_the_adapter_limit(virtual_time):
    tuned = adapter_with(max_streams_per_connection=3)
    async with open_fake(SimplexFake()) as fake:
        async with running(fake, adapter_cls=tuned, symbols=("BTC/USDT", "ETH/USDT")) as h:
            with trio.fail_after(10):
                await fake.wait_for(
                    lambda: (
                        len(fake.connections) == 3
                        and sum(len(c.subscriptions) for c in fake.connections) == 8
                    )
                )
            assert all(len(c.subscriptions) <= 3 for c in fake.connections)
            assert len(h.feed.supervisors) == 3


async def test_frame_size_limit_is_configurable_and_the_default_allows_multi_mb_frames(
    virtual_time,
):
    import msgspec

    from .conftest import FAST

    async with open_fake(SimplexFake()) as fake:
        async with running(fake) as h:  # default max_frame_bytes: 64 MiB
            conn = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: conn.subscriptions >= ALL)
            fake.send_oversized(conn, 3 * 1024 * 1024)  # valid JSON, not a simplex frame
            await fake.pump(1)
            await wait_until(lambda: h.of(Trade))
            assert fake.connection_count == 1
        small = msgspec.structs.replace(FAST, max_frame_bytes=64 * 1024)
        async with running(fake, feed=small) as h:
            with trio.fail_after(10):
                await fake.wait_for(lambda: fake.connection_count == 2 and fake.connections)
                conn = fake.connections[-1]
                await fake.wait_for(lambda: conn.subscriptions >= ALL)
            fake.send_oversized(conn, 100 * 1024)
            await wait_until(lambda: h.ctx.reconnects.get("peer_closed", 0) >= 1)
            assert conn.close_code == 1009  # "message too big", sent by our side


async def test_max_attempts_marks_the_exchange_failed_and_stops_trying(virtual_time):
    import msgspec

    from .conftest import FAST

    async with open_fake(SimplexFake()) as fake:
        fake.faults.refuse_status = 503
        limited = msgspec.structs.replace(FAST, max_attempts=3)
        async with running(fake, feed=limited) as h:
            await wait_until(lambda: any(s.scope == "exchange" for s in h.statuses()))
            (failed,) = [s for s in h.statuses() if s.scope == "exchange"]
            assert failed.state == "failed"
            assert fake.handshake_refusals == 3
            await trio.sleep(60.0)
            assert fake.handshake_refusals == 3  # no more attempts
            assert h.feed.supervisors[0].state == "stopped"


async def test_outgoing_frames_are_paced_to_the_exchange_message_limit(virtual_time):
    from arbd_simplex.adapter import SimplexSession

    class ChattySession(SimplexSession):
        def start(self, now_ns: int) -> None:
            super().start(now_ns)
            for _ in range(5):
                self.keepalive(now_ns)

    base = adapter_with(max_outgoing_per_second=2.0)

    class ChattyAdapter(base):  # type: ignore[misc, valid-type]
        def new_session(self, plan):
            return ChattySession(self, plan)

    async with open_fake(SimplexFake()) as fake:
        async with running(fake, adapter_cls=ChattyAdapter, channels=("trades",)):
            conn = await fake.wait_connected()
            started = trio.current_time()
            times: list[float] = []
            with trio.fail_after(10):
                while len(conn.received) < 6:
                    seen = len(conn.received)
                    await fake.wait_for(lambda: len(conn.received) > seen)  # noqa: B023
                    times.extend([trio.current_time() - started] * (len(conn.received) - seen))
            # Six frames at two per second: never more than two in any one-second window,
            # so the fifth and sixth leave two seconds after the first.
            assert all(b - a >= 0.99 for a, b in zip(times, times[2:], strict=False))
            assert times[-1] >= 1.99


async def test_a_refused_subscription_is_reported_and_does_not_recycle_the_connection(
    virtual_time,
):
    fake = SimplexFake()
    fake.rejected.add("ETH-USDT")
    async with open_fake(fake), running(fake, symbols=("BTC/USDT", "ETH/USDT")) as h:
        conn = await fake.wait_connected()
        fake.start_soon(fake.run_feed, 10.0)
        await wait_until(lambda: any(s.state == "refused" for s in h.statuses("subscription")), 10)
        await trio.sleep(4 * 2.0)  # four stale deadlines
        refused = {
            (s.channel, s.symbol) for s in h.statuses("subscription") if s.state == "refused"
        }
        assert ("price", "ETH/USDT") in refused and ("book", "ETH/USDT") in refused
        assert all(s.symbol == "BTC/USDT" for s in h.of(Quote))
        stale = [
            (s.channel, s.symbol, s.reason)
            for s in h.statuses("subscription")
            if s.state == "stale"
        ]
        assert not stale, stale
        assert fake.connection_count == 1 and not conn.closed
        assert len(h.of(Quote)) > 50
