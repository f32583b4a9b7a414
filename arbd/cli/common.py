"""What every arbd command shares: one-line errors with exit code 2, and plugin loading.

Rule for every command: a problem the user can fix (usage, configuration, a capture) is one line
on stderr and exit code 2, never a traceback. Commands raise :class:`Fail` (or let an
``ArbdError`` that :func:`one_line_errors` translates escape); :class:`OneLineGroup` renders
Click's own usage errors the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, NoReturn

import click

from arbd.errors import ArbdError, ConfigError
from arbd.plugins import PluginRegistry, load_plugins

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
        # Raised inside trio (e.g. the server's port is taken): nurseries wrap it in groups.
        errors, rest = group.split(ArbdError)
        if errors is None or rest is not None:
            raise
        first = errors.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        fail(first.one_line() if isinstance(first, ConfigError) else str(first))


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


def load_registry() -> PluginRegistry:
    """Load plugins; warn on stderr, one line each, about plugins that failed and were skipped."""
    registry = load_plugins()
    for info in registry.failed:
        click.echo(f"warning: plugin {info.name!r} skipped: {info.error}", err=True)
    return registry
