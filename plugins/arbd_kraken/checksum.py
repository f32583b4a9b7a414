"""Kraken's exact decimal text and its CRC32 book checksum (v2, and v1: the same algorithm).

Kraken v2 writes prices and quantities as JSON *numbers* (``"qty": 740.0``, ``"price": 0.5666``).
The adapter decodes them with msgspec straight into ``decimal.Decimal`` (the digits as written,
never a float) and turns them into text with :func:`decimal_text`, padded to the instrument's
precision. That one text is what events carry and what the checksum is computed over, so an
event shows ``740.00000000`` for a BTC/USD size (``lot_decimals`` 8) exactly as Kraken's own
checksum sees it.

Checksum (Kraken "book checksum v2" guide), over the book *after* applying every level of a
message, deleting zero sizes and truncating to the subscribed depth:

1. for each of the top 10 asks, lowest price first: the price text without ``.`` and without
   leading zeros, then the quantity text treated the same way;
2. the same for the top 10 bids, highest price first;
3. CRC32 (zlib, unsigned) of asks followed by bids.

Worked example from the guide: the ask ``45285.2`` / ``0.00100000`` contributes
``452852`` + ``100000``; the guide's full 10 x 10 book gives 3310070434.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from arbd.model import Level

CHECKSUM_LEVELS: Final = 10
"""Kraken checksums the top 10 levels per side whatever the subscribed depth."""


def decimal_text(value: Decimal, places: int | None) -> str:
    """Fixed-point text of ``value`` with at least ``places`` decimals (``None``: as written).

    Pads with zeros, never rounds: ``0.1`` at 8 places is ``0.10000000``; ``1E-8`` is
    ``0.00000001``; a value with *more* decimals than ``places`` (stale metadata) keeps all of
    its digits, so an event never shows a number the exchange did not send. ``value`` comes
    from a JSON number, so it is finite.
    """
    text = str(value)  # 3x faster than format(value, "f"); only exponent forms differ
    if "E" in text:
        text = format(value, "f")
    if not places:
        return text
    dot = text.find(".")
    if dot < 0:
        return f"{text}.{'0' * places}"
    missing = places - (len(text) - dot - 1)
    return text + "0" * missing if missing > 0 else text


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def checksum_string(asks: Sequence[Level], bids: Sequence[Level]) -> str:
    """The text Kraken checksums: ``asks``/``bids`` best first, (price, qty) decimal text."""
    parts = [_digits(price) + _digits(qty) for price, qty in asks[:CHECKSUM_LEVELS]]
    parts += [_digits(price) + _digits(qty) for price, qty in bids[:CHECKSUM_LEVELS]]
    return "".join(parts)


def book_checksum(asks: Sequence[Level], bids: Sequence[Level]) -> int:
    """Kraken's unsigned CRC32 of the top 10 levels (both sides best first)."""
    return zlib.crc32(checksum_string(asks, bids).encode("ascii")) & 0xFFFFFFFF


class Checksummer:
    """:func:`book_checksum` for a stream of updates, remembering each level's digits.

    An update changes a level or two, so most of the top 10 levels were seen by the previous
    checksum; looking their digits up is several times cheaper than rebuilding them. The memo is
    bounded: it is emptied when it reaches ``limit`` entries.
    """

    __slots__ = ("_limit", "_memo")

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._memo: dict[Level, str] = {}

    def __call__(self, asks: Sequence[Level], bids: Sequence[Level]) -> int:
        asks, bids = asks[:CHECKSUM_LEVELS], bids[:CHECKSUM_LEVELS]
        memo = self._memo
        try:
            text = "".join([memo[level] for level in asks] + [memo[level] for level in bids])
        except KeyError:  # a new level: remember it, then the fast path above
            if len(memo) + 2 * CHECKSUM_LEVELS > self._limit:
                memo.clear()
            for level in (*asks, *bids):
                if level not in memo:
                    # Keyed by the book's own level: a new (price, qty) tuple here would be
                    # one more object for the garbage collector to track.
                    memo[level] = _digits(level[0]) + _digits(level[1])
            text = "".join([memo[level] for level in asks] + [memo[level] for level in bids])
        return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF
