"""A pure L2 order book keyed by price, keeping each level's exact decimal text.

Each side is two parallel lists in best-first order: ``keys`` (``float(price)`` for asks,
``-float(price)`` for bids, so both ascend from the best level) and ``levels`` (the
``(price_text, size_text)`` tuples). Distinct exchange prices (at most ~15 significant digits)
map to distinct floats, so the float is a safe key; the text is what gets published and
checksummed. The top ``n`` levels are then one list slice, which every published book needs.

Updates are absolute (a size replaces the level; a zero size removes it), which is what all five
built-in exchanges send. Validity is the caller's business (sequence and checksum rules differ per
exchange); the book offers ``is_crossed`` for the shared "never publish a crossed book" rule.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from math import inf, isfinite
from typing import Final

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


def _apply_side_py(
    keys: list[float], levels: list[Level], updates: LevelUpdates, negate: bool
) -> None:
    """The reference implementation of ``apply_side`` (and the fallback when the C extension
    ``arbd.exchange._bookside`` was not built): the same results, level by level."""
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


decode_levels: Final = msgspec.json.Decoder(list[WireLevel]).decode
"""One side as exchanges send it, ``[["price", "size", ...], ...]``, into ``WireLevel``s."""


def _apply_side_raw_py(
    keys: list[float], levels: list[Level], raw: msgspec.Raw, negate: bool
) -> bool:
    """The reference implementation of ``apply_side_raw``: decode, then ``apply_side``."""
    try:
        updates = decode_levels(raw)
    except msgspec.DecodeError as exc:  # one error type for a malformed side, as in C
        raise ValueError(
            f"book levels are not an array of [price, size, ...] strings: {exc}"
        ) from None
    _apply_side_py(keys, levels, updates, negate)
    return True


apply_side: Callable[[list[float], list[Level], LevelUpdates, bool], None]
apply_side_raw: Callable[[list[float], list[Level], msgspec.Raw, bool], bool]
try:
    from arbd.exchange._bookside import apply_side, apply_side_raw
except ImportError:  # installed without a C compiler: the same loops in Python, ~3x slower
    apply_side = _apply_side_py
    apply_side_raw = _apply_side_raw_py
COMPILED: Final = apply_side is not _apply_side_py
"""Whether book updates run in the compiled extension."""


class _Side:
    __slots__ = ("keys", "levels")

    def __init__(self) -> None:
        self.keys: list[float] = []
        self.levels: list[Level] = []

    def clear(self) -> None:
        self.keys.clear()
        self.levels.clear()

    def top(self, n: int) -> list[Level]:
        return self.levels[:n]

    def best(self) -> Level | None:
        levels = self.levels
        return levels[0] if levels else None


class OrderBook:
    """L2 book for one symbol. Call ``apply`` / ``replace``; read ``top``, ``best_bid``, etc."""

    __slots__ = ("asks", "bids", "sequence")

    def __init__(self) -> None:
        self.bids = _Side()
        self.asks = _Side()
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
        :class:`WireLevel`. The hot path of every book feed, so it runs compiled when the
        extension was built (see ``apply_side``). A price that is not a finite number, or a
        size that is not a finite number >= 0, raises ``ValueError``; the book is then emptied
        and its sequence forgotten (never left half-applied), so the caller's next sequence or
        checksum check fails and resyncs it.
        """
        bids_side, asks_side = self.bids, self.asks
        try:
            apply_side(bids_side.keys, bids_side.levels, bids, True)
            apply_side(asks_side.keys, asks_side.levels, asks, False)
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
            if not apply_side_raw(bids_side.keys, bids_side.levels, bids, True):
                _apply_side_raw_py(bids_side.keys, bids_side.levels, bids, True)
            if not apply_side_raw(asks_side.keys, asks_side.levels, asks, False):
                _apply_side_raw_py(asks_side.keys, asks_side.levels, asks, False)
        except Exception:
            # Half-applied is no state the exchange ever had: drop everything, sequence too,
            # so the adapter's own check (gap, checksum) fails on the next update and resyncs.
            self.clear()
            raise
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
        # Called after every update of some exchanges' books: the lists directly, not through
        # _Side.truncate (two calls fewer per update).
        bids, asks = self.bids, self.asks
        del bids.keys[depth:], bids.levels[depth:], asks.keys[depth:], asks.levels[depth:]

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
            bids=self.bids.levels[:depth],  # _Side.top, inlined: once per published update
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
