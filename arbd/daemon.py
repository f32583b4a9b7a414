"""Composition root: builds the daemon from a config and a plugin registry, runs it in one nursery.

Every long-running component is started with ``nursery.start`` and reports ready through
``task_status``; the outside world (socket opener, REST transport, clock, capture recorder) is
injected so tests and ``arbd demo`` run the same code against fakes. Cancelling the nursery is the
shutdown: connections close with code 1000 inside shielded, time-bounded cleanup.

The arbitrage engine (``arbd.arbitrage``) is a hub processor; its tick task re-checks open
opportunities every ``arbitrage.tick_interval`` on the same clock the feeds stamp receive times
with, and closes them with reason ``shutdown`` when the daemon stops.

The runtime API (what the control channel and ``arbctl`` call): :meth:`Daemon.status`,
:meth:`~Daemon.markets`, :meth:`~Daemon.opportunities`, :meth:`~Daemon.add_symbols`,
:meth:`~Daemon.remove_symbols`, :meth:`~Daemon.reload` and :meth:`~Daemon.request_stop`.
Runtime changes are serialized by one lock; the reload plan itself is computed purely in
``arbd.reload`` and the per-exchange connection changes happen in ``arbd.feed.exchange``.

Start order in :meth:`Daemon.run`: the control socket (a live daemon on the same socket stops
this one first), the feeds, the arbitrage tick, the local WebSocket server (``arbd.server``;
``daemon.server`` / ``daemon.server_port``), the metrics endpoint, and last the systemd
notifications (``READY=1`` means everything before it is up).
"""

from __future__ import annotations

import logging
import os
import random
from collections import deque
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from arbd import __version__
from arbd.arbitrage.conversion import conversion_symbols
from arbd.arbitrage.engine import ArbitrageEngine
from arbd.arbitrage.fees import taker_fees
from arbd.config import Config, load_config
from arbd.control.server import serve_control
from arbd.errors import ConfigError, FeedError
from arbd.exchange.symbols import parse_symbols
from arbd.feed.clock import TrioClock
from arbd.feed.exchange import ExchangeFeed, FeedSet, fetch_instruments
from arbd.feed.recorder import Recorder
from arbd.feed.transport import Opener, make_tcp_opener
from arbd.hub import Hub
from arbd.logs import set_level
from arbd.metrics import MetricsEndpoint, build_registry, health, serve_metrics
from arbd.model import Arbitrage, Event
from arbd.plugins import PluginRegistry
from arbd.reload import ReloadPlan, plan_reload
from arbd.sdnotify import Notifier
from arbd.server.ws import WebSocketServer, serve_websocket
from arbd.service import run_service_notifications, status_line
from arbd.status import DaemonStatus

log = logging.getLogger("arbd")

CLOSED_HISTORY = 200
"""Closed opportunities kept for ``opportunities(include_closed=True)``."""


class Daemon:
    """The running daemon. ``await nursery.start(daemon.run)``; cancel or
    :meth:`request_stop` to stop. Runs once."""

    def __init__(
        self,
        config: Config,
        registry: PluginRegistry,
        *,
        config_path: str | Path | None = None,
        opener: Opener | None = None,
        rest_transport: httpx.AsyncBaseTransport | None = None,
        recorder: Recorder | None = None,
        recorders: Mapping[str, Recorder] | None = None,
        rng: random.Random | None = None,
        notifier: Notifier | None = None,
        server_listeners: Sequence[trio.SocketListener] | None = None,
        metrics_any_port: bool = False,
    ) -> None:
        """``notifier``: systemd's notification socket (``arbd start`` passes the one
        ``$NOTIFY_SOCKET`` names; by default nothing is sent).
        ``config_path``: the file :meth:`reload` re-reads (none: reload is refused).
        ``recorder`` records every exchange; ``recorders`` one exchange each (by id), for
        one capture file per exchange as ``arbd replay`` reads them. ``server_listeners``
        replace listening on ``server.host:server.port`` (``arbd demo``, tests);
        ``metrics_any_port``: serve metrics on a free port if ``metrics.port`` is taken."""
        self.config = config
        """The configuration running now (after reloads; runtime symbol changes aside)."""
        self.config_path = str(config_path) if config_path is not None else ""
        self.registry = registry
        self.hub = Hub()
        self.opener = opener or make_tcp_opener()
        self.rest_transport = rest_transport
        self.recorder = recorder
        self.recorders = dict(recorders or {})
        self.rng = rng
        self.notifier = notifier or Notifier(None)
        self.feeds = FeedSet(
            sink=self.publish,
            opener=self.opener,
            rest_transport=rest_transport,
            recorders=lambda exchange: self.recorders.get(exchange, self.recorder),
            rng=rng,
        )
        self.server_listeners = server_listeners
        self.server: WebSocketServer | None = None
        self.server_port: int | None = None
        self.metrics_any_port = metrics_any_port
        self.metrics_port: int | None = None
        extra = conversion_symbols(config)
        self.adapters = {
            exchange_id: registry.build_adapter(exchange_id, settings, extra.get(exchange_id, ()))
            for exchange_id, settings in sorted(config.exchanges.items())
            if settings.enabled
        }
        self.engine: ArbitrageEngine | None = None
        self._closed: deque[Arbitrage] = deque(maxlen=CLOSED_HISTORY)
        if config.arbitrage.enabled:
            fees = taker_fees((a.spec for a in self.adapters.values()), config.exchanges)
            self.engine = ArbitrageEngine(config.arbitrage, fees, self.lot_size)
            self.hub.add_processor(self._run_engine)
        self._stop = trio.CancelScope()
        self._lock = trio.Lock()
        self._clock: TrioClock | None = None
        self._started = (0.0, 0.0)
        """(monotonic, epoch seconds) at start."""

    def lot_size(self, exchange: str, symbol: str) -> str | None:
        """The lot size of a market once its exchange's instruments are loaded, else None."""
        adapter = self.adapters.get(exchange)
        instrument = adapter.instruments.get(symbol) if adapter is not None else None
        return instrument.lot_size if instrument is not None else None

    def publish(self, events: Sequence[Event]) -> None:
        self.hub.publish(events)

    def _run_engine(self, batch: Sequence[Event]) -> Sequence[Event]:
        """The hub processor: the engine, plus the history of closes (rarely non-empty)."""
        assert self.engine is not None
        out = self.engine(batch)
        if out:
            self._remember(out)
        return out

    def _remember(self, events: Sequence[Event]) -> None:
        self._closed.extend(e for e in events if isinstance(e, Arbitrage) and e.event == "close")

    def _publish_engine(self, events: Sequence[Event]) -> None:
        """Publish events the engine produced outside the hub (ticks, reconfigure, closes)."""
        self._remember(events)
        self.publish(events)

    # -- running ------------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            self.notifier.close()

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        with self._stop:
            clock = self._clock = TrioClock()
            self._started = (clock.now(), clock.wall_ns() / 1e9)
            async with trio.open_nursery() as nursery:
                if self.config.control.enabled:
                    # First: a live daemon on the same socket stops this one before it connects.
                    await nursery.start(serve_control, self.config.control, self)
                await nursery.start(self.feeds.run)
                for adapter in self.adapters.values():
                    await self.feeds.start(self.feeds.create(adapter, self.config, clock))
                if self.engine is not None:
                    await nursery.start(self._run_arbitrage_ticks, self.engine, clock)
                nursery.start_soon(self._sample_rates, clock)
                if self.config.server.enabled:
                    self.server = await nursery.start(
                        partial(
                            serve_websocket,
                            self.config.server,
                            self.hub,
                            self.markets,
                            listeners=self.server_listeners,
                            wall_ms=lambda: clock.wall_ns() // 1_000_000,
                        )
                    )
                    self.server_port = self.server.port
                if self.config.metrics.enabled:
                    endpoint = MetricsEndpoint(build_registry(self), self.health)
                    self.metrics_port = await nursery.start(
                        partial(
                            serve_metrics,
                            self.config.metrics,
                            endpoint,
                            any_port_if_busy=self.metrics_any_port,
                        )
                    )
                # Last: READY=1 means everything above is up.
                await nursery.start(run_service_notifications, self, self.notifier)
                log.info(
                    "arbd started: %d exchange(s): %s",
                    len(self.adapters),
                    ", ".join(self.adapters) or "none",
                )
                task_status.started()

    def request_stop(self) -> None:
        """Shut the whole daemon down gracefully: :meth:`run` returns once every connection
        is closed. Safe to call at any time, also before :meth:`run`."""
        self._stop.cancel()

    async def _run_arbitrage_ticks(
        self,
        engine: ArbitrageEngine,
        clock: TrioClock,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Let time pass for the engine even when no data arrives (a leg that stops updating
        must close its opportunities), and close everything when the daemon stops."""
        task_status.started()
        try:
            while True:
                # Read each time: a reload may change it.
                await trio.sleep(self.config.arbitrage.tick_interval)
                self._publish_engine(engine.tick(clock.wall_ns()))
        finally:
            # Synchronous: subscribers get the closes even while everything is being cancelled.
            self._publish_engine(engine.close_all("shutdown"))

    async def _sample_rates(self, clock: TrioClock) -> None:
        """One sample of every feed's frame count a second: ``status()`` turns the last few
        into messages/s, at no cost per message."""
        while True:
            for feed in self.feeds.feeds.values():
                feed.ctx.counters.sample(clock.now())
            await trio.sleep(1.0)

    # -- what the control channel asks --------------------------------------------------------

    def status(self) -> DaemonStatus:
        """The daemon now: per exchange state and counters, clients, open opportunities."""
        clock = self._clock
        now, now_ns = (clock.now(), clock.wall_ns()) if clock is not None else (0.0, 0)
        book_state = self.hub.state.book_state
        started, started_at = self._started
        return DaemonStatus(
            version=__version__,
            pid=os.getpid(),
            started_at=started_at,
            uptime=round(now - started, 3) if clock is not None else 0.0,
            exchanges=[
                feed.status(book_state, now, now_ns) for _, feed in sorted(self.feeds.feeds.items())
            ],
            clients=len(self.hub.subscribers),
            opportunities_open=len(self.hub.state.opportunities),
            config_path=self.config_path,
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        """``/health``: (HTTP status, JSON body); see :func:`arbd.metrics.health`."""
        return health(self.status(), self.hub.state.book_state)

    def markets(self) -> dict[str, list[str]]:
        """Exchange id -> the symbols subscribed now."""
        return {ex: list(adapter.settings.symbols) for ex, adapter in self.adapters.items()}

    def opportunities(self, include_closed: bool = False) -> list[Arbitrage]:
        """The open opportunities (each as its latest ``open``/``update`` event); with
        ``include_closed`` also the last :data:`CLOSED_HISTORY` closes. Oldest first."""
        events = list(self.hub.state.opportunities.values())
        if include_closed:
            events += self._closed
        return sorted(events, key=lambda e: e.timestamp)

    async def add_symbols(self, exchange: str, symbols: Sequence[str]) -> list[str]:
        """Subscribe ``symbols`` on ``exchange`` now, on new connections (the existing ones are
        not touched). Returns those newly subscribed. ``ConfigError`` for an unknown or
        disabled exchange or a symbol it does not list (nothing changes then)."""
        async with self._lock:
            return await self._feed(exchange).add(parse_symbols(symbols))

    async def remove_symbols(self, exchange: str, symbols: Sequence[str]) -> list[str]:
        """Unsubscribe ``symbols`` on ``exchange``: their data stops, the hub forgets their
        quotes and books, their opportunities close (reason ``config``). Connections carrying
        only other symbols are not touched. Returns the symbols removed."""
        async with self._lock:
            feed = self._feed(exchange)
            wanted = feed.check_remove(parse_symbols(symbols))
            conversion = conversion_symbols(self.config).get(exchange, [])
            for symbol in wanted:
                if symbol in conversion:
                    raise ConfigError(
                        f"{symbol} on {exchange} is a live conversion market; remove "
                        f"'{exchange}:{symbol}' from arbitrage.conversion_markets and reload"
                    )
            removed = await feed.remove(wanted)
            self._forget_markets(exchange, removed)
            return removed

    def _feed(self, exchange: str) -> ExchangeFeed:
        feed = self.feeds.feeds.get(exchange)
        if feed is not None:
            return feed
        section = self.config.exchanges.get(exchange)
        if section is not None and not section.enabled:
            raise ConfigError(f"exchange {exchange!r} is disabled", key=f"exchanges.{exchange}")
        running = ", ".join(sorted(self.feeds.feeds)) or "none"
        raise ConfigError(f"unknown exchange {exchange!r} (running: {running})")

    def _forget_markets(self, exchange: str, symbols: Sequence[str] | None) -> None:
        """Close the opportunities of unsubscribed markets and drop their hub state."""
        if self.engine is not None:
            self._publish_engine(self.engine.remove_markets(exchange, symbols))
        self.hub.state.drop(exchange, symbols)

    # -- reload -------------------------------------------------------------------------------

    async def reload(self) -> list[str]:
        """Re-read the config file and apply the difference; one line per change.

        Everything is validated before anything changes (the file, adapters of new exchanges,
        new symbols against the instruments); a ``ConfigError`` leaves the running config as
        it was. Keys that cannot change live are reported as ``restart needed for <key>``.
        The outcome is logged either way.
        """
        if not self.config_path:
            raise ConfigError(
                "nothing to reload: this daemon was not started from a config file "
                "(arbd start --config FILE)"
            )
        if self._clock is None:
            raise ConfigError("nothing to reload: the daemon is not running")
        async with self._lock:
            # systemd shows "reloading" until READY=1 comes back, whatever the outcome.
            self.notifier.reloading()
            try:
                return await self._reload()
            finally:
                self.notifier.ready(status_line(self.status()))

    async def _reload(self) -> list[str]:
        try:
            plan = plan_reload(
                self.config,
                load_config(self.config_path),
                {ex: feed.symbols for ex, feed in self.feeds.feeds.items()},
                {ex: cls.spec.default_symbols for ex, cls in self.registry.exchanges.items()},
                self.config_path,
            )
            prepared = await self._prepare(plan)
        except ConfigError as exc:
            if not exc.path:  # a symbol or adapter problem: name the file it came from
                exc = ConfigError(exc.problem, path=self.config_path, key=exc.key)
            log.error("reload rejected, running configuration kept: %s", exc.one_line())
            raise exc from None
        await self._apply(plan, prepared)
        log.info("reloaded %s: %d change(s)", self.config_path, len(plan.lines))
        for line in plan.lines:
            log.info("reload: %s", line)
        return plan.lines

    async def _prepare(self, plan: ReloadPlan) -> dict[str, ExchangeFeed]:
        """Validate what the plan needs from plugins and exchanges; build the new feeds."""
        feeds = self.feeds.feeds
        for ex in sorted(plan.symbols_added.keys() | plan.symbols_removed.keys()):
            if feeds[ex].state != "running":  # failed or still starting: start it afresh
                plan.symbols_added.pop(ex, None)
                plan.symbols_removed.pop(ex, None)
                plan.restarted.append(ex)
        for ex, symbols in plan.symbols_added.items():
            feeds[ex].check_add(symbols)
        extra = conversion_symbols(plan.config, self.config_path)
        prepared: dict[str, ExchangeFeed] = {}
        try:
            for ex in plan.added + plan.restarted:
                settings = plan.config.exchanges[ex]
                adapter = self.registry.build_adapter(ex, settings, extra.get(ex, ()))
                old = feeds.get(ex)
                counters = old.ctx.counters if old is not None else None
                assert self._clock is not None  # reload() checked
                prepared[ex] = feed = self.feeds.create(adapter, plan.config, self._clock, counters)
                await self._preload_instruments(feed)
        except BaseException:
            with trio.CancelScope(shield=True):
                for feed in prepared.values():
                    await feed.ctx.rest.aclose()
            raise
        return prepared

    async def _preload_instruments(self, feed: ExchangeFeed) -> None:
        """Load a new feed's instruments now, so an unknown symbol rejects the reload. An
        exchange that does not answer is no reason to reject it: its feed keeps trying."""
        timeout = max(5.0, 2 * self.config.feed.rest_timeout)
        with trio.move_on_after(timeout):
            try:
                await fetch_instruments(feed.ctx)
            except FeedError as exc:
                log.warning("%s: instruments not loaded yet (%s)", feed.ctx.exchange, exc)

    async def _apply(self, plan: ReloadPlan, prepared: dict[str, ExchangeFeed]) -> None:
        self.config = plan.config
        if plan.log_level is not None:
            set_level(plan.log_level)
        gone = set(plan.removed) | set(plan.restarted)
        if self.engine is not None and plan.reconfigure_engine:
            adapters = {ex: a for ex, a in self.adapters.items() if ex not in gone}
            adapters.update((ex, feed.ctx.adapter) for ex, feed in prepared.items())
            fees = taker_fees((a.spec for a in adapters.values()), self.config.exchanges)
            self._publish_engine(self.engine.reconfigure(self.config.arbitrage, fees))
        for ex in sorted(gone):
            await self.feeds.stop(ex)
            del self.adapters[ex]
            self._forget_markets(ex, None)
        for ex, symbols in plan.symbols_removed.items():
            self._forget_markets(ex, await self.feeds.feeds[ex].remove(symbols))
        for ex, symbols in plan.symbols_added.items():
            await self.feeds.feeds[ex].add(symbols)
        for ex, feed in prepared.items():
            self.adapters[ex] = feed.ctx.adapter
            await self.feeds.start(feed, wait=False)
