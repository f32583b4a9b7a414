from collections.abc import Sequence

from msgspec import Raw

from arbd.exchange.book import WireLevel

def apply_side(
    keys: list[float],
    levels: list[tuple[str, str]],
    updates: Sequence[Sequence[str]] | Sequence[WireLevel],
    negate: bool,
    /,
) -> None: ...
def apply_side_raw(
    keys: list[float],
    levels: list[tuple[str, str]],
    raw: Raw,
    negate: bool,
    /,
) -> bool: ...
