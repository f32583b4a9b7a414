"""The ``arbd`` command.

Commands that need no running daemon live here: ``config init``, ``config check``, ``plugins``
and ``replay``. The daemon commands (``start``, ``record``, ``demo``) are registered onto
:data:`cli` by the daemon's own CLI module (see the marked section at the end).

Every command reports a problem the user can fix as one line on stderr with exit code 2
(:mod:`arbd.cli.common`). Heavy modules are imported inside the commands that use them, so
``arbd --help`` stays fast.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

import arbd
from arbd.cli.common import OneLineGroup, fail, load_registry, one_line_errors
from arbd.config import Config, ExchangeConfig, config_to_dict, load_config
from arbd.errors import ConfigError
from arbd.plugins import PluginRegistry


@click.group(name="arbd", cls=OneLineGroup)
@click.version_option(arbd.__version__, prog_name="arbd")
def cli() -> None:
    """arbd: local crypto market-data and cross-exchange arbitrage daemon."""


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="arbd")


# -- config ----------------------------------------------------------------------------------


@cli.group(cls=OneLineGroup)
def config() -> None:
    """Write and check configuration files."""


_HEADER = (
    "# arbd configuration, written by `arbd config init` with every default spelled out.\n"
    "# Every key is described in docs/configuration.md. Check edits with `arbd config check`.\n"
    "\n"
)


def default_config(registry: PluginRegistry) -> Config:
    """The default config with one section per exchange the installed plugins provide."""
    exchanges = {
        exchange_id: ExchangeConfig(
            enabled=cls.spec.enabled_by_default,
            symbols=list(cls.spec.default_symbols),
            channels=list(cls.spec.channels),
            book_depth=20,
        )
        for exchange_id, cls in sorted(registry.exchanges.items())
    }
    return Config(exchanges=exchanges)


def render_config(config: Config) -> str:
    import tomli_w  # noqa: PLC0415 - only this command writes TOML

    return _HEADER + tomli_w.dumps(config_to_dict(config))


@config.command("init")
@click.argument("path", default="arbd.toml", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def config_init(path: str, force: bool) -> None:
    """Write a complete default configuration to PATH (default ./arbd.toml; - for stdout).

    It has a section for every exchange the installed plugins provide.
    """
    text = render_config(default_config(load_registry()))
    if path == "-":
        click.echo(text, nl=False)
        return
    target = Path(path)
    if target.exists() and not force:
        fail(f"{path}: already exists (use --force to overwrite)")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot write: {exc.strerror or exc}")
    click.echo(f"{path}: written", err=True)


def check_exchanges(config: Config, registry: PluginRegistry, file: str) -> None:
    """Every configured exchange must be installed and offer the configured channels, and
    every live conversion market must be on a configured, enabled exchange."""
    installed = sorted(registry.exchanges)
    from arbd.arbitrage.conversion import conversion_symbols  # noqa: PLC0415 - light `--help`

    conversion_symbols(config, file)
    for exchange_id, section in config.exchanges.items():
        key = f"exchanges.{exchange_id}"
        cls = registry.exchanges.get(exchange_id)
        if cls is None:
            close = difflib.get_close_matches(exchange_id, installed, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown exchange {exchange_id!r} (installed: {', '.join(installed) or 'none'}"
                f"{hint})",
                path=file,
                key=key,
            )
        offered = cls.spec.channels
        for i, channel in enumerate(section.channels):
            if channel not in offered:
                raise ConfigError(
                    f"{exchange_id} does not offer channel {channel!r} "
                    f"(it offers: {', '.join(offered)})",
                    path=file,
                    key=f"{key}.channels[{i}]",
                )


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Validate the configuration file at PATH against the installed plugins."""
    with one_line_errors():
        loaded = load_config(path)
        check_exchanges(loaded, load_registry(), path)
    click.echo(f"{path}: ok")


# -- plugins ---------------------------------------------------------------------------------


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def plugins_cmd(as_json: bool) -> None:
    """List installed plugins, their exchanges and channels, and plugins that failed to load."""
    registry = load_registry()
    rows: list[dict[str, Any]] = [
        {
            "name": info.name,
            "version": info.version,
            "exchanges": info.exchanges,
            "channels": info.channels,
            "fakes": info.fakes,
            "error": info.error or None,
        }
        for info in [*registry.plugins, *registry.failed]
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no plugins installed")
        return
    table = [("PLUGIN", "VERSION", "EXCHANGE", "CHANNELS")]
    for row in rows:
        if row["error"]:
            table.append((row["name"], row["version"], "-", f"FAILED: {row['error']}"))
            continue
        if not row["exchanges"]:
            table.append((row["name"], row["version"], "-", "-"))
        table.extend(
            (row["name"], row["version"], exchange_id, ",".join(row["channels"][exchange_id]))
            for exchange_id in row["exchanges"]
        )
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for r in table:
        cells = [r[i].ljust(widths[i]) for i in range(3)]
        click.echo("  ".join([*cells, r[3]]).rstrip())


# -- replay ----------------------------------------------------------------------------------


@cli.command("replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_path",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the events here instead of stdout.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Take book depth and REST URLs from this configuration.",
)
def replay_cmd(files: tuple[str, ...], out_path: str, config_path: str | None) -> None:
    """Replay captures through the exchange adapters; print every event as a JSON line.

    Several FILES are merged by time. Output is identical for identical captures. Frames an
    adapter cannot parse are reported on stderr with their line number and skipped.
    """
    from arbd.replay import replay  # noqa: PLC0415 - keep `arbd --help` light

    with one_line_errors():
        loaded = load_config(config_path) if config_path else None
        registry = load_registry()
        if out_path == "-":
            try:
                stats = replay(files, registry, sys.stdout.buffer, loaded)
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                _stdout_closed()
        else:
            target = Path(out_path)
            partial = target.with_name(target.name + ".partial")
            try:
                with partial.open("wb") as out:
                    stats = replay(files, registry, out, loaded)
                partial.replace(target)
            except OSError as exc:
                fail(f"{out_path}: cannot write: {exc.strerror or exc}")
            finally:
                partial.unlink(missing_ok=True)
    skipped = stats.skipped_frames + stats.bad_records
    click.echo(
        f"replayed {len(files)} capture(s): {stats.records} records, {stats.frames} frames, "
        f"{stats.events} events, {skipped} skipped",
        err=True,
    )


def _stdout_closed() -> NoReturn:
    """The reader went away (`arbd replay x | head`): stop quietly, as Unix tools do."""
    # Point stdout at /dev/null so the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a tool killed by the pipe


# -- daemon commands ---------------------------------------------------------------------------
# `start`, `record` and `demo` need the live daemon (arbd.daemon, arbd.feed); they are defined in
# arbd/cli/daemon_cmds.py and registered onto `cli` here, so `arbd --help` lists them. New daemon
# commands go into that module's `register()`, not here.


def _register_daemon_commands() -> None:
    from arbd.cli import daemon_cmds  # noqa: PLC0415 - imported after `cli` exists

    daemon_cmds.register(cli)


_register_daemon_commands()
