"""OKX's legacy order-book checksum (deprecated: production sends ``checksum: 0`` since 2026-06-23).

OKX's definition: take the best 25 bids and asks of the local book, join each level as
``price:size`` and interleave the sides, ``bid1:ask1:bid2:ask2:...``; when one side runs out its
entries are skipped (``bid1:ask1:ask2:ask3``). The CRC32 of that text, read as a **signed** 32-bit
integer, is the checksum. The text is the exchange's **original** strings: ``"0.5000"`` must not
become ``"0.5"``, which is why books keep each level's text.

Reference vectors (exchange-protocols.md §5.4)::

    "3366.1:7:3366.8:9:3366:6:3368:8"  -> -1881014294
    "3366.1:7:3366.8:9:3368:8:3372:8"  ->   831078360
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final

from arbd.model import Level

CHECKSUM_LEVELS: Final = 25


def signed_crc32(text: str) -> int:
    """CRC32 of ``text`` (UTF-8) as a signed 32-bit integer."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= (1 << 31) else value


def checksum_text(bids: Sequence[Level], asks: Sequence[Level]) -> str:
    """The interleaved ``bid:ask`` string over the best 25 levels per side (best first)."""
    parts: list[str] = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    return ":".join(parts)


def okx_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """The legacy OKX checksum of a book given best-first ``(price, size)`` text levels."""
    return signed_crc32(checksum_text(bids, asks))
