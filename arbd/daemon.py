"""Composition root: builds the daemon from a config and a plugin registry, runs it in one nursery.

Every long-running component is started with ``nursery.start`` and reports ready through
``task_status``; the outside world (socket opener, REST transport, clock, capture recorder) is
injected so tests and ``arbd demo`` run the same code against fakes. Cancelling the nursery is the
shutdown: connections close with code 1000 inside shielded, time-bounded cleanup.

Components still to arrive take their place here: the local WebSocket server, the control socket
and the metrics endpoint each become one more ``await nursery.start(...)``.
"""

from __future__ import annotations

import logging
import random
import signal
from collections.abc import Sequence

import httpx
import trio

from arbd.config import Config, ExchangeConfig
from arbd.errors import ConfigError
from arbd.exchange.adapter import AdapterSettings, ExchangeAdapter
from arbd.feed.clock import TrioClock
from arbd.feed.recorder import Recorder
from arbd.feed.rest import RestClient
from arbd.feed.supervisor import ExchangeFeed, FeedContext, run_feeds
from arbd.feed.transport import Opener, make_tcp_opener
from arbd.hub import Hub
from arbd.model import Event
from arbd.plugins import PluginRegistry

log = logging.getLogger("arbd")

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def build_adapter(
    exchange_id: str, settings: ExchangeConfig, registry: PluginRegistry
) -> ExchangeAdapter:
    """Instantiate the configured adapter; unknown exchange ids are a ConfigError."""
    cls = registry.exchanges.get(exchange_id)
    if cls is None:
        installed = ", ".join(sorted(registry.exchanges)) or "none"
        raise ConfigError(
            f"unknown exchange {exchange_id!r} (installed: {installed})",
            key=f"exchanges.{exchange_id}",
        )
    spec = cls.spec
    channels = tuple(c for c in settings.channels if c in spec.channels)
    symbols = tuple(settings.symbols or spec.default_symbols)
    return cls(
        AdapterSettings(
            ws_url=settings.ws_url or spec.ws_url,
            rest_url=(settings.rest_url or spec.rest_url).rstrip("/"),
            symbols=symbols,
            channels=channels,
            book_depth=settings.book_depth,
        )
    )


class Daemon:
    """The running daemon. ``await nursery.start(daemon.run)``; cancel to stop."""

    def __init__(
        self,
        config: Config,
        registry: PluginRegistry,
        *,
        opener: Opener | None = None,
        rest_transport: httpx.AsyncBaseTransport | None = None,
        recorder: Recorder | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.hub = Hub()
        self.opener = opener or make_tcp_opener()
        self.rest_transport = rest_transport
        self.recorder = recorder
        self.rng = rng
        self.feeds: list[ExchangeFeed] = []
        self.adapters = {
            exchange_id: build_adapter(exchange_id, settings, registry)
            for exchange_id, settings in sorted(config.exchanges.items())
            if settings.enabled
        }

    def publish(self, events: Sequence[Event]) -> None:
        self.hub.publish(events)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        clock = TrioClock()
        rest_clients: list[RestClient] = []
        try:
            for exchange_id, adapter in self.adapters.items():
                ex = config.exchanges[exchange_id]
                rest = RestClient(
                    timeout=config.feed.rest_timeout,
                    retries=config.feed.rest_retries,
                    transport=self.rest_transport,
                )
                rest_clients.append(rest)
                rotate_after = (
                    adapter.spec.rotate_after if ex.rotate_after is None else ex.rotate_after
                )
                ctx = FeedContext(
                    adapter=adapter,
                    feed=config.feed,
                    sink=self.publish,
                    opener=self.opener,
                    clock=clock,
                    rest=rest,
                    stale_after=ex.stale_after or config.feed.stale_after,
                    rotate_after=rotate_after or None,
                    recorder=self.recorder,
                    rng=self.rng,
                )
                self.feeds.append(ExchangeFeed(ctx))
            async with trio.open_nursery() as nursery:
                await nursery.start(run_feeds, self.feeds)
                log.info(
                    "arbd started: %d exchange(s): %s",
                    len(self.adapters),
                    ", ".join(self.adapters) or "none",
                )
                task_status.started()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                for rest in rest_clients:
                    await rest.aclose()


async def run_until_signal(daemon: Daemon) -> None:
    """Run ``daemon`` until SIGINT/SIGTERM, then shut down gracefully."""
    with trio.open_signal_receiver(*SHUTDOWN_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)

            async def wait_for_signal() -> None:
                async for signum in signals:
                    log.info("received %s; shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(wait_for_signal)
