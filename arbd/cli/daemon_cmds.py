"""Commands that run the daemon: ``arbd start`` and ``arbd record``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import trio

from arbd.capture import CaptureWriter
from arbd.config import Config, ExchangeConfig, load_config
from arbd.daemon import Daemon, run_until_signal
from arbd.errors import ArbdError
from arbd.logs import setup_logging
from arbd.model import CHANNELS
from arbd.plugins import load_plugins


def _fail(message: str) -> None:
    click.echo(f"arbd: {message}", err=True)
    sys.exit(2)


def _load(config_path: str | None) -> Config:
    if config_path is None:
        return Config()
    return load_config(config_path)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def start(config_path: str | None) -> None:
    """Run the daemon in the foreground until SIGINT or SIGTERM."""
    try:
        config = _load(config_path)
        registry = load_plugins()
        setup_logging(config.logging.level)
        for failed in registry.failed:
            click.echo(f"arbd: plugin {failed.name} skipped: {failed.error}", err=True)
        daemon = Daemon(config, registry)
    except ArbdError as exc:
        _fail(str(exc))
        return
    trio.run(run_until_signal, daemon)


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
    try:
        config = _load(config_path)
        registry = load_plugins()
        setup_logging(config.logging.level)
        base = config.exchanges.get(exchange_id, ExchangeConfig())
        overrides: dict[str, object] = {"enabled": True}
        if symbols:
            overrides["symbols"] = [s.strip() for s in symbols.split(",") if s.strip()]
        if channels:
            wanted = [c.strip() for c in channels.split(",") if c.strip()]
            unknown = [c for c in wanted if c not in CHANNELS]
            if unknown:
                _fail(f"--channels: unknown channel {unknown[0]!r} (one of {', '.join(CHANNELS)})")
            overrides["channels"] = wanted
        import msgspec  # noqa: PLC0415

        exchange = msgspec.structs.replace(base, **overrides)
        config = msgspec.structs.replace(config, exchanges={exchange_id: exchange})
        with CaptureWriter(Path(out_path), exchange=exchange_id) as writer:
            daemon = Daemon(config, registry, recorder=writer)
            trio.run(_record_for, daemon, duration)
    except ArbdError as exc:
        _fail(str(exc))


async def _record_for(daemon: Daemon, duration: float) -> None:
    with trio.move_on_after(duration):
        await run_until_signal(daemon)


def register(cli: click.Group) -> None:
    from arbd.cli.demo import demo  # noqa: PLC0415 - keeps `arbd --help` imports small

    cli.add_command(start)
    cli.add_command(record)
    cli.add_command(demo)
