"""``arbd demo``: every installed fake exchange plus the daemon against them, in one process."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Final

import click
import msgspec
import trio

from arbd.capture import CaptureWriter
from arbd.cli.common import load_registry, one_line_errors
from arbd.cli.daemon_cmds import load_optional_config
from arbd.config import Config, ExchangeConfig
from arbd.daemon import Daemon
from arbd.hub import Filter, HubSubscriber
from arbd.logs import setup_logging
from arbd.model import Arbitrage, FeedStatus, Quote
from arbd.plugins import PluginRegistry
from arbd.server.ws import open_listeners
from arbd.signals import run_until_signal
from arbd.testing.fake import FakeExchangeServer, run_fakes
from arbd.testing.market import MarketSimulator
from arbd.testing.marketfake import MarketFake


def demo_config(
    config: Config,
    registry: PluginRegistry,
    fakes: dict[str, FakeExchangeServer],
    symbols: Sequence[str] | None = None,
) -> Config:
    """The user's config with every faked exchange enabled and pointed at its fake.

    ``symbols`` (the same list given to :func:`create_fakes`) replaces every exchange's
    symbols; by default an exchange keeps the configured ones, or its plugin's defaults.
    """
    exchanges = dict(config.exchanges)
    for exchange_id, fake in fakes.items():
        spec = registry.exchanges[exchange_id].spec
        base = exchanges.get(exchange_id, ExchangeConfig(symbols=list(spec.default_symbols)))
        if symbols is not None:
            base = msgspec.structs.replace(base, symbols=list(symbols))
        exchanges[exchange_id] = msgspec.structs.replace(
            base, enabled=True, ws_url=fake.adapter_ws_url(), rest_url=fake.rest_url
        )
    return msgspec.structs.replace(config, exchanges=exchanges)


class DemoReport:
    """One line per exchange every few seconds: state, events/s, latest quote."""

    def __init__(self, sub: HubSubscriber) -> None:
        self.sub = sub
        self.state: dict[str, str] = {}
        self.quotes: dict[str, Quote] = {}

    def line(self, interval: float) -> list[str]:
        counts: Counter[str] = Counter()
        for event in self.sub.drain():
            assert isinstance(event, msgspec.Struct)
            if isinstance(event, Arbitrage):
                continue  # printed on their own lines; they belong to two exchanges
            exchange = getattr(event, "exchange", "")
            counts[exchange] += 1
            if isinstance(event, FeedStatus) and event.scope in ("connection", "exchange"):
                self.state[exchange] = event.state
            elif isinstance(event, Quote):
                self.quotes[exchange] = event
        lines = []
        for exchange in sorted(set(self.state) | set(counts)):
            quote = self.quotes.get(exchange)
            price = f"{quote.symbol} {quote.bid}/{quote.ask}" if quote else "no quote yet"
            lines.append(
                f"{exchange:<10} {self.state.get(exchange, '?'):<11} "
                f"{counts[exchange] / interval:8.0f} events/s   {price}"
            )
        return lines


def describe_opportunity(event: Arbitrage) -> str:
    """One line per opportunity event, for the demo's output."""
    pair = (
        f"{event.symbol:<9} buy {event.buy_exchange} {event.buy_price}  "
        f"sell {event.sell_exchange} {event.sell_price}"
    )
    if event.event == "close":
        return (
            f"arbitrage close  {pair}  after {event.duration_ms / 1000:.1f} s, "
            f"peak {event.peak_net_spread_pct:+.3f} %, reason {event.close_reason}"
        )
    return (
        f"arbitrage {event.event:<6} {pair}  net {event.net_spread_pct:+.3f} % "
        f"(gross {event.gross_spread_pct:+.3f} %), {event.quantity:g} for "
        f"{event.profit:+.2f} {event.currency} ({event.size_source})"
    )


# How each built-in fake's prices sit against the shared mid (bps) and how late they follow it
# (seconds): small standing differences, so that the fakes' own dislocations now and then open
# a real cross-exchange spread. Fakes of other plugins get (0, 0).
DEMO_VENUES: Final[dict[str, tuple[float, float]]] = {
    "binance": (0.0, 0.0),
    "coinbase": (2.0, 0.15),
    "kraken": (-3.0, 0.4),
    "bybit": (1.0, 0.05),
    "okx": (-1.0, 0.1),
}


def demo_exchanges(registry: PluginRegistry, config: Config) -> list[str]:
    """The faked exchanges the demo runs: those enabled by default (the five built-in ones)
    and any other the config enables (e.g. ``[exchanges.simplex] enabled = true``)."""
    chosen = []
    for exchange_id in sorted(registry.fakes):
        cls = registry.exchanges.get(exchange_id)
        configured = config.exchanges.get(exchange_id)
        enabled = configured.enabled if configured is not None else None
        if cls is not None and (enabled or (enabled is None and cls.spec.enabled_by_default)):
            chosen.append(exchange_id)
    return chosen


def create_fakes(
    registry: PluginRegistry,
    exchanges: list[str],
    seed: int = 1,
    symbols: Sequence[str] | None = None,
) -> dict[str, FakeExchangeServer]:
    """One fake per exchange; market fakes share one simulated market.

    ``symbols`` makes every market fake list exactly these (e.g.
    :func:`arbd.testing.marketfake.synthetic_symbols`); by default each lists its own.
    """
    simulator = MarketSimulator(seed=seed)
    fakes: dict[str, FakeExchangeServer] = {}
    for n, exchange_id in enumerate(exchanges):
        factory = registry.fakes[exchange_id]
        create = factory.create
        if isinstance(create, type) and issubclass(create, MarketFake):
            offset_bps, lag = DEMO_VENUES.get(exchange_id, (0.0, 0.0))
            market_fake: type[MarketFake] = create
            fakes[exchange_id] = market_fake(
                symbols, simulator=simulator, offset_bps=offset_bps, lag=lag, seed=seed + n
            )
        else:
            fakes[exchange_id] = factory.create()
    return fakes


async def _run_demo(
    registry: PluginRegistry,
    config: Config,
    duration: float | None,
    writers: dict[str, CaptureWriter],
) -> None:
    fakes = create_fakes(registry, demo_exchanges(registry, config))
    if not fakes:
        click.echo("arbd demo: no installed plugin provides a fake exchange", err=True)
        return
    await _serve_demo(registry, config, fakes, writers, duration)


async def _serve_demo(
    registry: PluginRegistry,
    config: Config,
    fakes: dict[str, FakeExchangeServer],
    writers: dict[str, CaptureWriter],
    duration: float | None,
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(run_fakes, list(fakes.values()))
        for exchange_id, fake in fakes.items():
            click.echo(f"fake {exchange_id:<10} ws {fake.adapter_ws_url()}  rest {fake.rest_url}")
            nursery.start_soon(fake.simulate)
        listeners = await _demo_listeners(config)
        daemon = Daemon(
            demo_config(config, registry, fakes),
            registry,
            recorders=writers,
            server_listeners=listeners,
            metrics_any_port=True,
        )
        report = DemoReport(daemon.hub.subscribe(capacity=100_000, policy="drop_oldest"))
        click.echo("daemon starting; Ctrl-C stops it")

        async def print_reports() -> None:
            interval = 2.0
            metrics_shown = False
            while True:
                await trio.sleep(interval)
                if not metrics_shown and daemon.metrics_port is not None:
                    metrics_shown = True
                    host = daemon.config.metrics.host
                    url = f"http://{host}:{daemon.metrics_port}"
                    click.echo(f"metrics {url}/metrics  health {url}/health")
                for text in report.line(interval):
                    click.echo(text)

        nursery.start_soon(print_reports)
        opportunities = daemon.hub.subscribe(
            Filter(channels=frozenset({"arbitrage"})), capacity=10_000, policy="drop_oldest"
        )

        async def print_opportunities() -> None:
            while True:
                await trio.sleep(0.25)
                for event in opportunities.drain():
                    assert isinstance(event, Arbitrage)
                    click.echo(describe_opportunity(event))

        nursery.start_soon(print_opportunities)

        async def flush_captures() -> None:
            while True:
                await trio.sleep(1.0)
                for writer in writers.values():
                    writer.flush()

        if writers:
            nursery.start_soon(flush_captures)
        with trio.move_on_after(duration if duration else float("inf")):
            await run_until_signal(daemon)
        nursery.cancel_scope.cancel()
    # The closes published as the daemon stopped.
    for event in opportunities.drain():
        assert isinstance(event, Arbitrage)
        click.echo(describe_opportunity(event))


async def _demo_listeners(config: Config) -> list[trio.SocketListener] | None:
    """The local WebSocket server's sockets: the configured port, or a free one when that is
    taken (a running arbd, another demo), so the demo always starts; printed either way."""
    server = config.server
    if not server.enabled:
        return None
    listeners = await open_listeners(server, any_port_if_busy=True)
    port = int(listeners[0].socket.getsockname()[1])
    host = server.host or "127.0.0.1"
    busy = f"  (port {server.port} is in use)" if server.port not in (0, port) else ""
    click.echo(f"local WebSocket server ws://{host}:{port}{server.path}{busy}")
    return listeners


def run_demo(config_path: str | None, duration: float | None, record_dir: str | None) -> None:
    """``arbd demo`` (the command is declared in :mod:`arbd.cli.daemon_cmds`)."""
    with one_line_errors():
        config = load_optional_config(config_path)
        registry = load_registry(config.daemon.plugin_dirs)
        setup_logging(config.logging.level)
        with ExitStack() as stack:
            writers: dict[str, CaptureWriter] = {}
            if record_dir:
                record = Path(record_dir)
                record.mkdir(parents=True, exist_ok=True)
                for exchange_id in demo_exchanges(registry, config):
                    path = record / f"{exchange_id}.jsonl.gz"
                    writers[exchange_id] = stack.enter_context(CaptureWriter(path, exchange_id))
            trio.run(_run_demo, registry, config, duration, writers)
        if writers:
            names = " ".join(str(w.path) for w in writers.values())
            click.echo(f"recorded; replay with: arbd replay {names}")
