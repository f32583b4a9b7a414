"""What one local client is subscribed to: a set of topics, and the hub filter for it. Pure.

A topic is ``(channel, exchange, symbol)``, each either a name or ``ANY`` (``"*"``). A subscribe
request names lists of channels, exchanges and symbols (an empty or missing list means any) and
adds every combination of them; an unsubscribe removes every active topic whose channel,
exchange and symbol are each named by the request's lists (or the list is empty). So::

    subscribe   symbols=[BTC/USDT] exchanges=[binance]   -> (*, binance, BTC/USDT)
    subscribe   symbols=[ETH/USDT] channels=[trades]     -> + (trades, *, ETH/USDT)
    unsubscribe symbols=[BTC/USDT]                       -> (trades, *, ETH/USDT) remains

An unsubscribe cannot carve an exception out of a wider topic: after subscribing to everything,
``unsubscribe channels=[book]`` leaves ``(*, *, *)`` active (the reply shows what is active).
A topic covered by a wider active one is dropped, so it does not count against the limit.

The hub's :class:`~arbd.hub.Filter` is one product of sets. When the active topics form such a
product (the common case: one subscribe request), the client gets a plain ``Filter``; otherwise
a :class:`TopicFilter` that matches the union, with the same rules per topic as ``Filter``
(arbitrage events match through either leg, exchange-wide status events reach every subscriber
of that exchange whatever its symbols).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import product
from typing import Final

from arbd.hub import Filter
from arbd.model import ALL_CHANNELS, EVENT_CHANNEL, Arbitrage, Event, OneMarketEvent

ANY: Final = "*"
Topic = tuple[str, str, str]
"""(channel, exchange, symbol); any of them may be ``ANY``."""


class TooManySubscriptions(ValueError):
    """A subscribe would make more active topics than the client's limit."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} subscriptions would exceed the limit of {limit}")
        self.count = count
        self.limit = limit


def _axis(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(values) if values else (ANY,)


def request_size(channels: Sequence[str], exchanges: Sequence[str], symbols: Sequence[str]) -> int:
    """How many topics a request names, without building them."""
    return len(_axis(channels)) * len(_axis(exchanges)) * len(_axis(symbols))


def expand(channels: Sequence[str], exchanges: Sequence[str], symbols: Sequence[str]) -> set[Topic]:
    """Every topic a request names (check :func:`request_size` first: this is a product)."""
    return set(product(_axis(channels), _axis(exchanges), _axis(symbols)))


def _wider(topic: Topic) -> Iterable[Topic]:
    """The (up to 7) topics strictly wider than ``topic``."""
    channel, exchange, symbol = topic
    for c in {channel, ANY}:
        for e in {exchange, ANY}:
            for s in {symbol, ANY}:
                if (c, e, s) != topic:
                    yield (c, e, s)


class Subscriptions:
    """One client's active topics, at most ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._topics: set[Topic] = set()

    def __len__(self) -> int:
        return len(self._topics)

    def add(self, topics: set[Topic]) -> None:
        """Make ``topics`` active too. Raises :class:`TooManySubscriptions` (nothing changes)."""
        merged = self._topics | topics
        # Keep only the widest topics: a narrower one adds nothing to the union.
        merged = {t for t in merged if not any(w in merged for w in _wider(t))}
        if len(merged) > self.limit:
            raise TooManySubscriptions(len(merged), self.limit)
        self._topics = merged

    def remove(
        self, channels: Sequence[str], exchanges: Sequence[str], symbols: Sequence[str]
    ) -> None:
        """Deactivate every topic whose channel, exchange and symbol the lists all name (an empty
        list names everything, ``ANY`` included)."""
        c, e, s = set(channels), set(exchanges), set(symbols)
        self._topics = {
            t
            for t in self._topics
            if not ((not c or t[0] in c) and (not e or t[1] in e) and (not s or t[2] in s))
        }

    def active(self) -> list[Topic]:
        """The active topics, sorted (``ANY`` sorts first)."""
        return sorted(self._topics)

    def filter(self) -> Filter | None:
        """The hub filter for the active topics; None when nothing is active."""
        return filter_for(self._topics)


def filter_for(topics: Iterable[Topic]) -> Filter | None:
    """The exact hub filter for a set of (widest-only) topics; None for no topics."""
    topics = frozenset(topics)
    if not topics:
        return None
    axes = [{t[i] for t in topics} for i in range(3)]
    exact_product = all(ANY not in axis or axis == {ANY} for axis in axes) and len(topics) == (
        len(axes[0]) * len(axes[1]) * len(axes[2])
    )
    if exact_product:
        channels, exchanges, symbols = (frozenset(a - {ANY}) for a in axes)
        return Filter(channels=channels, exchanges=exchanges, symbols=symbols)
    return TopicFilter.of(topics)


class TopicFilter(Filter, frozen=True, kw_only=True):
    """A union of topics. Build with :meth:`of`.

    The inherited fields hold the bounding product (the projections of the topics), which
    ``Filter.matches`` checks first as a cheap rejection; its ``channels`` is never empty, so
    the hub never mistakes this filter for "everything".
    """

    topics: frozenset[Topic] = frozenset()
    pairs: frozenset[tuple[str, str]] = frozenset()
    """(channel, exchange) of every topic: who receives exchange-wide status events."""

    @classmethod
    def of(cls, topics: frozenset[Topic]) -> TopicFilter:
        channels, exchanges, symbols = ({t[i] for t in topics} for i in range(3))
        return cls(
            channels=frozenset(ALL_CHANNELS) if ANY in channels else frozenset(channels),
            exchanges=frozenset() if ANY in exchanges else frozenset(exchanges),
            symbols=frozenset() if ANY in symbols else frozenset(symbols),
            topics=topics,
            pairs=frozenset((t[0], t[1]) for t in topics),
        )

    def matches(self, event: Event) -> bool:
        if not Filter.matches(self, event):
            return False
        topics = self.topics
        channels = (EVENT_CHANNEL[type(event)], ANY)
        if type(event) is Arbitrage:
            exchanges: tuple[str, ...] = (event.buy_exchange, event.sell_exchange, ANY)
            symbols: tuple[str, ...] = (event.symbol, event.buy_symbol, event.sell_symbol, ANY)
            return any(t in topics for t in product(channels, exchanges, symbols))
        one: OneMarketEvent = event  # type: ignore[assignment]  # see OneMarketEvent
        if one.symbol == "":
            pairs = self.pairs
            return any(p in pairs for p in product(channels, (one.exchange, ANY)))
        return any(t in topics for t in product(channels, (one.exchange, ANY), (one.symbol, ANY)))
