"""Commands that run the daemon: ``arbd start``, ``arbd record`` and ``arbd demo``.

The daemon (trio, the feeds, the server, the engine) is imported inside the commands, when one
runs: ``arbd --help`` and the other commands do not pay for it.
"""

# ruff: noqa: PLC0415 - the imports inside functions are the point of this module

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click
import msgspec

from arbd.cli.common import fail, load_registry, one_line_errors
from arbd.config import Config, ControlConfig, ExchangeConfig, load_config
from arbd.model import CHANNELS

if TYPE_CHECKING:
    from arbd.capture import CaptureWriter
    from arbd.daemon import Daemon


def load_optional_config(config_path: str | None) -> Config:
    """The config at ``config_path``, or the defaults when none is given."""
    if config_path is None:
        return Config()
    return load_config(config_path)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text or JSON (default: logging.format from the config).",
)
def start(config_path: str | None, log_format: str | None) -> None:
    """Run the daemon in the foreground until SIGINT or SIGTERM; SIGHUP reloads --config.

    Under systemd (Type=notify) it reports readiness, status and watchdog pings on
    $NOTIFY_SOCKET, and logs to the journal with syslog priorities.
    """
    import trio

    from arbd.daemon import Daemon
    from arbd.logs import setup_logging
    from arbd.sdnotify import Notifier
    from arbd.signals import run_until_signal

    with one_line_errors():
        config = load_optional_config(config_path)
        registry = load_registry(config.daemon.plugin_dirs)
        setup_logging(
            config.logging.level,
            log_format or config.logging.format,
            secrets=[config.server.token],
        )
        daemon = Daemon(
            config, registry, config_path=config_path, notifier=Notifier.from_environment()
        )
        try:
            trio.run(run_until_signal, daemon)
        finally:
            logging.shutdown()  # flush every handler before the process ends


@click.command()
@click.option("--exchange", "exchange_id", required=True, help="Exchange id to record.")
@click.option("--symbols", default="", help="Comma-separated symbols (default: configured).")
@click.option("--channels", default="", help="Comma-separated channels (default: all).")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def record(
    exchange_id: str,
    symbols: str,
    channels: str,
    duration: float,
    out_path: str,
    config_path: str | None,
) -> None:
    """Record a live session of one exchange to a capture file (.gz/.zst by suffix)."""
    import trio

    from arbd.capture import CaptureWriter
    from arbd.daemon import Daemon
    from arbd.logs import setup_logging

    with one_line_errors():
        config = load_optional_config(config_path)
        registry = load_registry(config.daemon.plugin_dirs)
        setup_logging(config.logging.level)
        base = config.exchanges.get(exchange_id, ExchangeConfig())
        overrides: dict[str, object] = {"enabled": True}
        if symbols:
            overrides["symbols"] = [s.strip() for s in symbols.split(",") if s.strip()]
        if channels:
            wanted = [c.strip() for c in channels.split(",") if c.strip()]
            unknown = [c for c in wanted if c not in CHANNELS]
            if unknown:
                fail(f"--channels: unknown channel {unknown[0]!r} (one of {', '.join(CHANNELS)})")
            overrides["channels"] = wanted
        exchange = msgspec.structs.replace(base, **overrides)
        # A recording serves nobody and is not a daemon to control: no local WebSocket port or
        # control socket to collide with a running arbd.
        control = ControlConfig(enabled=False)
        server = msgspec.structs.replace(config.server, enabled=False)
        config = msgspec.structs.replace(
            config, exchanges={exchange_id: exchange}, control=control, server=server
        )
        with CaptureWriter(Path(out_path), exchange=exchange_id) as writer:
            daemon = Daemon(config, registry, recorder=writer)
            trio.run(_record_for, daemon, writer, duration)


async def _record_for(daemon: Daemon, writer: CaptureWriter, duration: float) -> None:
    import trio

    from arbd.signals import run_until_signal

    async def flush_every_second() -> None:
        # A capture cut short (kill -9, power loss) keeps all but the last second.
        while True:
            await trio.sleep(1.0)
            writer.flush()

    with trio.move_on_after(duration):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flush_every_second)
            await run_until_signal(daemon)
            nursery.cancel_scope.cancel()


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML overrides.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--record",
    "record_dir",
    type=click.Path(file_okay=False),
    help="Also write one capture per exchange (EXCHANGE.jsonl.gz) into this directory.",
)
def demo(config_path: str | None, duration: float | None, record_dir: str | None) -> None:
    """Start every installed fake exchange and the daemon against them, fully offline.

    Arbitrage opportunities the simulated dislocations open are printed as they open and close.
    The local WebSocket server listens as configured (ws://127.0.0.1:8765/ws by default; a free
    port if that one is taken), so programs can connect to the demo as to a real daemon.
    """
    from arbd.cli.demo import run_demo

    run_demo(config_path, duration, record_dir)


def register(cli: click.Group) -> None:
    cli.add_command(start)
    cli.add_command(record)
    cli.add_command(demo)
