"""A harness running one exchange feed against a simplex fake over real loopback sockets."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import msgspec
import pytest
import trio

from arbd.config import FeedConfig
from arbd.exchange.adapter import AdapterSettings
from arbd.feed.clock import TrioClock
from arbd.feed.rest import RestClient
from arbd.feed.supervisor import ExchangeFeed, FeedContext
from arbd.feed.transport import make_tcp_opener
from arbd.model import Event, FeedStatus
from arbd_simplex.adapter import SimplexAdapter

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


@dataclass
class Harness:
    feed: ExchangeFeed
    events: list[Event] = field(default_factory=list)

    def statuses(self, scope: str | None = None) -> list[FeedStatus]:
        return [
            e
            for e in self.events
            if isinstance(e, FeedStatus) and (scope is None or e.scope == scope)
        ]

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def ctx(self) -> FeedContext:
        return self.feed.ctx

    @property
    def connection(self):
        (supervisor,) = self.feed.supervisors
        return supervisor.current


def adapter_with(**spec_changes: object) -> type[SimplexAdapter]:
    """A SimplexAdapter subclass whose spec differs (keepalive timings, stale action)."""
    spec = msgspec.structs.replace(SimplexAdapter.spec, **spec_changes)
    return type("TunedSimplex", (SimplexAdapter,), {"spec": spec})


@asynccontextmanager
async def running(fake, **options) -> AsyncIterator[Harness]:
    """Run a feed against ``fake`` for the duration of the block; cleans up its REST client."""
    harness = make_harness(fake, **options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(harness.feed.run)
            yield harness
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await harness.ctx.rest.aclose()


def make_harness(
    fake,
    *,
    symbols: Sequence[str] = ("BTC/USDT",),
    channels: Sequence[str] = ("price", "trades", "book", "candles"),
    adapter_cls: type[SimplexAdapter] = SimplexAdapter,
    feed: FeedConfig = FAST,
    stale_after: float = 2.0,
    rotate_after: float | None = None,
) -> Harness:
    adapter = adapter_cls(
        AdapterSettings(
            ws_url=fake.ws_url("/ws"),
            rest_url=fake.rest_url,
            symbols=tuple(symbols),
            channels=tuple(channels),
            book_depth=10,
        )
    )
    events: list[Event] = []
    ctx = FeedContext(
        adapter=adapter,
        feed=feed,
        sink=events.extend,
        opener=make_tcp_opener(),
        clock=TrioClock(),
        rest=RestClient(timeout=feed.rest_timeout, retries=feed.rest_retries),
        stale_after=stale_after,
        rotate_after=rotate_after,
        rng=random.Random(7),
    )
    return Harness(feed=ExchangeFeed(ctx), events=events)


@pytest.fixture
def virtual_time(mock_clock):
    """Virtual time that still lets loopback I/O happen: the clock only jumps after 5 ms of
    real idleness, far longer than the kernel needs to deliver a loopback write."""
    mock_clock.autojump_threshold = 0.005
    return mock_clock


async def wait_until(predicate, timeout: float = 30.0) -> None:
    """Poll ``predicate`` (harness-side state has no notification) within a bounded time."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
