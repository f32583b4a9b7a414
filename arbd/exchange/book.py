"""A pure L2 order book keyed by price, keeping each level's exact decimal text.

Each side (:class:`BookSide`) is two parallel arrays in best-first order: sort keys
(``float(price)`` for asks, ``-float(price)`` for bids, so both ascend from the best level) and
``levels`` (the ``(price_text, size_text)`` tuples). Distinct exchange prices (at most ~15
significant digits) map to distinct floats, so the float is a safe key; the text is what gets
published and checksummed. The top ``n`` levels are then one list slice, which every published
book needs.

Updates are absolute (a size replaces the level; a zero size removes it), which is what all five
built-in exchanges send. Validity is the caller's business (sequence and checksum rules differ per
exchange); the book offers ``is_crossed`` for the shared "never publish a crossed book" rule.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from math import inf, isfinite
from typing import Any, Final, Protocol

import msgspec

from arbd.model import Book, FeedStatus, Level


class WireLevel(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A book level as exchanges send it, ``["price", "size", ...]``, for wire types to decode
    into: items past the size (OKX's ``"0"`` and order count) are skipped by the decoder, not
    turned into strings (half the decode time of an OKX book frame). ``OrderBook.apply`` reads
    these and ``(price, size)`` sequences alike."""

    price: str
    size: str


LevelUpdates = Sequence[Sequence[str]] | Sequence[WireLevel]
"""What ``OrderBook.apply`` takes per side."""


decode_levels: Final = msgspec.json.Decoder(list[WireLevel]).decode
"""One side as exchanges send it, ``[["price", "size", ...], ...]``, into ``WireLevel``s."""


def decode_side(raw: msgspec.Raw) -> list[WireLevel]:
    """One side's JSON (``msgspec.Raw``) decoded, or ``ValueError`` naming what is wrong:
    the general path for text ``apply_raw`` does not read in place, and a check for sides
    kept raw for later."""
    try:
        return decode_levels(raw)
    except msgspec.DecodeError as exc:  # one error type for a malformed side, as in C
        raise ValueError(
            f"book levels are not an array of [price, size, ...] strings: {exc}"
        ) from None


class BookSide(Protocol):
    """One side of a book, best level first: ``levels`` are the ``(price, size)`` text
    tuples, and each has a sort key, ``float(price)`` for asks and ``-float(price)`` for bids,
    so both ascend from the best. ``levels`` is for reading (its first ``n`` are the top
    ``n``): only the methods change a side."""

    @property
    def levels(self) -> list[Level]: ...

    def apply(self, updates: LevelUpdates, /) -> None:
        """Apply absolute level updates (see :meth:`OrderBook.apply`)."""

    def apply_raw(self, raw: msgspec.Raw, /) -> bool:
        """The same from the side's JSON array; ``False``, nothing applied, when it holds an
        escape (then decode it the general way)."""

    def truncate(self, depth: int, /) -> None:
        """Keep the best ``depth`` levels."""

    def clear(self) -> None: ...

    def key(self, index: int, /) -> float:
        """The sort key of level ``index`` (negative counts from the worst)."""

    def rank(self, key: float, /) -> int:
        """How many levels have a sort key ``<= key``."""

    def keys(self) -> list[float]:
        """Every sort key, best first (a new list; for checks, not hot paths)."""

    def crosses(self, asks: Any, /) -> bool:
        """Of the bids: whether the best bid is at or above the best of ``asks`` (the same
        book's, of the same implementation)."""

    def __len__(self) -> int: ...


class PySide:
    """:class:`BookSide` in Python: the reference implementation of the compiled
    ``arbd.exchange._bookside.Side`` (a property test holds both to the same results), and
    the fallback when the extension was not built. The keys are a list of floats here; the
    compiled side keeps them in a C array."""

    __slots__ = ("_keys", "levels", "negate")

    def __init__(self, negate: bool) -> None:
        self.negate = negate
        self._keys: list[float] = []
        self.levels: list[Level] = []

    def apply(self, updates: LevelUpdates, /) -> None:
        keys, levels, negate = self._keys, self.levels, self.negate
        for level in updates:
            if isinstance(level, WireLevel):
                price, size = level.price, level.size
            else:
                price, size = level[0], level[1]
            key = -float(price) if negate else float(price)
            if not isfinite(key):
                raise ValueError(f"book level price is not a finite number: {price!r}")
            at = bisect_left(keys, key)
            found = at < len(keys) and keys[at] == key
            amount = float(size)
            if not 0.0 <= amount < inf:  # NaN fails this too
                raise ValueError(f"book level size is not a finite number >= 0: {size!r}")
            if amount == 0.0:
                if found:
                    del keys[at]
                    del levels[at]
                continue
            if found:
                levels[at] = (price, size)
            else:
                keys.insert(at, key)
                levels.insert(at, (price, size))

    def apply_raw(self, raw: msgspec.Raw, /) -> bool:
        self.apply(decode_side(raw))
        return True

    def truncate(self, depth: int, /) -> None:
        del self._keys[depth:], self.levels[depth:]

    def clear(self) -> None:
        self._keys.clear()
        self.levels.clear()

    def key(self, index: int, /) -> float:
        return self._keys[index]

    def rank(self, key: float, /) -> int:
        return bisect_right(self._keys, key)

    def keys(self) -> list[float]:
        return list(self._keys)

    def crosses(self, asks: PySide, /) -> bool:
        if not self.negate or asks.negate:
            raise TypeError("bids.crosses(asks) takes the asks of the same book")
        bids_keys, asks_keys = self._keys, asks._keys
        return bool(bids_keys and asks_keys) and -bids_keys[0] >= asks_keys[0]

    def __len__(self) -> int:
        return len(self._keys)


Side: Callable[[bool], BookSide]
try:
    from arbd.exchange._bookside import Side
except ImportError:  # installed without a C compiler: the same side in Python, ~3x slower
    Side = PySide
COMPILED: Final = Side is not PySide
"""Whether book sides are the compiled extension's."""


class OrderBook:
    """L2 book for one symbol. Call ``apply`` / ``replace``; read ``top``, ``best_bid``, etc."""

    __slots__ = ("asks", "bids", "sequence")

    def __init__(self) -> None:
        self.bids: BookSide = Side(True)
        self.asks: BookSide = Side(False)
        self.sequence: int | None = None

    def replace(
        self,
        bids: LevelUpdates,
        asks: LevelUpdates,
        sequence: int | None = None,
    ) -> None:
        """Load a snapshot, discarding everything held."""
        self.bids.clear()
        self.asks.clear()
        self.apply(bids, asks, sequence)

    def apply(
        self,
        bids: LevelUpdates,
        asks: LevelUpdates,
        sequence: int | None = None,
    ) -> None:
        """Apply absolute level updates (size "0" removes the level).

        Each level is ``(price, size, ...)`` text (items past the size are ignored) or a
        :class:`WireLevel`. The hot path of every book feed, so each side is compiled when
        the extension was built (see :class:`BookSide`). A price that is not a finite number,
        or a size that is not a finite number >= 0, raises ``ValueError``; the book is then
        emptied and its sequence forgotten (never left half-applied), so the caller's next
        sequence or checksum check fails and resyncs it.
        """
        try:
            self.bids.apply(bids)
            self.asks.apply(asks)
        except Exception:
            # Half-applied is no state the exchange ever had: drop everything, sequence too,
            # so the adapter's own check (gap, checksum) fails on the next update and resyncs.
            self.clear()
            raise
        if sequence is not None:
            self.sequence = sequence

    def apply_raw(self, bids: msgspec.Raw, asks: msgspec.Raw, sequence: int | None = None) -> None:
        """``apply`` for sides still in the frame's JSON (``[["price","size",...],...]`` as
        ``msgspec.Raw``): the compiled loop reads the text in place and makes strings only for
        the levels it keeps. An escape in the text takes the general decode instead."""
        bids_side, asks_side = self.bids, self.asks
        try:
            if not bids_side.apply_raw(bids):
                bids_side.apply(decode_side(bids))
            if not asks_side.apply_raw(asks):
                asks_side.apply(decode_side(asks))
        except Exception:
            # Half-applied is no state the exchange ever had: drop everything, sequence too,
            # so the adapter's own check (gap, checksum) fails on the next update and resyncs.
            self.clear()
            raise
        if sequence is not None:
            self.sequence = sequence

    def replace_raw(
        self, bids: msgspec.Raw, asks: msgspec.Raw, sequence: int | None = None
    ) -> None:
        """``replace`` for sides still in the frame's JSON (see ``apply_raw``)."""
        self.bids.clear()
        self.asks.clear()
        self.apply_raw(bids, asks, sequence)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.sequence = None

    def top_bids(self, n: int) -> list[Level]:
        return self.bids.levels[:n]

    def top_asks(self, n: int) -> list[Level]:
        return self.asks.levels[:n]

    def best_bid(self) -> Level | None:
        levels = self.bids.levels
        return levels[0] if levels else None

    def best_ask(self) -> Level | None:
        levels = self.asks.levels
        return levels[0] if levels else None

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask (crossed or locked)."""
        return self.bids.crosses(self.asks)

    def truncate(self, depth: int) -> None:
        """Drop levels beyond ``depth`` on each side (for exchanges that send a bounded book)."""
        self.bids.truncate(depth)
        self.asks.truncate(depth)

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

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
            bids=self.bids.levels[:depth],
            asks=self.asks.levels[:depth],
            depth=depth,
            timestamp=received_ns // 1_000_000 if exchange_time is None else exchange_time,
            exchange_time=exchange_time,
            received_ns=received_ns,
            sequence=sequence,
        )


RESUBSCRIBE_REASON: Final = "resubscribing after stale data"
"""The reason a valid book announces ``resyncing`` when the stale-data watchdog renews its
subscription and the adapter drops it for the fresh snapshot (``ExchangeSession.emit``)."""


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
