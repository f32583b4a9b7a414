"""In-process fan-out of normalized events, with the latest market state for late joiners.

``Hub.publish(events)`` is synchronous and never blocks: it updates the market state, runs the
synchronous processors (the arbitrage engine, which may add events), and offers every event to
each subscriber whose filter matches. A subscriber owns a bounded buffer and a policy for when
the buffer is full:

``conflate``     once the buffer is full, keep only the latest price/book per (type, exchange,
                 symbol) until it is drained; events that must never be lost (arbitrage,
                 status) and other types are queued; when the buffer is still full the oldest
                 conflatable entry is dropped (counted). A subscriber that keeps up gets every
                 event; one that falls behind gets the latest values.
``drop_oldest``  a ring buffer: the oldest event is dropped (counted).
``disconnect``   the subscriber is marked ``overflowed``; its owner closes it.

Subscribers that want bytes get each event encoded once per publish, not once per subscriber;
a subscriber with a ``wire`` function (the local WebSocket server's frame builder) gets
``wire(json)``, also computed once per event and shared by every subscriber using that function,
so a fan-out to many clients writes the same bytes objects to each of them.
A subscriber's ``wake`` callback (e.g. ``trio.Event.set``) is called when its buffer goes from
empty to non-empty, so an idle writer task costs nothing per event.

Cost shape: ``publish`` hands each subscriber the events of a batch that it wants in one
``offer_many`` call. A subscriber that wants everything costs O(1) Python operations per batch
(a deque extend; for a ``conflate`` subscriber that fell behind, a dict update with keys
computed once per batch, unless the buffer is nearly full), whatever the batch size. Filters
run once per event per distinct filter, not per subscriber: subscribers that asked for the same
share the selection, its encoding and its joined bytes. ``benchmarks/fanout.py`` measures it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, NamedTuple

import msgspec

from arbd.model import (
    EVENT_CHANNEL,
    SLOT_REMOVED,
    Arbitrage,
    Book,
    Event,
    FeedStatus,
    OneMarketEvent,
    Quote,
)

Policy = Literal["conflate", "drop_oldest", "disconnect"]
Processor = Callable[[Sequence[Event]], Sequence[Event]]
"""A synchronous stage that sees each published batch and may return extra events."""
Wire = Callable[[bytes], bytes]
"""Turns an event's JSON into the bytes a subscriber writes (e.g. a WebSocket frame)."""

_CONFLATABLE = (Quote, Book)


class Filter(msgspec.Struct, frozen=True, kw_only=True):
    """Which events a subscriber wants. Empty sets mean "all"."""

    exchanges: frozenset[str] = frozenset()
    symbols: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    def matches(self, event: Event) -> bool:
        if self.channels and EVENT_CHANNEL[type(event)] not in self.channels:
            return False
        if type(event) is Arbitrage:
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
        one: OneMarketEvent = event  # type: ignore[assignment]  # see OneMarketEvent
        if self.exchanges and one.exchange not in self.exchanges:
            return False
        # Exchange-wide status events (empty symbol) reach every subscriber of that exchange.
        return not self.symbols or one.symbol in self.symbols or one.symbol == ""


class HubSubscriber:
    """One consumer's bounded buffer. Read with ``drain()``; check ``overflowed``."""

    def __init__(
        self,
        filter: Filter,
        capacity: int,
        policy: Policy,
        wake: Callable[[], None] | None,
        encoded: bool,
        *,
        wire: Wire | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.filter = filter
        self.match_all = not (filter.exchanges or filter.symbols or filter.channels)
        """Skips the filter call per event for the common "everything" subscriber."""
        self.capacity = capacity
        self.policy = policy
        self.wake = wake
        self.wire = wire
        self.encoded = encoded or wire is not None
        self.dropped = 0
        self.overflowed = False
        # A deque of items (drop_oldest's is bounded, so extending it drops the oldest entries
        # in C). conflate: the same while there is room, with the items' events alongside; once
        # full, an insertion-ordered dict conflation key -> item until the next drain (keying
        # every event of a subscriber that keeps up would cost a tuple hash per event).
        self._latest: dict[object, object] = {}
        self._queue: deque[object] = deque(maxlen=capacity if policy == "drop_oldest" else None)
        self._events: deque[Event] = deque()
        self._wholes: list[bytes] | None = []
        """While everything buffered since the last drain came in whole batches: each batch's
        items joined (the hub makes that once per batch, for every subscriber taking it), so
        ``drain_parts`` need not join item by item. None once anything else came in."""

    def __len__(self) -> int:
        return len(self._latest) or len(self._queue)

    def offer(self, event: Event, item: object) -> None:
        """Add ``item`` (the event or its encoded bytes) under this subscriber's policy."""
        self.offer_many((event,), (item,))

    def offer_many(
        self,
        events: Sequence[Event],
        items: Sequence[object],
        keys: Sequence[object] | None = None,
        whole: bytes | None = None,
    ) -> None:
        """Add ``items[i]`` for ``events[i]``, in order: the same result as ``offer`` for each.

        ``keys`` are the events' :func:`conflation_keys` when the caller already has them;
        ``whole``, the items (bytes) already joined, when the caller has that.
        ``wake`` is called once if the buffer was empty and now is not, or when this call made
        the subscriber overflow (so its owner notices and closes it).
        """
        if self.overflowed or not items:
            return
        was_empty = not (self._latest or self._queue)
        policy = self.policy
        appended = True  # the items were appended, nothing dropped or conflated
        if policy == "conflate":
            if not self._latest and len(self._queue) + len(items) <= self.capacity:
                self._queue.extend(items)
                self._events.extend(events)
            else:
                self._offer_conflate(events, items, keys or conflation_keys(events))
                appended = False
        elif policy == "drop_oldest":
            queue = self._queue
            excess = len(queue) + len(items) - self.capacity
            if excess > 0:
                self.dropped += excess
                appended = False
            queue.extend(items)
        elif len(self._queue) + len(items) > self.capacity:
            self.overflowed = True
            self._queue.clear()
            appended = False
        else:
            self._queue.extend(items)
        wholes = [] if was_empty else self._wholes
        if wholes is not None and appended and whole is not None:
            wholes.append(whole)
            self._wholes = wholes
        else:
            self._wholes = None
        if self.wake is not None and (
            self.overflowed or (was_empty and (self._latest or self._queue))
        ):
            self.wake()

    def _offer_conflate(
        self, events: Sequence[Event], items: Sequence[object], keys: Sequence[object]
    ) -> None:
        latest = self._latest
        if self._queue:
            # Full for the first time since the last drain: conflate what is queued.
            queued = list(self._events)
            latest.update(zip(conflation_keys(queued), self._queue, strict=True))
            self.dropped += len(queued) - len(latest)
            self._queue.clear()
            self._events.clear()
        before = len(latest)
        if before + len(items) <= self.capacity:
            # Cannot overflow: one C-level update. An existing key keeps its position and
            # takes the newest item, so a fast-moving symbol cannot starve the others and
            # the reader still sees the newest value.
            latest.update(zip(keys, items, strict=True))
            self.dropped += before + len(items) - len(latest)
            return
        for key, item in zip(keys, items, strict=True):
            if key in latest:
                latest[key] = item
                self.dropped += 1
                continue
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
        self._wholes = []
        if self._latest:
            items = list(self._latest.values())
            self._latest.clear()
        else:
            items = list(self._queue)
            self._queue.clear()
            self._events.clear()
        return items

    def drain_parts(self) -> tuple[list[bytes], int]:
        """For a subscriber of bytes: everything buffered as a few ``bytes`` to write in order
        (the whole batches as the hub joined them, else the items joined here), and how many
        items that was; empties the buffer (what ``drain`` does, without joining per item)."""
        wholes = self._wholes
        if not wholes or self._latest:
            # join() makes a list of a deque anyway: draining to one first costs nothing more.
            items = self.drain()
            return [b"".join(items)], len(items)  # type: ignore[arg-type]
        count = len(self._queue)
        self._wholes = []
        self._queue.clear()
        self._events.clear()
        return wholes, count


def conflation_keys(events: Sequence[Event]) -> list[object]:
    """One key per event for ``conflate`` buffers: ``(type, exchange, symbol)`` for prices and
    books (a newer one replaces the buffered one), a fresh object for everything else (never
    replaced). Computed once per published batch and shared by every conflating subscriber."""
    return [
        (kind, event.exchange, event.symbol)  # type: ignore[union-attr]  # a Quote or Book
        if kind in _CONFLATABLE
        else object()
        for event in events
        for kind in (type(event),)
    ]


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
            FeedStatus: self._status,
            Arbitrage: self._arbitrage,
        }

    def update(self, events: Iterable[Event]) -> None:
        """Record each of ``events`` that is state (quotes, books, status), in order; trades
        and candles are not. Quotes and books, the most frequent, are handled inline."""
        quotes, books, book_state = self.quotes, self.books, self.book_state
        handlers = self._handlers
        for event in events:
            if type(event) is Quote:
                quotes[event.exchange, event.symbol] = event
            elif type(event) is Book:
                key = (event.exchange, event.symbol)
                books[key] = event
                book_state[key] = "valid"
            else:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)

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


class _Offer(NamedTuple):
    """What ``Hub.publish`` hands the subscribers that want the same part of a batch in the
    same form (``HubSubscriber.offer_many``'s arguments)."""

    events: Sequence[Event]
    items: Sequence[object]
    keys: Sequence[object] | None
    whole: bytes | None

    @classmethod
    def of(
        cls,
        batch: list[Event],
        items: list[Event] | list[bytes],
        keys: list[object] | None,
        picked: list[int] | None,
        encoded: bool,
    ) -> _Offer:
        """``picked`` (indices into ``batch``; None: all) of ``batch`` and ``items``, with
        their conflation ``keys`` and, for bytes, the items joined."""
        chosen: Sequence[object] = items
        if picked is not None:
            batch = [batch[i] for i in picked]
            chosen = [items[i] for i in picked]
            keys = None if keys is None else [keys[i] for i in picked]
        whole = b"".join(chosen) if encoded else None  # type: ignore[arg-type]
        return cls(batch, chosen, keys, whole)


class Hub:
    """Synchronous publish/subscribe. Not thread-safe: one trio run owns it."""

    def __init__(self) -> None:
        self.state = MarketState()
        self.subscribers: list[HubSubscriber] = []
        self.processors: list[Processor] = []
        self._dropped_gone = 0
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
        wire: Wire | None = None,
        snapshot: bool = False,
    ) -> HubSubscriber:
        """Register a subscriber. With ``snapshot=True`` its buffer starts with current state.

        Items are events, or with ``encoded=True`` their JSON bytes, or with ``wire`` set
        ``wire(json)``; subscribers passing the same ``wire`` function share the results.
        """
        sub = HubSubscriber(filter or Filter(), capacity, policy, wake, encoded, wire=wire)
        if snapshot:
            for event in self.state.snapshot(sub.filter):
                sub.offer(event, self.encode_for(sub, event))
        self.subscribers.append(sub)
        return sub

    def encode_for(self, sub: HubSubscriber, event: Event) -> object:
        """The item ``sub`` gets for ``event`` (for owners that offer extra events themselves)."""
        if not sub.encoded:
            return event
        data = self._encoder.encode(event)
        return data if sub.wire is None else sub.wire(data)

    def unsubscribe(self, sub: HubSubscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)
            self._dropped_gone += sub.dropped

    def dropped_total(self) -> int:
        """Events every subscriber so far lost to its policy (gone ones included)."""
        return self._dropped_gone + sum(sub.dropped for sub in self.subscribers)

    def publish(self, events: Iterable[Event]) -> None:
        batch = list(events)
        if not batch:
            return
        for processor in self.processors:
            extra = processor(batch)
            if extra:
                batch.extend(extra)
        self.state.update(batch)
        # Everything a subscriber is offered is made lazily, once per batch, and shared by
        # every subscriber that wants the same: the encodings (per form), the selection (per
        # distinct filter: clients that subscribed alike cost one filter pass), and the
        # selection's items, conflation keys and joined bytes (per filter, form and policy).
        encoded: list[bytes] | None = None
        wired: dict[Wire, list[bytes]] = {}
        keys: list[object] | None = None
        selections: dict[Filter, list[int]] = {}
        offers: dict[tuple[Filter | None, int, bool], _Offer] = {}
        for sub in self.subscribers:
            filter = None if sub.match_all else sub.filter
            picked: list[int] | None = None
            if filter is not None:
                picked = selections.get(filter)
                if picked is None:
                    matches = filter.matches
                    picked = [i for i, event in enumerate(batch) if matches(event)]
                    selections[filter] = picked
                if not picked:
                    continue
            items: list[Event] | list[bytes] = batch
            if sub.encoded:
                if encoded is None:
                    encoded = [self._encoder.encode(event) for event in batch]
                items = encoded
                wire = sub.wire
                if wire is not None:
                    framed = wired.get(wire)
                    if framed is None:
                        framed = wired[wire] = [wire(data) for data in encoded]
                    items = framed
            conflate = sub.policy == "conflate"
            offer = offers.get((filter, id(items), conflate))
            if offer is None:
                if conflate and keys is None:
                    keys = conflation_keys(batch)
                offer = _Offer.of(batch, items, keys if conflate else None, picked, sub.encoded)
                offers[filter, id(items), conflate] = offer
            sub.offer_many(offer.events, offer.items, offer.keys, offer.whole)
        self.published += len(batch)
