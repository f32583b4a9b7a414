"""The Bybit v5 public spot adapter (reference: exchange-protocols.md §4).

Pure and synchronous, like every adapter. Channels map to Bybit topics as follows:

=========  ===========================================  ===========================================
channel    topic                                        events
=========  ===========================================  ===========================================
price      ``orderbook.1.{SYMBOL}``                     ``Quote`` (the spot ticker has no BBO)
book       ``orderbook.{50|200|1000}.{SYMBOL}``         ``Book`` + ``FeedStatus`` (scope "book")
trades     ``publicTrade.{SYMBOL}``                     ``Trade`` (``S`` is the taker side)
candles    ``kline.1.{SYMBOL}``                         ``Candle`` "1m" (``confirm`` -> closed)
=========  ===========================================  ===========================================

The book topic is the smallest spot depth (50, 200, 1000) that covers ``settings.book_depth``.
Native symbols (``BTCUSDT``) come from ``GET /v5/market/instruments-info?category=spot``
(``baseCoin``/``quoteCoin``); they are never split heuristically. Spot instruments-info is not
paginated ("Spot does not support pagination, so limit, cursor are invalid"), so one request
returns the whole list.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec

from arbd.errors import ProtocolError, RestError
from arbd.exchange.adapter import (
    AdapterSettings,
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSpec,
    HttpRequest,
    HttpResponse,
    Instrument,
    Keepalive,
)
from arbd.exchange.symbols import check_symbols, normalize
from arbd.model import Subscription
from arbd_bybit.session import BybitSession
from arbd_bybit.wire import decode_instruments

EXCHANGE: Final = "bybit"
BOOK_DEPTHS: Final = (50, 200, 1000)
"""Spot ``orderbook.{depth}`` depths usable for the book channel (1 serves the price channel)."""
MAX_ARGS_CHARS: Final = 21_000
"""The ``args`` of one public connection may total at most this many characters (§4.5)."""
INSTRUMENTS_PATH: Final = "/v5/market/instruments-info?category=spot"


def book_topic_depth(book_depth: int) -> int:
    """The smallest spot book depth covering ``book_depth`` (the largest one beyond 1000)."""
    return next((d for d in BOOK_DEPTHS if d >= book_depth), BOOK_DEPTHS[-1])


def _precision(step: str) -> int:
    """Decimal places of a tick or lot size: "0.01" -> 2, "0.50" -> 1, "1" -> 0, "10" -> 0."""
    try:
        exponent = Decimal(step).normalize().as_tuple().exponent
    except InvalidOperation:
        raise ProtocolError(f"bybit: bad step size {step!r}") from None
    return max(0, -exponent) if isinstance(exponent, int) else 0


class BybitAdapter(ExchangeAdapter):
    """Bybit spot: one public WebSocket per 200 topics, JSON ``{"op":"ping"}`` every 20 s."""

    spec = ExchangeSpec(
        id=EXCHANGE,
        name="Bybit (spot)",
        ws_url="wss://stream.bybit.com/v5/public/spot",
        rest_url="https://api.bybit.com",
        channels=("price", "trades", "book", "candles"),
        # orderbook.1 is re-pushed every 3 s even when unchanged; books push on every change.
        continuous_channels=("price", "book"),
        # The hard limit is 21,000 characters of args per connection (~500+ topics); 200 keeps
        # each connection's message rate moderate (orderbook.50 pushes every 20 ms per symbol).
        # plan_connections also enforces the character budget.
        max_streams_per_connection=200,
        max_outgoing_per_second=5.0,
        keepalive=Keepalive(
            # Bybit's keepalive is the JSON ping op, "recommended every 20 seconds" (§4.4);
            # no protocol pings. The pong (or any data) resets the idle deadline.
            protocol_ping_interval=None,
            pong_timeout=10.0,
            app_ping_interval=20.0,
            idle_timeout=60.0,
        ),
        rotate_after=None,
        stale_action="resubscribe",
        taker_fee_pct=0.1,
        maker_fee_pct=0.1,
        default_symbols=("BTC/USDT", "ETH/USDT"),
    )

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.book_topic_depth = book_topic_depth(settings.book_depth)
        self.book_depth = min(settings.book_depth, self.book_topic_depth)
        """Levels per side a published ``Book`` carries."""

    # -- instruments ----------------------------------------------------------------------------

    def instrument_requests(self) -> list[HttpRequest]:
        url = f"{self.settings.rest_url.rstrip('/')}{INSTRUMENTS_PATH}"
        return [HttpRequest(url=url, purpose="instruments")]

    def load_instruments(self, responses: Sequence[HttpResponse]) -> None:
        """Fill ``instruments`` with every ``Trading`` spot pair.

        Raises ``RestError`` for a missing, non-200 or ``retCode != 0`` answer, ``ProtocolError``
        for a body that does not parse, ``ConfigError`` for a configured symbol Bybit does not
        list (with close matches suggested).

        Answer (official example, trimmed)::

            {"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbolId":9,
             "symbol":"BTCUSDT","baseCoin":"BTC","quoteCoin":"USDT","status":"Trading",
             "lotSizeFilter":{"basePrecision":"0.000001","quotePrecision":"0.0000001",...},
             "priceFilter":{"tickSize":"0.1"},...}]},"retExtInfo":{},"time":1760027412300}
        """
        response = next((r for r in responses if r.request.purpose == "instruments"), None)
        if response is None:
            raise RestError("bybit: no answer to GET /v5/market/instruments-info")
        if response.status != 200:
            raise RestError(
                f"bybit: GET /v5/market/instruments-info answered HTTP {response.status}",
                response.status,
            )
        try:
            document = decode_instruments(response.body)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"bybit: bad instruments-info document: {exc}") from None
        if document.ret_code != 0:
            raise RestError(
                f"bybit: instruments-info failed: retCode {document.ret_code} "
                f"{document.ret_msg}".rstrip()
            )
        if document.result is None:
            raise ProtocolError("bybit: instruments-info document has no result")
        instruments: dict[str, Instrument] = {}
        for item in document.result.items:
            if item.status != "Trading":
                continue
            symbol = normalize(item.base_coin, item.quote_coin)
            tick = item.price_filter.tick_size
            lot = item.lot_size_filter.base_precision
            instruments[symbol] = Instrument(
                symbol=symbol,
                native=item.symbol,
                base=item.base_coin.upper(),
                quote=item.quote_coin.upper(),
                tick_size=tick,
                lot_size=lot,
                price_precision=_precision(tick),
                size_precision=_precision(lot),
            )
        check_symbols(EXCHANGE, self.settings.symbols, instruments)
        self.instruments = instruments

    def native(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTCUSDT`` (from instruments when loaded)."""
        instrument = self.instruments.get(symbol)
        return instrument.native if instrument is not None else symbol.replace("/", "")

    def topic(self, subscription: Subscription) -> str:
        """The Bybit topic serving one normalized subscription."""
        native = self.native(subscription.symbol)
        channel = subscription.channel
        if channel == "price":
            return f"orderbook.1.{native}"
        if channel == "book":
            return f"orderbook.{self.book_topic_depth}.{native}"
        if channel == "trades":
            return f"publicTrade.{native}"
        if channel == "candles":
            return f"kline.1.{native}"
        raise ValueError(f"bybit: no topic for channel {channel!r}")

    # -- connections ----------------------------------------------------------------------------

    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionPlan]:
        """Split by ``max_streams_per_connection`` and by the 21,000-character args budget."""
        limit = max(1, self.spec.max_streams_per_connection)
        plans: list[ConnectionPlan] = []
        chunk: list[Subscription] = []
        chars = 0
        for sub in sorted(subscriptions):
            cost = len(self.topic(sub)) + 3  # quotes and a comma, counted generously
            if chunk and (len(chunk) >= limit or chars + cost > MAX_ARGS_CHARS):
                plans.append(ConnectionPlan(url=self.settings.ws_url, subscriptions=tuple(chunk)))
                chunk, chars = [], 0
            chunk.append(sub)
            chars += cost
        if chunk:
            plans.append(ConnectionPlan(url=self.settings.ws_url, subscriptions=tuple(chunk)))
        return plans

    def new_session(self, plan: ConnectionPlan) -> BybitSession:
        return BybitSession(self, plan)
