from collections.abc import Sequence

def apply_side(
    keys: list[float],
    levels: list[tuple[str, str]],
    updates: Sequence[Sequence[str]],
    negate: bool,
    /,
) -> None: ...
