"""In-process fan-out of normalized events, with the latest market state for late joiners.

``Hub.publish(events)`` is synchronous and never blocks: it updates the market state, runs the
synchronous processors (the arbitrage engine, which may add events), and offers every event to
each subscriber whose filter matches. A subscriber owns a bounded buffer and a policy for when
the buffer is full:

``conflate``     keep only the latest price/book per (type, exchange, symbol); events that must
                 never be lost (arbitrage, status) and other types are queued; when the buffer
                 is still full the oldest conflatable entry is dropped (counted).
``drop_oldest``  a ring buffer: the oldest event is dropped (counted).
``disconnect``   the subscriber is marked ``overflowed``; its owner closes it.

Subscribers that want bytes get each event encoded once per publish, not once per subscriber.
A subscriber's ``wake`` callback (e.g. ``trio.Event.set``) is called when its buffer goes from
empty to non-empty, so an idle writer task costs nothing per event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import count
from typing import Any, Literal

import msgspec

from arbd.model import EVENT_CHANNEL, SLOT_REMOVED, Arbitrage, Book, Event, FeedStatus, Quote

Policy = Literal["conflate", "drop_oldest", "disconnect"]
Processor = Callable[[Sequence[Event]], Sequence[Event]]
"""A synchronous stage that sees each published batch and may return extra events."""

_CONFLATABLE = (Quote, Book)


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    """Which events a subscriber wants. Empty sets mean "all"."""

    exchanges: frozenset[str] = frozenset()
    symbols: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    def matches(self, event: Event) -> bool:
        if self.channels and EVENT_CHANNEL[type(event)] not in self.channels:
            return False
        if isinstance(event, Arbitrage):
            # An opportunity has two exchanges and up to three symbols (its group's and each
            # leg's): a subscriber to any of them wants it.
            return (
                not self.exchanges
                or event.buy_exchange in self.exchanges
                or event.sell_exchange in self.exchanges
            ) and (
                not self.symbols
                or event.symbol in self.symbols
                or event.buy_symbol in self.symbols
                or event.sell_symbol in self.symbols
            )
        if self.exchanges and event.exchange not in self.exchanges:
            return False
        # Exchange-wide status events (empty symbol) reach every subscriber of that exchange.
        return not self.symbols or event.symbol in self.symbols or event.symbol == ""


class HubSubscriber:
    """One consumer's bounded buffer. Read with ``drain()``; check ``overflowed``."""

    def __init__(
        self,
        filter: Filter,
        capacity: int,
        policy: Policy,
        wake: Callable[[], None] | None,
        encoded: bool,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.filter = filter
        self.match_all = not (filter.exchanges or filter.symbols or filter.channels)
        """Skips the filter call per event for the common "everything" subscriber."""
        self.capacity = capacity
        self.policy = policy
        self.wake = wake
        self.encoded = encoded
        self.dropped = 0
        self.overflowed = False
        self._unique = count()
        # conflate: insertion-ordered dict key -> item; others: deque of items.
        self._latest: dict[object, object] = {}
        self._queue: deque[object] = deque()

    def __len__(self) -> int:
        return len(self._latest) if self.policy == "conflate" else len(self._queue)

    def offer(self, event: Event, item: object) -> None:
        """Add ``item`` (the event or its encoded bytes) under this subscriber's policy."""
        if self.overflowed:
            return
        was_empty = len(self) == 0
        if self.policy == "conflate":
            self._offer_conflate(event, item)
        elif len(self._queue) >= self.capacity:
            if self.policy == "drop_oldest":
                self._queue.popleft()
                self.dropped += 1
                self._queue.append(item)
            else:
                self.overflowed = True
                self._queue.clear()
        else:
            self._queue.append(item)
        if was_empty and self.wake is not None:
            self.wake()

    def _offer_conflate(self, event: Event, item: object) -> None:
        latest = self._latest
        if isinstance(event, _CONFLATABLE):
            key: object = (type(event), event.exchange, event.symbol)
            if key in latest:
                # Replacing in place keeps the entry's position: a fast-moving symbol cannot
                # starve the others, and the reader still sees the newest value.
                latest[key] = item
                self.dropped += 1
                return
        else:
            key = next(self._unique)
        if len(latest) >= self.capacity:
            for old_key in latest:
                if isinstance(old_key, tuple):
                    del latest[old_key]
                    self.dropped += 1
                    break
            else:
                # Full of events that must not be dropped: the client is hopelessly behind.
                self.overflowed = True
                latest.clear()
                return
        latest[key] = item

    def drain(self) -> list[object]:
        """Everything buffered, oldest first; empties the buffer."""
        if self.policy == "conflate":
            items = list(self._latest.values())
            self._latest.clear()
        else:
            items = list(self._queue)
            self._queue.clear()
        return items


class MarketState:
    """Latest quote and book per (exchange, symbol), the latest status per subject, and the
    open arbitrage opportunities (by id; a ``close`` removes one)."""

    def __init__(self) -> None:
        self.quotes: dict[tuple[str, str], Quote] = {}
        self.books: dict[tuple[str, str], Book] = {}
        self.book_state: dict[tuple[str, str], str] = {}
        self.status: dict[tuple[str, str, str, str, str], FeedStatus] = {}
        self.opportunities: dict[str, Arbitrage] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            Quote: self._quote,
            Book: self._book,
            FeedStatus: self._status,
            Arbitrage: self._arbitrage,
        }

    def update(self, event: Event) -> None:
        """Record ``event`` if it is state (quotes, books, status); trades and candles are not."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _quote(self, event: Quote) -> None:
        self.quotes[event.exchange, event.symbol] = event

    def _book(self, event: Book) -> None:
        key = (event.exchange, event.symbol)
        self.books[key] = event
        self.book_state[key] = "valid"

    def _status(self, event: FeedStatus) -> None:
        key5 = (event.exchange, event.scope, event.connection, event.channel, event.symbol)
        if event.scope == "connection" and event.reason == SLOT_REMOVED:
            # The slot is gone for good: a late joiner must not see it as a stopped connection.
            self._forget(lambda k: k[0] == event.exchange and k[2] == event.connection)
            return
        self.status[key5] = event
        if event.scope == "book":
            key = (event.exchange, event.symbol)
            self.book_state[key] = event.state
            if event.state != "valid":
                # An invalid book is never served, not even as "the latest".
                self.books.pop(key, None)

    def _arbitrage(self, event: Arbitrage) -> None:
        if event.event == "close":
            self.opportunities.pop(event.id, None)
        else:
            self.opportunities[event.id] = event

    def drop(self, exchange: str, symbols: Iterable[str] | None = None) -> None:
        """Forget ``symbols`` of ``exchange`` (all of its state when ``None``): they were
        unsubscribed, so new subscribers must not get their last quote or book."""
        if symbols is None:
            self._forget(lambda k: k[0] == exchange)
            gone = {key for key in self.quotes.keys() | self.books.keys() if key[0] == exchange}
            gone.update(key for key in self.book_state if key[0] == exchange)
        else:
            wanted = set(symbols)
            self._forget(lambda k: k[0] == exchange and k[4] in wanted)
            gone = {(exchange, symbol) for symbol in wanted}
        for key in gone:
            self.quotes.pop(key, None)
            self.books.pop(key, None)
            self.book_state.pop(key, None)

    def _forget(self, matches: Callable[[tuple[str, str, str, str, str]], bool]) -> None:
        for key in [k for k in self.status if matches(k)]:
            del self.status[key]

    def snapshot(self, filter: Filter) -> list[Event]:
        """Current state matching ``filter``, for a new subscriber: status first, then data,
        then the open opportunities (each as its latest ``open`` or ``update`` event)."""
        events: list[Event] = [s for s in self.status.values() if filter.matches(s)]
        events.extend(q for q in self.quotes.values() if filter.matches(q))
        events.extend(b for b in self.books.values() if filter.matches(b))
        events.extend(a for a in self.opportunities.values() if filter.matches(a))
        return events


class Hub:
    """Synchronous publish/subscribe. Not thread-safe: one trio run owns it."""

    def __init__(self) -> None:
        self.state = MarketState()
        self.subscribers: list[HubSubscriber] = []
        self.processors: list[Processor] = []
        self.published = 0
        self._encoder = msgspec.json.Encoder()

    def add_processor(self, processor: Processor) -> None:
        self.processors.append(processor)

    def subscribe(
        self,
        filter: Filter | None = None,
        *,
        capacity: int = 10_000,
        policy: Policy = "conflate",
        wake: Callable[[], None] | None = None,
        encoded: bool = False,
        snapshot: bool = False,
    ) -> HubSubscriber:
        """Register a subscriber. With ``snapshot=True`` its buffer starts with current state."""
        sub = HubSubscriber(filter or Filter(), capacity, policy, wake, encoded)
        if snapshot:
            for event in self.state.snapshot(sub.filter):
                sub.offer(event, self._encoder.encode(event) if encoded else event)
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: HubSubscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def publish(self, events: Iterable[Event]) -> None:
        batch = list(events)
        if not batch:
            return
        for processor in self.processors:
            extra = processor(batch)
            if extra:
                batch.extend(extra)
        update = self.state.update
        subscribers = self.subscribers
        encode = self._encoder.encode
        for event in batch:
            update(event)
            encoded: bytes | None = None
            for sub in subscribers:
                if sub.match_all or sub.filter.matches(event):
                    if sub.encoded:
                        if encoded is None:
                            encoded = encode(event)
                        sub.offer(event, encoded)
                    else:
                        sub.offer(event, event)
        self.published += len(batch)
