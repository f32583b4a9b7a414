"""What every arbd command shares: one-line errors with exit code 2, and plugin loading.

Rule for every command: a problem the user can fix (usage, configuration, a capture) is one line
on stderr and exit code 2, never a traceback. Commands raise :class:`Fail` (or let an
``ArbdError`` that :func:`one_line_errors` translates escape); :class:`OneLineGroup` renders
Click's own usage errors the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from arbd.errors import ArbdError, ConfigError

if TYPE_CHECKING:
    # Imported when used: `arbctl` shares this module and must not pay for pluggy at start-up.
    from arbd.plugins import PluginRegistry

EXIT_USAGE = 2
"""Exit code for usage, configuration and capture errors (Click's own usage code)."""


class Fail(click.ClickException):
    """A one-line error message on stderr and exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=True)


def fail(message: str) -> NoReturn:
    raise Fail(" ".join(message.split("\n")))


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn an ``ArbdError`` raised inside into :class:`Fail`, so it prints as one line."""
    try:
        yield
    except ConfigError as exc:
        fail(exc.one_line())
    except ArbdError as exc:
        fail(str(exc))
    except BaseExceptionGroup as group:
        # trio's nurseries wrap what a component raised at start-up (the control socket of a
        # running daemon, say); a lone arbd error inside is still reported as one line.
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if not isinstance(leaf, ArbdError):
            raise
        fail(leaf.one_line() if isinstance(leaf, ConfigError) else str(leaf))


class OneLineGroup(click.Group):
    """A Click group whose usage errors (and its subcommands') are one line, exit code 2."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # bare `arbd`: the help text is the useful answer
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None


def _one_line_usage(exc: click.UsageError) -> Fail:
    where = exc.ctx.command_path if exc.ctx is not None else "arbd"
    hint = f" (see '{where} --help')"
    return Fail(f"{where}: {' '.join(exc.format_message().split())}{hint}")


def load_registry(plugin_dirs: Sequence[str] = ()) -> PluginRegistry:
    """Load plugins (also from ``plugin_dirs``, the config's ``daemon.plugin_dirs``); warn on
    stderr, one line each, about plugins that failed and were skipped."""
    from arbd.plugins import load_plugins  # noqa: PLC0415 - see the TYPE_CHECKING import

    registry = load_plugins(plugin_dirs=plugin_dirs)
    for info in registry.failed:
        click.echo(f"warning: plugin {info.name!r} skipped: {info.error}", err=True)
    return registry
