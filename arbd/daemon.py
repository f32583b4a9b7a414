"""Composition root: builds the daemon from a config and a plugin registry, runs it in one nursery.

Every long-running component is started with ``nursery.start`` and reports ready through
``task_status``; the outside world (socket opener, REST transport, clock, capture recorder) is
injected so tests and ``arbd demo`` run the same code against fakes. Cancelling the nursery is the
shutdown: connections close with code 1000 inside shielded, time-bounded cleanup.

The arbitrage engine (``arbd.arbitrage``) is a hub processor; its tick task re-checks open
opportunities every ``arbitrage.tick_interval`` on the same clock the feeds stamp receive times
with, and closes them with reason ``shutdown`` when the daemon stops.

The local WebSocket server (``arbd.server``) starts once the feeds have started, when
``server.enabled``; ``daemon.server`` is the running server (``daemon.server_port`` its port).
Components still to arrive take their place here too: the control socket and the metrics
endpoint each become one more ``await nursery.start(...)``.
"""

from __future__ import annotations

import logging
import random
import signal
from collections.abc import Mapping, Sequence
from functools import partial

import httpx
import trio

from arbd.arbitrage import ArbitrageEngine, taker_fees
from arbd.arbitrage.conversion import conversion_symbols
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
from arbd.server.ws import WebSocketServer, serve_websocket

log = logging.getLogger("arbd")

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def build_adapter(
    exchange_id: str,
    settings: ExchangeConfig,
    registry: PluginRegistry,
    extra_symbols: Sequence[str] = (),
) -> ExchangeAdapter:
    """Instantiate the configured adapter; unknown exchange ids are a ConfigError.
    ``extra_symbols`` are subscribed as well (conversion markets of the arbitrage engine)."""
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
    symbols += tuple(s for s in extra_symbols if s not in symbols)
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
        recorders: Mapping[str, Recorder] | None = None,
        rng: random.Random | None = None,
        server_listeners: Sequence[trio.SocketListener] | None = None,
    ) -> None:
        """``recorder`` records every exchange; ``recorders`` one exchange each (by id), for
        one capture file per exchange as ``arbd replay`` reads them. ``server_listeners``
        replace listening on ``server.host:server.port`` (``arbd demo``, tests)."""
        self.config = config
        self.registry = registry
        self.hub = Hub()
        self.opener = opener or make_tcp_opener()
        self.rest_transport = rest_transport
        self.recorder = recorder
        self.recorders = dict(recorders or {})
        self.rng = rng
        self.feeds: list[ExchangeFeed] = []
        self.server_listeners = server_listeners
        self.server: WebSocketServer | None = None
        self.server_port: int | None = None
        extra = conversion_symbols(config)
        self.adapters = {
            exchange_id: build_adapter(exchange_id, settings, registry, extra.get(exchange_id, ()))
            for exchange_id, settings in sorted(config.exchanges.items())
            if settings.enabled
        }
        self.engine: ArbitrageEngine | None = None
        if config.arbitrage.enabled:
            fees = taker_fees((a.spec for a in self.adapters.values()), config.exchanges)
            self.engine = ArbitrageEngine(config.arbitrage, fees, self.lot_size)
            self.hub.add_processor(self.engine)

    def lot_size(self, exchange: str, symbol: str) -> str | None:
        """The lot size of a market once its exchange's instruments are loaded, else None."""
        adapter = self.adapters.get(exchange)
        instrument = adapter.instruments.get(symbol) if adapter is not None else None
        return instrument.lot_size if instrument is not None else None

    def _server_markets(self) -> dict[str, list[str]]:
        """Exchange id -> subscribed symbols, asked by the WebSocket server on every subscribe
        (to be the daemon's ``markets()`` once symbols change at runtime)."""
        return {exchange: list(a.settings.symbols) for exchange, a in self.adapters.items()}

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
                    recorder=self.recorders.get(exchange_id, self.recorder),
                    rng=self.rng,
                )
                self.feeds.append(ExchangeFeed(ctx))
            async with trio.open_nursery() as nursery:
                await nursery.start(run_feeds, self.feeds)
                if self.engine is not None:
                    await nursery.start(self._run_arbitrage_ticks, self.engine, clock)
                if config.server.enabled:
                    self.server = await nursery.start(
                        partial(
                            serve_websocket,
                            config.server,
                            self.hub,
                            self._server_markets,
                            listeners=self.server_listeners,
                            wall_ms=lambda: clock.wall_ns() // 1_000_000,
                        )
                    )
                    self.server_port = self.server.port
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

    async def _run_arbitrage_ticks(
        self,
        engine: ArbitrageEngine,
        clock: TrioClock,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Let time pass for the engine even when no data arrives (a leg that stops updating
        must close its opportunities), and close everything when the daemon stops."""
        interval = self.config.arbitrage.tick_interval
        task_status.started()
        try:
            while True:
                await trio.sleep(interval)
                self.publish(engine.tick(clock.wall_ns()))
        finally:
            # Synchronous: subscribers get the closes even while everything is being cancelled.
            self.publish(engine.close_all("shutdown"))


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
