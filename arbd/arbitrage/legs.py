"""Legs: one market (exchange, symbol) as the detector sees it, and the gates that exclude it.

A :class:`Leg` holds the latest top of book from whichever came last of a ``price`` quote and a
``book`` event, the latest valid book (for the depth walk), the taker fee, and the prices after
fees (``eff_ask`` = ask * (1 + fee), ``eff_bid`` = bid * (1 - fee)), computed once per update so
the per-update scan of a quote group reads two floats per leg.

Gates. A leg is usable only when
- its latest top of book was received at most ``max_quote_age`` ago (local receive time), and
- ``leg.blocked`` is ``None``. ``blocked`` caches what :class:`Health` derives from status events:
  ``"exchange_down"`` (a connection of the exchange is not live, or the exchange failed),
  ``"book_invalid"`` (the book is invalid or resyncing) or ``"stale"`` (the price or book
  subscription is stale or refused). Status events are rare, so the cache is recomputed on them
  and the hot path reads one attribute.

Reasons are short keys; a close reason adds the exchange (``stale:binance``).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

from arbd.model import SLOT_REMOVED, FeedStatus

if TYPE_CHECKING:
    from arbd.arbitrage.conversion import Converter
    from arbd.arbitrage.depth import Levels
    from arbd.arbitrage.lifecycle import Opportunity

REASONS: Final = ("stale", "book_invalid", "exchange_down", "conversion_stale")
"""Why an otherwise profitable pair was not used; the keys of ``engine.status()["excluded"]``."""

_DATA_CHANNELS: Final = frozenset({"price", "book"})
_DOWN_STATES: Final = frozenset({"connecting", "subscribing", "backoff", "stopped", "failed"})
"""Connection states in which no fresh data flows. ``stale`` is not one: a connection is
``stale`` when some of its subscriptions are, and those are announced (and gated) one by one."""


def parse_price(text: str, missing: float) -> float:
    """``float(text)``, or ``missing`` for an empty or malformed side (never raises: the
    detector runs inside ``Hub.publish`` and must not break the feed that called it)."""
    try:
        value = float(text)
    except ValueError:
        return missing
    return value if value > 0 and math.isfinite(value) else missing


class Leg:
    """One market on one exchange. Create through the engine; read, never write, elsewhere."""

    __slots__ = (
        "ask",
        "ask_levels",
        "ask_size",
        "ask_text",
        "base",
        "bid",
        "bid_levels",
        "bid_size",
        "bid_text",
        "blocked",
        "book",
        "book_ns",
        "conv",
        "eff_ask",
        "eff_bid",
        "exchange",
        "fee_pct",
        "group",
        "key",
        "lot",
        "opps",
        "quote",
        "received_ns",
        "symbol",
    )

    def __init__(self, exchange: str, symbol: str, fee_pct: float, conv: Converter) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.key = (exchange, symbol)
        base, _, quote = symbol.partition("/")
        self.base = base
        self.quote = quote
        self.conv = conv
        self.group: object = None
        """The engine's quote group this leg is compared in."""
        self.fee_pct = fee_pct
        self.bid = 0.0
        """0 when the side is missing: an effective bid of 0 never wins a sell."""
        self.ask = math.inf
        """inf when the side is missing: never wins a buy."""
        self.bid_text = ""
        self.ask_text = ""
        self.bid_size = ""
        self.ask_size = ""
        self.eff_bid = 0.0
        self.eff_ask = math.inf
        self.received_ns = -(1 << 62)
        """Local receive time of the top of book; far past until the first update."""
        self.book: tuple[list[tuple[str, str]], list[tuple[str, str]]] | None = None
        """(bids, asks) of the latest valid book, best first, exact text. Replace it only
        through :meth:`set_book`."""
        self.book_ns = 0
        self.bid_levels: Levels | None = None
        self.ask_levels: Levels | None = None
        """The book's sides as parsed so far, shared by every event built from this book."""
        self.blocked: str | None = None
        self.lot: str | None = None
        """Lot size text once the exchange's instruments are known (cached by the engine)."""
        self.opps: list[Opportunity] = []
        """Pending and open opportunities with this leg, re-checked when it changes."""

    def set_book(
        self,
        book: tuple[list[tuple[str, str]], list[tuple[str, str]]] | None,
        received_ns: int = 0,
    ) -> None:
        self.book = book
        self.book_ns = received_ns
        self.bid_levels = self.ask_levels = None

    def set_fee(self, fee_pct: float) -> None:
        self.fee_pct = fee_pct
        self._effective()

    def set_top(self, bid: str, ask: str, bid_size: str, ask_size: str, received_ns: int) -> None:
        self.bid_text = bid
        self.ask_text = ask
        self.bid_size = bid_size
        self.ask_size = ask_size
        self.received_ns = received_ns
        # Inlined parse_price: this runs once per quote of every market.
        try:
            bid_value = float(bid)
            ask_value = float(ask)
        except ValueError:
            bid_value, ask_value = parse_price(bid, 0.0), parse_price(ask, math.inf)
        if not 0 < bid_value < math.inf:
            bid_value = 0.0
        if not 0 < ask_value < math.inf:
            ask_value = math.inf
        self.bid = bid_value
        self.ask = ask_value
        fee = self.fee_pct / 100.0
        self.eff_bid = bid_value * (1.0 - fee)
        self.eff_ask = ask_value * (1.0 + fee)

    def _effective(self) -> None:
        fee = self.fee_pct / 100.0
        self.eff_bid = self.bid * (1.0 - fee)
        self.eff_ask = self.ask * (1.0 + fee)

    def gate(self, horizon_ns: int) -> str | None:
        """The reason key this leg is unusable, or ``None``. ``horizon_ns``: the oldest
        receive time still fresh (now - max_quote_age)."""
        if self.blocked is not None:
            return self.blocked
        if self.received_ns < horizon_ns:
            return "stale"
        return None

    def __repr__(self) -> str:
        return f"Leg({self.exchange}:{self.symbol} {self.bid_text}/{self.ask_text})"


class Health:
    """What the status events say about each exchange and (exchange, symbol).

    Feed it every ``FeedStatus`` with :meth:`apply`; ask :meth:`reason`. Until an exchange has
    sent any status it counts as up: captures replay adapter events only, and the adapter
    publishes book validity but not connection state.
    """

    def __init__(self) -> None:
        self._slots: dict[str, dict[str, str]] = {}
        """exchange -> connection slot -> state"""
        self._failed: set[str] = set()
        self._books: set[tuple[str, str]] = set()
        """(exchange, symbol) whose book is invalid or resyncing"""
        self._subs: dict[tuple[str, str], set[str]] = {}
        """(exchange, symbol) -> data channels whose subscription is stale or refused"""

    def apply(self, status: FeedStatus) -> str | tuple[str, str] | None:
        """Record ``status``. Returns what it may have changed: the exchange id (every leg of
        it), one ``(exchange, symbol)``, or ``None`` (nothing the gates look at)."""
        exchange = status.exchange
        scope = status.scope
        if scope == "connection":
            slots = self._slots.setdefault(exchange, {})
            if status.reason == SLOT_REMOVED:
                slots.pop(status.connection, None)  # removed at runtime: it is not down
                return exchange
            slots[status.connection] = status.state
            if status.state == "live":
                # A live connection means the exchange is being served again.
                self._failed.discard(exchange)
            return exchange
        if scope == "exchange":
            if status.state == "failed":
                self._failed.add(exchange)
            else:
                self._failed.discard(exchange)
            return exchange
        key = (exchange, status.symbol)
        if scope == "book":
            if status.state == "valid":
                self._books.discard(key)
            else:
                self._books.add(key)
            return key
        if scope == "subscription" and status.channel in _DATA_CHANNELS:
            channels = self._subs.setdefault(key, set())
            if status.state == "live":
                channels.discard(status.channel)
            else:
                channels.add(status.channel)
            return key
        return None

    def forget(self, exchange: str, symbols: Collection[str] | None = None) -> None:
        """Drop what is known about ``symbols`` of ``exchange`` (all of it when ``None``):
        they were removed at runtime, and a stale mark must not outlive them."""
        if symbols is None:
            self._slots.pop(exchange, None)
            self._failed.discard(exchange)
            self._books = {key for key in self._books if key[0] != exchange}
            self._subs = {key: v for key, v in self._subs.items() if key[0] != exchange}
            return
        for symbol in symbols:
            self._books.discard((exchange, symbol))
            self._subs.pop((exchange, symbol), None)

    def book_valid(self, exchange: str, symbol: str) -> None:
        """A ``book`` event was published: the book is valid (it is never published otherwise)."""
        self._books.discard((exchange, symbol))

    def exchange_down(self, exchange: str) -> bool:
        if exchange in self._failed:
            return True
        slots = self._slots.get(exchange)
        return slots is not None and any(state in _DOWN_STATES for state in slots.values())

    def reason(self, exchange: str, symbol: str) -> str | None:
        """Why (exchange, symbol) is blocked right now, or ``None``."""
        if self.exchange_down(exchange):
            return "exchange_down"
        key = (exchange, symbol)
        if key in self._books:
            return "book_invalid"
        if self._subs.get(key):
            return "stale"
        return None
