"""Gap-free, duplicate-free hand-over between an old and a new connection (pure).

When a connection is rotated, the replacement runs alongside the old one for a while. Both
deliver the same exchange streams, a little out of step. Events that carry the exchange's own
``sequence`` are merged by a high-water mark per (event type, symbol): whichever connection
delivers a sequence number first wins, later copies are dropped, so subscribers see every
sequence number exactly once. Events without a sequence (and status events) come only from the
connection currently marked primary; the supervisor switches primary to the new connection once
it is live, then closes the old one.
"""

from __future__ import annotations

from collections.abc import Sequence

from arbd.model import Event


class Handover:
    def __init__(self, primary: object) -> None:
        self.primary = primary
        self.high: dict[tuple[type, str], int] = {}
        self.duplicates = 0

    def filter(self, source: object, events: Sequence[Event]) -> list[Event]:
        out: list[Event] = []
        high = self.high
        is_primary = source is self.primary
        for event in events:
            sequence = getattr(event, "sequence", None)  # FeedStatus has none
            if sequence is None:
                if is_primary:
                    out.append(event)
                continue
            key = (type(event), event.symbol)
            if sequence > high.get(key, -1):
                high[key] = sequence
                out.append(event)
            else:
                self.duplicates += 1
        return out
