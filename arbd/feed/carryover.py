"""What one connection of a supervisor slot announced that must outlive it (pure).

Sessions and watchdogs belong to one connection, but what they announce (``status`` events
naming the slot) stays true for consumers until something says otherwise: the hub's status
map, the arbitrage engine's gates, every client that follows statuses. When a connection is
replaced (reconnect or rotation), the new session and watchdog start from scratch and only
announce changes relative to their own past, which left two announcements standing forever
(both found by the soak, ``benchmarks/soak.py``):

- a book announced ``invalid`` or ``resyncing`` that the next connection synchronizes again:
  its session publishes ``book`` events but never ``valid`` (it never announced the book
  invalid itself). :meth:`SlotMemory.settle` puts a ``valid`` status before such a ``book``;
- a subscription the old watchdog reported ``stale`` (or the exchange ``refused``): the new
  watchdog only announces ``live`` for subscriptions it saw go stale. The supervisor hands
  the old connection's :attr:`~arbd.feed.connection.Connection.not_live` subscriptions to the
  new one, which announces ``live`` when their data arrives.

One :class:`SlotMemory` per slot, shared by its successive connections; not thread-safe. It
must see what is actually published: during a rotation's hand-over the filter drops the
replacement's unsequenced events and statuses until it becomes primary, so the connections
stop settling their own output and :func:`handover_sink` settles what passes the filter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from arbd.exchange.book import book_status
from arbd.model import Book, Event, FeedStatus

if TYPE_CHECKING:
    from arbd.feed.handover import Handover

Sink = Callable[[Sequence[Event]], None]

RESYNCED_REASON = "synchronized on a new connection"
"""The ``reason`` of a ``valid`` book status this module adds."""


class SlotMemory:
    """Book validity as the slot's connections announced it, across connections."""

    __slots__ = ("exchange", "unsettled")

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.unsettled: set[str] = set()
        """Symbols whose last book status from this slot was not ``valid``."""

    def settle(self, events: Sequence[Event]) -> Sequence[Event]:
        """Record the batch's book statuses; return it with ``valid`` put before the first
        ``book`` of a symbol whose book was last announced not valid. Call it for a batch
        that holds a status, or whenever :attr:`unsettled` is not empty."""
        unsettled = self.unsettled
        out: list[Event] | None = None
        for index, event in enumerate(events):
            kind = type(event)
            if kind is FeedStatus:
                status: FeedStatus = event  # type: ignore[assignment]
                if status.scope == "book":
                    if status.state == "valid":
                        unsettled.discard(status.symbol)
                    else:
                        unsettled.add(status.symbol)
            elif kind is Book and event.symbol in unsettled:
                book: Book = event  # type: ignore[assignment]
                unsettled.discard(book.symbol)
                if out is None:
                    out = list(events[:index])
                out.append(
                    book_status(
                        self.exchange, book.symbol, "valid", RESYNCED_REASON, book.received_ns
                    )
                )
            if out is not None:
                out.append(event)
        return events if out is None else out


def handover_sink(sink: Sink, memory: SlotMemory, handover: Handover, source: object) -> Sink:
    """The sink of one of the two connections during a hand-over: the filter first, then
    :meth:`SlotMemory.settle` on what passed it, then ``sink``."""

    def publish(events: Sequence[Event]) -> None:
        sink(memory.settle(handover.filter(source, events)))

    return publish
