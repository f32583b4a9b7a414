"""A pure L2 order book keyed by price, keeping each level's exact decimal text.

Levels are held per side as ``{key: (price_text, size_text)}`` plus a sorted list of keys, where
the key is ``float(price)`` for asks and ``-float(price)`` for bids, so both sides sort ascending
from the best level. Distinct exchange prices (at most ~15 significant digits) map to distinct
floats, so the float is a safe key; the text is what gets published and checksummed.

Updates are absolute (a size replaces the level; a zero size removes it), which is what all five
built-in exchanges send. Validity is the caller's business (sequence and checksum rules differ per
exchange); the book offers ``is_crossed`` for the shared "never publish a crossed book" rule.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from arbd.model import Book, FeedStatus, Level


def _is_zero(size: str) -> bool:
    # "0", "0.0", "0.00000000", "0E-8": any text whose digits are all zero.
    return float(size) == 0.0


class _Side:
    __slots__ = ("keys", "levels", "sign")

    def __init__(self, sign: float) -> None:
        self.sign = sign
        self.keys: list[float] = []
        self.levels: dict[float, Level] = {}

    def set(self, price: str, size: str) -> None:
        key = self.sign * float(price)
        levels = self.levels
        if _is_zero(size):
            if key in levels:
                del levels[key]
                keys = self.keys
                del keys[bisect_left(keys, key)]
            return
        if key not in levels:
            insort(self.keys, key)
        levels[key] = (price, size)

    def clear(self) -> None:
        self.keys.clear()
        self.levels.clear()

    def top(self, n: int) -> list[Level]:
        levels = self.levels
        return [levels[k] for k in self.keys[:n]]

    def best(self) -> Level | None:
        return self.levels[self.keys[0]] if self.keys else None

    def truncate(self, n: int) -> None:
        """Keep only the best ``n`` levels."""
        if len(self.keys) > n:
            for key in self.keys[n:]:
                del self.levels[key]
            del self.keys[n:]


class OrderBook:
    """L2 book for one symbol. Call ``apply`` / ``replace``; read ``top``, ``best_bid``, etc."""

    __slots__ = ("asks", "bids", "sequence")

    def __init__(self) -> None:
        self.bids = _Side(-1.0)
        self.asks = _Side(1.0)
        self.sequence: int | None = None

    def replace(
        self, bids: Iterable[Level], asks: Iterable[Level], sequence: int | None = None
    ) -> None:
        """Load a snapshot, discarding everything held."""
        self.bids.clear()
        self.asks.clear()
        self.apply(bids, asks, sequence)

    def apply(
        self, bids: Iterable[Level], asks: Iterable[Level], sequence: int | None = None
    ) -> None:
        """Apply absolute level updates (size "0" removes the level).

        The hot path of every book feed: ``_Side.set`` inlined, one ``float`` per price and
        size, and the caller's ``(price, size)`` tuple stored as the level (no copy).
        """
        for side, updates in ((self.bids, bids), (self.asks, asks)):
            sign, levels, keys = side.sign, side.levels, side.keys
            for level in updates:
                price, size = level
                key = sign * float(price)
                if float(size) == 0.0:
                    if levels.pop(key, None) is not None:
                        del keys[bisect_left(keys, key)]
                    continue
                if key not in levels:
                    insort(keys, key)
                levels[key] = level if type(level) is tuple else (price, size)
        if sequence is not None:
            self.sequence = sequence

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.sequence = None

    def top_bids(self, n: int) -> list[Level]:
        return self.bids.top(n)

    def top_asks(self, n: int) -> list[Level]:
        return self.asks.top(n)

    def best_bid(self) -> Level | None:
        return self.bids.best()

    def best_ask(self) -> Level | None:
        return self.asks.best()

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask (crossed or locked)."""
        bids, asks = self.bids.keys, self.asks.keys
        return bool(bids and asks) and -bids[0] >= asks[0]

    def truncate(self, depth: int) -> None:
        """Drop levels beyond ``depth`` on each side (for exchanges that send a bounded book)."""
        self.bids.truncate(depth)
        self.asks.truncate(depth)

    def __len__(self) -> int:
        return len(self.bids.keys) + len(self.asks.keys)

    def event(
        self,
        exchange: str,
        symbol: str,
        depth: int,
        *,
        received_ns: int,
        exchange_time: int | None,
        sequence: int | None,
    ) -> Book:
        """The ``Book`` event for the top ``depth`` levels; only call while the book is valid.

        ``timestamp`` is the exchange's time when it gave one, else the local receive time.
        """
        return Book(
            exchange=exchange,
            symbol=symbol,
            bids=self.bids.top(depth),
            asks=self.asks.top(depth),
            depth=depth,
            timestamp=received_ns // 1_000_000 if exchange_time is None else exchange_time,
            exchange_time=exchange_time,
            received_ns=received_ns,
            sequence=sequence,
        )


def book_status(
    exchange: str, symbol: str, state: str, reason: str, received_ns: int
) -> FeedStatus:
    """The ``FeedStatus`` announcing a book's validity change (``invalid``, ``resyncing``,
    ``valid``), stamped with the local receive time of the frame that caused it."""
    return FeedStatus(
        exchange=exchange,
        symbol=symbol,
        scope="book",
        state=state,
        channel="book",
        reason=reason,
        timestamp=received_ns // 1_000_000,
    )
