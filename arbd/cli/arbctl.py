"""The ``arbctl`` command: talks to a running arbd over its Unix-socket control channel.

Start-up time matters (``arbctl status`` is typed by people and run by scripts in loops), so
this module imports only click and the stdlib-only parts of arbd: ``arbd.control.paths``,
``arbd.control.client`` and ``arbd.cli.ctlview``. No trio, no msgspec, no plugins;
``benchmarks/arbctl_startup.py`` measures it.

Exit codes: 0 success; 1 the daemon is not running, the connection failed, or the daemon could
not do what was asked; 2 a usage error, or a request the daemon rejected as invalid (unknown
exchange or symbol, bad config on reload); 130 ``subscribe`` interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, NoReturn

import click

from arbd.cli.common import OneLineGroup
from arbd.cli.ctlview import (
    CHANNEL_NAMES,
    TopView,
    event_line,
    opportunity_lines,
    status_lines,
)
from arbd.control.client import ControlClient, connect, result_of
from arbd.control.paths import SocketLocation, candidate_paths, configured_socket
from arbd.errors import ControlError

REJECTED = frozenset(
    {
        "invalid_request",
        "unknown_command",
        "unknown_exchange",
        "unknown_symbol",
        "unknown_channel",
        "config_error",
    }
)
"""Error codes that mean "what you asked for is wrong" (exit code 2) rather than "it failed"."""


class _Failed(click.ClickException):
    """``arbctl: <message>`` on stderr, one line, exit code 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"arbctl: {self.format_message()}", err=True)


class _Rejected(_Failed):
    """The same, exit code 2: the request (or the command line) was wrong."""

    exit_code = 2


@contextmanager
def _talking() -> Iterator[None]:
    try:
        yield
    except ControlError as exc:
        raise (_Rejected if exc.code in REJECTED else _Failed)(str(exc)) from None


class _Where:
    """Where to look for the daemon: ``--socket``, else ``--config``'s ``control.socket``,
    else the default locations (``arbd.control.paths``)."""

    def __init__(self, socket_path: str | None, config_path: str | None) -> None:
        self.socket_path = socket_path
        self.config_path = config_path

    def candidates(self) -> list[SocketLocation]:
        if self.socket_path:
            return [SocketLocation(self.socket_path, "--socket")]
        configured = ""
        if self.config_path:
            try:
                with open(self.config_path, encoding="utf-8") as f:
                    configured = configured_socket(f.read())
            except OSError as exc:
                raise _Rejected(f"{self.config_path}: cannot read: {exc.strerror}") from None
            except (ValueError, UnicodeDecodeError) as exc:
                raise _Rejected(f"{self.config_path}: {exc}") from None
        return candidate_paths(configured, os.environ, os.getuid(), for_client=True)

    def connect(self) -> ControlClient:
        return connect(self.candidates())


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        import arbd  # noqa: PLC0415 - the version lookup is slow; only --version needs it

        click.echo(f"arbctl, version {arbd.__version__}")
        ctx.exit()


@click.group(name="arbctl", cls=OneLineGroup)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False),
    help="The daemon's control socket (default: the configured or standard locations).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Find the socket through this config file's control.socket.",
)
@click.pass_context
def cli(ctx: click.Context, socket_path: str | None, config_path: str | None) -> None:
    """arbctl: control a running arbd daemon."""
    ctx.obj = _Where(socket_path, config_path)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="arbctl")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


# -- one request, one reply -------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(where: _Where, as_json: bool) -> None:
    """Uptime, version, and the health of every exchange feed."""
    with _talking(), where.connect() as client:
        result = client.call({"cmd": "status"})
    if as_json:
        _echo_json(result)
        return
    for line in status_lines(result):
        click.echo(line)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the opportunity events as JSON.")
@click.option("--all", "closed_too", is_flag=True, help="Include recently closed ones.")
@click.pass_obj
def opportunities(where: _Where, as_json: bool, closed_too: bool) -> None:
    """Open arbitrage opportunities (their latest event), oldest first."""
    with _talking(), where.connect() as client:
        result = client.call({"cmd": "opportunities", "all": closed_too})
    if as_json:
        _echo_json(result)
        return
    for line in opportunity_lines(result, closed_too):
        click.echo(line)


@cli.group(cls=OneLineGroup)
def symbols() -> None:
    """Subscribe or unsubscribe an exchange's symbols while the daemon runs."""


def _change_symbols(where: _Where, op: str, exchange: str, names: tuple[str, ...]) -> None:
    wanted = [name.upper() for name in names]
    with _talking(), where.connect() as client:
        result = client.call({"cmd": "symbols", "op": op, "exchange": exchange, "symbols": wanted})
    changed = result["changed"]
    verb = "subscribed" if op == "add" else "unsubscribed"
    if changed:
        click.echo(f"{exchange}: {verb} {', '.join(changed)}")
    unchanged = [name for name in wanted if name not in changed]
    if unchanged:
        state = "already subscribed" if op == "add" else "not changed"
        click.echo(f"{exchange}: {state}: {', '.join(unchanged)}")


@symbols.command("add")
@click.argument("exchange")
@click.argument("names", metavar="SYMBOL...", nargs=-1, required=True)
@click.pass_obj
def symbols_add(where: _Where, exchange: str, names: tuple[str, ...]) -> None:
    """Start streaming SYMBOLs (BASE/QUOTE) from EXCHANGE, without a restart."""
    _change_symbols(where, "add", exchange, names)


@symbols.command("remove")
@click.argument("exchange")
@click.argument("names", metavar="SYMBOL...", nargs=-1, required=True)
@click.pass_obj
def symbols_remove(where: _Where, exchange: str, names: tuple[str, ...]) -> None:
    """Stop streaming SYMBOLs from EXCHANGE."""
    _change_symbols(where, "remove", exchange, names)


@cli.command()
@click.pass_obj
def reload(where: _Where) -> None:
    """Re-read the daemon's config file and apply the changes. An invalid file changes
    nothing: the error is printed and the daemon keeps its running configuration."""
    with _talking(), where.connect() as client:
        result = client.call({"cmd": "reload"})
    changes = result["changes"]
    for change in changes:
        click.echo(change)
    if not changes:
        click.echo("reloaded: no changes")


@cli.command()
@click.pass_obj
def stop(where: _Where) -> None:
    """Shut the daemon down gracefully."""
    with _talking(), where.connect() as client:
        client.call({"cmd": "stop"})
    click.echo("arbd is stopping")


# -- subscribe --------------------------------------------------------------------------------


@cli.command()
@click.argument("names", metavar="[SYMBOL]...", nargs=-1)
@click.option("-e", "--exchange", "exchanges", multiple=True, help="Only this exchange (repeat).")
@click.option(
    "-c",
    "--channel",
    "channels",
    multiple=True,
    type=click.Choice(CHANNEL_NAMES),
    help="Only this channel (repeat).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line, as sent.")
@click.option(
    "--top", is_flag=True, help="A live table of best bid/ask per exchange and the best spread."
)
@click.pass_context
def subscribe(
    ctx: click.Context,
    names: tuple[str, ...],
    exchanges: tuple[str, ...],
    channels: tuple[str, ...],
    as_json: bool,
    top: bool,
) -> None:
    """Stream live events for SYMBOLs (all symbols when none is given) until Ctrl-C.

    The current state (latest prices, books, status, open opportunities) comes first.
    """
    if top and (channels or as_json):
        raise click.UsageError("--top shows prices and opportunities; drop -c and --json")
    where: _Where = ctx.obj
    wanted = [name.upper() for name in names]
    request = {
        "cmd": "subscribe",
        "symbols": wanted,
        "exchanges": list(exchanges),
        "channels": ["price", "arbitrage"] if top else list(channels),
    }
    try:
        with _talking(), where.connect() as client:
            client.call(request)
            if top:
                _show_top(client, wanted)
            else:
                _print_events(client, as_json)
    except KeyboardInterrupt:
        ctx.exit(130)
    except BrokenPipeError:
        _stdout_closed()


def _next_event(client: ControlClient, timeout: float | None) -> bytes | None:
    line = client.read_line(timeout)
    if line is not None and line.startswith(b'{"ok":'):
        result_of(json.loads(line))  # an error reply ends the stream (overflow): raises
    return line


def _print_events(client: ControlClient, as_json: bool) -> None:
    out = sys.stdout
    while True:
        line = _next_event(client, None)
        assert line is not None  # no timeout: a line or an exception
        if as_json:
            out.write(line.decode() + "\n")
        else:
            out.write(event_line(json.loads(line)) + "\n")
        if not client.has_line():
            out.flush()  # flush per burst, not per line


def _show_top(client: ControlClient, names: list[str]) -> None:
    view = TopView(names)
    tty = sys.stdout.isatty()
    interval = 0.5 if tty else 1.0
    next_draw = time.monotonic() + interval
    while True:
        now = time.monotonic()
        if now >= next_draw:
            lines = view.lines(time.time())
            if tty:
                # Home, then each line clearing its rest, then clear below: no flicker.
                sys.stdout.write("\x1b[H" + "".join(f"{x}\x1b[K\n" for x in lines) + "\x1b[J")
            else:
                sys.stdout.write("\n".join(lines) + "\n\n")
            sys.stdout.flush()
            next_draw = now + interval
        line = _next_event(client, max(0.0, next_draw - now))
        if line is not None:
            view.update(json.loads(line))


def _stdout_closed() -> NoReturn:
    """The reader went away (``arbctl subscribe | head``): stop quietly, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    sys.exit(141)
