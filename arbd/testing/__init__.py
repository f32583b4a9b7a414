"""Public helpers for tests and plugin authors: the fake exchange server base.

``arbd.testing.fake`` holds :class:`FakeExchangeServer` (subclass it to fake an exchange),
:class:`FakeConnection`, the :class:`Faults` switches and :func:`open_fake`.
"""

from arbd.testing.fake import (
    ConnectionFaults,
    FakeConnection,
    FakeExchangeFactory,
    FakeExchangeServer,
    Faults,
    open_fake,
)

__all__ = [
    "ConnectionFaults",
    "FakeConnection",
    "FakeExchangeFactory",
    "FakeExchangeServer",
    "Faults",
    "open_fake",
]
