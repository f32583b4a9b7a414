"""Run one exchange feed against a fake over real loopback sockets and collect its events.

For loopback tests of an exchange plugin (arbd's own and third parties')::

    async with open_fake(MyFake()) as fake, run_feed(fake, MyAdapter, symbols=["BTC/USDT"]) as h:
        conn = await fake.wait_connected()
        await fake.pump(5)
        await wait_until(lambda: h.of(Book))

The feed is arbd's real one (supervisor, connection, transport, REST client); only the time
constants are shortened (:data:`FAST`). Combine with trio's ``MockClock`` for virtual time.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from arbd.config import FeedConfig
from arbd.exchange.adapter import AdapterSettings, ExchangeAdapter
from arbd.feed.clock import TrioClock
from arbd.feed.connection import Connection
from arbd.feed.exchange import ExchangeFeed
from arbd.feed.recorder import Recorder
from arbd.feed.rest import RestClient, rest_budget
from arbd.feed.supervisor import FeedContext
from arbd.feed.transport import make_tcp_opener
from arbd.model import CHANNELS, Event, FeedStatus
from arbd.testing.fake import FakeExchangeServer

EventT = TypeVar("EventT")

FAST = FeedConfig(
    backoff_base=0.2,
    backoff_cap=2.0,
    backoff_reset_after=5.0,
    connect_timeout=2.0,
    rotation_margin=10.0,
    connection_budget=100,
    rest_timeout=2.0,
    rest_retries=1,
)
"""Feed settings for tests: short backoff and timeouts, a generous connection budget."""


@dataclass
class Harness:
    """A running feed and every event it published, in order."""

    feed: ExchangeFeed
    events: list[Event] = field(default_factory=list)

    def statuses(self, scope: str | None = None) -> list[FeedStatus]:
        return [
            e
            for e in self.events
            if isinstance(e, FeedStatus) and (scope is None or e.scope == scope)
        ]

    def book_states(self, symbol: str) -> list[str]:
        """The book validity changes of ``symbol``, in order."""
        return [s.state for s in self.statuses("book") if s.symbol == symbol]

    def of(self, kind: type[EventT]) -> list[EventT]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def ctx(self) -> FeedContext:
        return self.feed.ctx

    @property
    def connections(self) -> list[Connection]:
        """The current connection of each supervisor (None entries left out)."""
        return [s.current for s in self.feed.supervisors if s.current is not None]

    @property
    def connection(self) -> Connection | None:
        supervisor, *_ = self.feed.supervisors
        return supervisor.current


def make_harness(
    fake: FakeExchangeServer,
    adapter_cls: type[ExchangeAdapter],
    *,
    symbols: Sequence[str] = ("BTC/USDT",),
    channels: Sequence[str] = CHANNELS,
    book_depth: int = 10,
    feed: FeedConfig = FAST,
    stale_after: float = 2.0,
    rotate_after: float | None = None,
    recorder: Recorder | None = None,
) -> Harness:
    adapter = adapter_cls(
        AdapterSettings(
            ws_url=fake.adapter_ws_url(),
            rest_url=fake.rest_url,
            symbols=tuple(symbols),
            channels=tuple(channels),
            book_depth=book_depth,
        )
    )
    events: list[Event] = []
    clock = TrioClock()
    rest = RestClient(
        timeout=feed.rest_timeout,
        retries=feed.rest_retries,
        budget=rest_budget(adapter.spec),
        now=clock.now,
        name=adapter.spec.id,
    )
    ctx = FeedContext(
        adapter=adapter,
        feed=feed,
        sink=events.extend,
        opener=make_tcp_opener(),
        clock=clock,
        rest=rest,
        stale_after=stale_after,
        rotate_after=rotate_after,
        recorder=recorder,
        rng=random.Random(7),
    )
    return Harness(feed=ExchangeFeed(ctx), events=events)


@asynccontextmanager
async def run_feed(
    fake: FakeExchangeServer,
    adapter_cls: type[ExchangeAdapter],
    **options: object,
) -> AsyncIterator[Harness]:
    """Run a feed of ``adapter_cls`` against ``fake`` for the duration of the block.

    Keyword options are those of :func:`make_harness`.
    """
    harness = make_harness(fake, adapter_cls, **options)  # type: ignore[arg-type]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(harness.feed.run)
            yield harness
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await harness.ctx.rest.aclose()


async def wait_until(
    predicate: Callable[[], object],
    timeout: float = 30.0,  # noqa: ASYNC109 - a bound for tests, not a cancellation API
    poll: float = 0.01,
) -> None:
    """Poll ``predicate`` every ``poll`` seconds within ``timeout``: feed-side state (events,
    book states) has no change notification to wait on. Under a MockClock with an autojump
    threshold each poll costs that threshold in real time, so long virtual waits should
    poll less often."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(poll)
