"""Normalized market-data events: the one schema for the hub, replay, the local server and arbctl.

Every event is a frozen-by-convention msgspec ``Struct`` tagged by its ``type`` field, so one
``msgspec.json.Encoder`` turns any of them into the JSON documented in ``docs/protocol.md``.
Field names are snake_case in Python and camelCase on the wire (``bid_size`` -> ``bidSize``).

Prices and sizes are ``str`` holding the exchange's own decimal text: consumers see exactly what
the exchange stated (never ``0.30000000000000004``). Code that needs arithmetic converts with
``float()`` at the point of use (``benchmarks/pipeline.py`` measures ``float()`` against
``Decimal()`` for that conversion).

Times:
    ``timestamp``      ms since the epoch: the exchange's event time when it gives one, else the
                       local receive time. What existing price-stream clients read.
    ``exchange_time``  ms since the epoch as the exchange stated it, or ``None``.
    ``received_ns``    local wall-clock receive time of the frame, ns since the epoch.

``sequence`` is the exchange's own ordering number for that stream (book update id, trade id)
when it has a numeric one. Connection rotation uses it to hand over without gaps or duplicates.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

CHANNELS: Final = ("price", "trades", "book", "candles")
"""Market-data channels an exchange adapter can serve."""

ALL_CHANNELS: Final = (*CHANNELS, "arbitrage", "status")
"""Everything a local client can subscribe to."""

Channel = Literal["price", "trades", "book", "candles"]

# A book level: (price, size), both exact decimal text.
Level = tuple[str, str]


# gc=False: events hold only strings, numbers and lists of level tuples, so they can never be
# part of a reference cycle; leaving them out of the garbage collector's bookkeeping saves it
# ~15 % of an adapter's time on the busiest feeds (benchmarks/adapters.py, OKX, gc on vs off).
class _Event(
    msgspec.Struct, kw_only=True, rename="camel", tag_field="type", omit_defaults=False, gc=False
):
    exchange: str
    symbol: str


class Quote(_Event, tag="price", kw_only=True):
    """Best bid and ask with their sizes."""

    bid: str
    ask: str
    bid_size: str
    ask_size: str
    timestamp: int
    exchange_time: int | None = None
    received_ns: int
    sequence: int | None = None


class Trade(_Event, tag="trade", kw_only=True):
    """One public trade. ``side`` is the taker's side when the exchange says it."""

    price: str
    size: str
    side: Literal["buy", "sell"] | None
    id: str | None
    timestamp: int
    exchange_time: int | None = None
    received_ns: int
    sequence: int | None = None


class Book(_Event, tag="book", kw_only=True):
    """Top ``depth`` levels of a valid L2 book, best first on each side.

    A book is only ever published while it is valid (sequence continuous, checksum good, not
    crossed). Validity changes travel as ``FeedStatus`` events with ``scope="book"``.
    """

    bids: list[Level]
    asks: list[Level]
    depth: int
    timestamp: int
    exchange_time: int | None = None
    received_ns: int
    sequence: int | None = None


class Candle(_Event, tag="candle", kw_only=True):
    """OHLCV bar. ``start`` is the bar's open time in ms; ``closed`` says the bar is final."""

    interval: str
    start: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    closed: bool
    timestamp: int
    exchange_time: int | None = None
    received_ns: int


ConnectionState = Literal[
    "connecting", "subscribing", "live", "stale", "backoff", "stopped", "failed"
]
BookState = Literal["valid", "invalid", "resyncing"]
SubscriptionState = Literal["live", "stale"]

SLOT_REMOVED: Final = "removed"
"""``reason`` of the last ``connection`` status of a slot removed for good at runtime (its
symbols or its exchange were removed): state ``stopped``, and the slot will not come back, so
consumers forget it rather than count it as down."""


class FeedStatus(_Event, tag="status", kw_only=True):
    """A change of health, published once per change.

    ``scope`` says what changed:
        ``connection``    one exchange connection (``connection`` names it; ``symbol`` is "")
        ``subscription``  one (channel, symbol) on a connection went stale or came back
        ``book``          one order book became invalid, is resyncing, or is valid again
        ``exchange``      the exchange as a whole (``failed`` after too many attempts)
    """

    scope: Literal["connection", "subscription", "book", "exchange"]
    state: str
    connection: str = ""
    channel: str = ""
    reason: str = ""
    timestamp: int


class BuySell(msgspec.Struct, kw_only=True):
    """One number per leg of an opportunity."""

    buy: float
    sell: float


class ProfitPoint(msgspec.Struct, kw_only=True):
    """Net profit of an opportunity when ``size`` (quote currency, buy side) is traded.

    ``profit`` is ``None`` when the visible book is too thin to fill ``size`` on either leg.
    """

    size: float
    profit: float | None


class Arbitrage(msgspec.Struct, kw_only=True, rename="camel", tag_field="type", tag="arbitrage"):
    """One step in the life of a cross-exchange opportunity: ``open``, ``update`` or ``close``.

    An opportunity is identified by its quote group, buy market and sell market; ``id`` names
    one life of it (a reopened pair gets a new id). Prices ``buy_price`` / ``sell_price`` are the
    legs' exact top-of-book text (ask of the buy leg, bid of the sell leg); every computed
    number is a float. Spreads are percent of the buy side's effective price; ``profit`` is net
    of both taker fees, in ``currency``, at ``quantity`` (base units).
    ``spread_pct`` repeats ``net_spread_pct`` for clients of the older price-spread feed.
    Times are ms since the epoch on the local clock (``opened_at``: when the spread first
    reached the open threshold; ``closed_at`` only on ``close``).
    """

    id: str
    event: Literal["open", "update", "close"]
    symbol: str
    """The compared market: the legs' common symbol, or ``BASE/<first quote of the group>``."""
    buy_exchange: str
    sell_exchange: str
    buy_symbol: str
    sell_symbol: str
    buy_price: str
    sell_price: str
    spread_pct: float
    net_spread_pct: float
    gross_spread_pct: float
    peak_net_spread_pct: float
    profit: float
    currency: str
    quantity: float
    buy_vwap: float | None
    sell_vwap: float | None
    size_source: Literal["book", "top"]
    profit_curve: list[ProfitPoint]
    conversion: str
    fees: BuySell
    age_ms: BuySell
    opened_at: int
    closed_at: int | None = None
    duration_ms: int
    close_reason: str | None = None
    timestamp: int

    def involves(self, exchange: str) -> bool:
        return exchange in (self.buy_exchange, self.sell_exchange)

    def names(self, symbol: str) -> bool:
        return symbol in (self.symbol, self.buy_symbol, self.sell_symbol)


MarketEvent = Quote | Trade | Book | Candle
Event = Quote | Trade | Book | Candle | FeedStatus | Arbitrage
OneMarketEvent = Quote | Trade | Book | Candle | FeedStatus
"""Every event but ``Arbitrage``: one exchange and one symbol (empty for exchange-wide status).

Hot paths test ``type(event) is Arbitrage`` (a failing ``isinstance`` on a msgspec Struct class
costs several times more) and then bind the event to this type, which mypy cannot infer from a
negative ``type() is`` test."""

EVENT_CHANNEL: Final[dict[type[msgspec.Struct], str]] = {
    Quote: "price",
    Trade: "trades",
    Book: "book",
    Candle: "candles",
    FeedStatus: "status",
    Arbitrage: "arbitrage",
}
"""The subscription channel each event type belongs to."""


class Subscription(msgspec.Struct, frozen=True, order=True):
    """One normalized (channel, symbol) stream of one exchange."""

    channel: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.channel}:{self.symbol}"


_encoder = msgspec.json.Encoder()


def encode_event(event: msgspec.Struct) -> bytes:
    """JSON bytes of one event, in the wire schema."""
    return _encoder.encode(event)


def ms_from_ns(ns: int) -> int:
    return ns // 1_000_000
