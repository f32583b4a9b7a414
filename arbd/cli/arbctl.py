"""The ``arbctl`` command: talks to a running arbd over its Unix-socket control channel.

The control commands (status, subscriptions, reconnect, reload, ...) arrive with the control
channel itself (issue 5). Until then ``arbctl`` only answers ``--version`` and ``--help``.
"""

from __future__ import annotations

import click

import arbd
from arbd.cli.common import OneLineGroup


@click.group(name="arbctl", cls=OneLineGroup)
@click.version_option(arbd.__version__, prog_name="arbctl")
def cli() -> None:
    """arbctl: control a running arbd daemon."""


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="arbctl")
