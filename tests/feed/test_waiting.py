"""The stale-data watchdog and ``ExchangeSession.waiting``: a subscription the session holds
back for an answer it asked for is not stale; once it stops waiting, it is judged again."""

from __future__ import annotations

import trio

from arbd.model import Subscription
from arbd.testing.fake import open_fake
from arbd_simplex.adapter import SimplexAdapter, SimplexSession
from arbd_simplex.fake import SimplexFake

from .conftest import running, wait_until

BOOK = Subscription("book", "BTC/USDT")


class HeldSession(SimplexSession):
    """A simplex session that reports the subscriptions in ``held`` as waiting."""

    held: set[Subscription] = set()

    def waiting(self, subscription: Subscription) -> bool:
        return subscription in self.held


class HeldAdapter(SimplexAdapter):
    def new_session(self, plan):  # type: ignore[no-untyped-def]
        return HeldSession(self, plan)


async def test_a_waiting_subscription_is_not_stale_until_it_stops_waiting(virtual_time):
    HeldSession.held = {BOOK}
    async with open_fake(SimplexFake()) as fake:
        async with running(fake, adapter_cls=HeldAdapter, channels=("book",), stale_after=2.0) as h:
            conn = await fake.wait_connected()
            with trio.fail_after(10):
                await fake.wait_for(lambda: conn.subscriptions)
            fake.start_soon(fake.run_feed, 10.0)
            await wait_until(lambda: h.connection is not None and h.connection.has_data(BOOK))
            fake.faults.stall = True  # no data at all from here on
            await trio.sleep(20.0)  # ten deadlines: three strikes would have reconnected
            assert h.statuses("subscription") == []
            assert h.connection.stats.resubscribes == 0
            assert fake.connection_count == 1 and h.ctx.reconnects == {}

            released = trio.current_time()
            HeldSession.held = set()
            await wait_until(lambda: h.statuses("subscription"), timeout=10)
            (stale,) = h.statuses("subscription")
            assert (stale.channel, stale.symbol, stale.state) == ("book", "BTC/USDT", "stale")
            # Its clock restarted while it waited: a whole deadline after the wait ended, not
            # at once for the 20 s without data.
            assert trio.current_time() - released >= 2.0 - 0.5
            with trio.fail_after(5):
                await fake.wait_for(lambda: any('"unsubscribe"' in str(m) for m in conn.received))
            assert h.connection.stats.resubscribes == 1
