"""Hook specifications for arbd plugins.

Every hook is called once, at start-up, and only registers things; none is ever called per
message (a pluggy call costs ~20x a direct call). Built-in exchanges register through these same
hooks, via the same ``arbd`` entry-point group a third party uses.

A plugin is a module (or object) with functions decorated by ``arbd.hookimpl``::

    from arbd import hookimpl

    @hookimpl
    def arbd_exchanges():
        return [MyExchangeAdapter]

Every hook here is documented in ``docs/plugins.md``; a test fails when one is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from arbd.exchange.adapter import ExchangeAdapter
    from arbd.testing.fake import FakeExchangeFactory

PROJECT = "arbd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def arbd_exchanges() -> list[type[ExchangeAdapter]]:  # type: ignore[empty-body]
    """Return the exchange adapter classes this plugin provides.

    Each class subclasses :class:`arbd.exchange.ExchangeAdapter` and declares its static facts in
    a class attribute ``spec`` (:class:`arbd.exchange.ExchangeSpec`) whose ``id`` is unique among
    all loaded plugins.
    """


@hookspec
def arbd_fake_exchanges() -> list[FakeExchangeFactory]:  # type: ignore[empty-body]
    """Return fake servers for this plugin's exchanges, for tests and ``arbd demo``.

    Each item is a :class:`arbd.testing.fake.FakeExchangeFactory`: the exchange id it fakes and a
    callable that builds a server speaking that exchange's protocol on loopback.
    """
