from collections.abc import Sequence

from arbd.exchange.book import WireLevel

def apply_side(
    keys: list[float],
    levels: list[tuple[str, str]],
    updates: Sequence[Sequence[str]] | Sequence[WireLevel],
    negate: bool,
    /,
) -> None: ...
