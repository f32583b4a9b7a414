"""Feed health as a consumer of the hub stream sees it, from ``status`` events alone (pure).

Used by :class:`arbd.testing.invariants.InvariantChecker`. Written from ``docs/protocol.md``
("status: a change of feed health"), independently of the arbitrage engine's own
``arbd.arbitrage.legs.Health``, so that the checker does not share the engine's mistakes.

:meth:`FeedHealth.apply` records one status and returns the scope it made unhealthy, if any:
``(exchange, symbol or None for the whole exchange, channels, why)``.
"""

from __future__ import annotations

from typing import Final

from arbd.model import SLOT_REMOVED, FeedStatus

DOWN_STATES: Final = frozenset({"connecting", "subscribing", "backoff", "stopped", "failed"})
"""Connection states in which an exchange's data cannot be trusted to flow."""
BAD_BOOK: Final = frozenset({"invalid", "resyncing"})
DATA_CHANNELS: Final = ("price", "book")

Trouble = tuple[str, "str | None", tuple[str, ...], str]


class FeedHealth:
    """Connection slots, failed exchanges, book validity and not-live price/book
    subscriptions, as the latest status events say."""

    def __init__(self) -> None:
        self.slots: dict[str, dict[str, str]] = {}
        self.failed: set[str] = set()
        self.books: dict[tuple[str, str], str] = {}
        self.subs: dict[tuple[str, str], set[str]] = {}
        """(exchange, symbol) -> price/book channels whose subscription is not live"""

    def apply(self, event: FeedStatus) -> Trouble | None:
        ex, scope, state = event.exchange, event.scope, event.state
        if scope == "connection":
            slots = self.slots.setdefault(ex, {})
            if event.reason == SLOT_REMOVED:
                slots.pop(event.connection, None)
                return None
            slots[event.connection] = state
            if state == "live":
                self.failed.discard(ex)
            if state in DOWN_STATES:
                return ex, None, DATA_CHANNELS, f"{event.connection} {state}"
        elif scope == "exchange":
            if state == "failed":
                self.failed.add(ex)
                return ex, None, DATA_CHANNELS, "exchange failed"
            self.failed.discard(ex)
        elif scope == "book":
            self.books[ex, event.symbol] = state
            if state in BAD_BOOK:
                return ex, event.symbol, ("book",), f"{event.symbol} book {state}"
        elif scope == "subscription" and event.channel in DATA_CHANNELS:
            bad = self.subs.setdefault((ex, event.symbol), set())
            if state == "live":
                bad.discard(event.channel)
            else:
                bad.add(event.channel)
                why = f"{event.symbol} {event.channel} {state}"
                return ex, event.symbol, (event.channel,), why
        return None

    def book_published(self, exchange: str, symbol: str) -> str | None:
        """A ``book`` event was published: the state its book was in if that was not valid
        (the caller reports it); from now on the book counts as valid, as for the engine."""
        key = (exchange, symbol)
        state = self.books.get(key, "valid")
        if state in BAD_BOOK:
            self.books[key] = "valid"
            return state
        return None

    def exchange_down(self, exchange: str) -> str | None:
        if exchange in self.failed:
            return "exchange failed"
        for slot, state in self.slots.get(exchange, {}).items():
            if state in DOWN_STATES:
                return f"connection {slot} {state}"
        return None

    def symbol_problem(self, exchange: str, symbol: str) -> str | None:
        """Why (exchange, symbol) cannot be used now (as an arbitrage leg), or None."""
        down = self.exchange_down(exchange)
        if down is not None:
            return down
        book = self.books.get((exchange, symbol), "valid")
        if book in BAD_BOOK:
            return f"book {book}"
        bad = self.subs.get((exchange, symbol))
        if bad:
            return f"{'/'.join(sorted(bad))} subscription not live"
        return None

    def channel_problem(self, exchange: str, symbol: str, channel: str) -> str | None:
        """Why ``channel`` of (exchange, symbol) is not delivering healthy data now, or None."""
        down = self.exchange_down(exchange)
        if down is not None:
            return down
        if channel == "book":
            book = self.books.get((exchange, symbol), "valid")
            if book in BAD_BOOK:
                return f"book {book}"
        if channel in self.subs.get((exchange, symbol), ()):
            return f"{channel} subscription not live"
        return None
