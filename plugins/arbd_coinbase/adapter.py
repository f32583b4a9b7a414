"""The Coinbase Advanced Trade adapter: static facts, instruments, symbol mapping.

The per-connection state machine is :class:`arbd_coinbase.session.CoinbaseSession`; the wire
types are in :mod:`arbd_coinbase.wire`. Source of truth: the shared exchange-protocols
reference, §2.1 (Advanced Trade WebSocket), §6 (symbols), §7 (fees), §8.3 to §8.7 (conflicts).

Symbols: native ``BTC-USD`` is ``BTC/USD``; base and quote come from the products list
(``base_currency_id`` / ``quote_currency_id``), never from string heuristics when it was loaded.

USDC aliasing (reference §2.1 and §6): on market-data channels a ``-USDC`` product is served by
the unified ``-USD`` book, and its data arrives under the ``-USD`` ``product_id``. The products
list says so per product in ``alias`` ("product id for the corresponding unified book"). So the
adapter subscribes to the *stream id* (the alias when there is one) and keys books and routes by
the ``product_id`` that comes back; a configured ``BTC/USDC`` is published from the ``BTC-USD``
stream under the symbol ``BTC/USDC`` (the same book, which is what Coinbase trades it on).
When the document carries no ``alias`` field at all, the documented rule is applied instead:
``X-USDC`` -> ``X-USD`` if that product is listed, except ``USDT-USDC`` and ``EURC-USDC``, which
"are available on all channels".
"""

from __future__ import annotations

from collections.abc import Container, Sequence
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
from arbd_coinbase.session import CoinbaseSession
from arbd_coinbase.wire import WireProduct, decode_products

EXCHANGE: Final = "coinbase"
PRODUCTS_PATH: Final = "/api/v3/brokerage/market/products?product_type=SPOT"
"""The public (no auth) products list of the Advanced Trade REST API."""

_USDC_ON_ALL_CHANNELS: Final = frozenset({"USDT-USDC", "EURC-USDC"})


def _precision(step: str) -> int:
    """Decimal places of an increment: "0.01" -> 2, "0.00000001" -> 8, "1" -> 0."""
    try:
        exponent = Decimal(step).normalize().as_tuple().exponent
    except InvalidOperation:
        raise ProtocolError(f"coinbase: bad increment {step!r}") from None
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _unified(native: str, listed: Container[str] | None) -> str:
    """The documented USDC rule, for documents without ``alias``: ``BTC-USDC`` -> ``BTC-USD``.

    ``listed`` limits the rule to products that exist (anything with ``in``); pass ``None`` to
    apply it blindly (no instruments loaded).
    """
    base, sep, quote = native.partition("-")
    if sep and quote == "USDC" and native not in _USDC_ON_ALL_CHANNELS:
        target = f"{base}-USD"
        if listed is None or target in listed:
            return target
    return native


class CoinbaseAdapter(ExchangeAdapter):
    """Coinbase Advanced Trade market data: ``wss://advanced-trade-ws.coinbase.com``.

    ``GET {rest_url}/api/v3/brokerage/market/products?product_type=SPOT`` answers (abridged; the
    fields used, per the Advanced Trade ``Product`` schema)::

        {"products":[{"product_id":"BTC-USD","base_increment":"0.00000001",
                      "quote_increment":"0.01","price_increment":"0.01","status":"online",
                      "product_type":"SPOT","quote_currency_id":"USD","base_currency_id":"BTC",
                      "alias":"","alias_to":["BTC-USDC"]},
                     {"product_id":"BTC-USDC", ..., "alias":"BTC-USD","alias_to":[]}],
         "num_products":2}

    Only ``SPOT`` products with status ``online`` are instruments. Tick size is
    ``price_increment`` (``quote_increment`` when absent), lot size ``base_increment``.
    """

    spec = ExchangeSpec(
        id=EXCHANGE,
        name="Coinbase Advanced Trade",
        ws_url="wss://advanced-trade-ws.coinbase.com",
        rest_url="https://api.coinbase.com",
        channels=("price", "trades", "book", "candles"),
        # Heartbeats (1/s) keep the connection itself busy; these are the data channels that
        # are never quiet on a traded market. The ticker is trade-driven, so on an illiquid
        # symbol "price" can be quiet: the watchdog's resubscribe then fetches a fresh ticker
        # snapshot, which is harmless.
        continuous_channels=("price", "book"),
        # sequence_num is one counter per connection: a gap resyncs every book on it, so keep
        # connections moderate (25 symbols x 4 channels).
        max_streams_per_connection=100,
        # "unauthenticated messages are rate-limited at 8 per second per IP" (shared by all
        # connections); one connection's 5 subscribe frames still go out well inside the 5 s
        # subscribe deadline.
        max_outgoing_per_second=2.0,
        keepalive=Keepalive(
            # No protocol-level ping is documented or observed (reference §2.1: heartbeats are
            # plain JSON frames). The subscribed heartbeats channel sends a frame every second,
            # so silence is detected by idle_timeout without depending on undocumented pongs.
            protocol_ping_interval=None,
            pong_timeout=10.0,
            app_ping_interval=None,
            idle_timeout=30.0,
        ),
        rotate_after=None,
        stale_action="resubscribe",
        # "Advanced rates do not exceed 0.40% maker and 0.60% taker" (reference §7): config.
        taker_fee_pct=0.6,
        maker_fee_pct=0.4,
        default_symbols=("BTC/USD", "ETH/USD"),
        enabled_by_default=True,
    )

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self._streams: dict[str, str] = {}
        """native product id -> the product id its market data arrives under (USDC alias)."""
        self.trade_marks: dict[str, int] = {}
        """product id -> the highest numeric ``trade_id`` published, over every session. A
        market_trades subscribe is answered with a snapshot of recent trades, so after a
        reconnect the new session would publish trades the old one already did; sessions skip
        ids at or below the mark (the adapter outlives its sessions; pure state)."""

    def instrument_requests(self) -> list[HttpRequest]:
        url = f"{self.settings.rest_url.rstrip('/')}{PRODUCTS_PATH}"
        return [HttpRequest(url=url, purpose="instruments")]

    def load_instruments(self, responses: Sequence[HttpResponse]) -> None:
        """Fill ``instruments`` from the public products list.

        Raises ``RestError`` for a missing or non-200 answer, ``ProtocolError`` for a body that
        does not parse, ``ConfigError`` for a configured symbol Coinbase does not list (with
        close matches suggested).
        """
        response = next((r for r in responses if r.request.purpose == "instruments"), None)
        if response is None:
            raise RestError("coinbase: no answer to GET /api/v3/brokerage/market/products")
        if response.status != 200:
            raise RestError(
                f"coinbase: GET /api/v3/brokerage/market/products answered HTTP {response.status}",
                response.status,
            )
        try:
            document = decode_products(response.body)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"coinbase: bad products document: {exc}") from None
        listed: dict[str, WireProduct] = {}
        for product in document.products:
            if product.product_type not in ("", "SPOT"):
                continue
            if product.status and product.status.lower() != "online":
                continue
            listed.setdefault(product.product_id, product)
        instruments: dict[str, Instrument] = {}
        streams: dict[str, str] = {}
        for native, product in listed.items():
            base, quote = product.base_currency_id, product.quote_currency_id
            if not (base and quote):
                base, sep, quote = native.partition("-")
                if not (sep and base and quote):
                    continue  # not a BASE-QUOTE spot product
            symbol = normalize(base, quote)
            if symbol in instruments:
                continue
            tick = product.price_increment or product.quote_increment
            lot = product.base_increment
            instruments[symbol] = Instrument(
                symbol=symbol,
                native=native,
                base=base.upper(),
                quote=quote.upper(),
                tick_size=tick,
                lot_size=lot,
                price_precision=_precision(tick) if tick else 0,
                size_precision=_precision(lot) if lot else 0,
            )
            if product.alias is None:
                streams[native] = _unified(native, listed)
            else:
                streams[native] = product.alias or native
        check_symbols(EXCHANGE, self.settings.symbols, instruments)
        self.instruments = instruments
        self._streams = streams

    def native(self, symbol: str) -> str:
        """``BTC/USD`` -> ``BTC-USD`` (from the products list when loaded)."""
        instrument = self.instruments.get(symbol)
        return instrument.native if instrument is not None else symbol.replace("/", "-")

    def stream_id(self, symbol: str) -> str:
        """The product id ``symbol``'s market data is subscribed and delivered under."""
        native = self.native(symbol)
        stream = self._streams.get(native)
        if stream is not None:
            return stream
        return _unified(native, None if not self.instruments else self._streams)

    def new_session(self, plan: ConnectionPlan) -> CoinbaseSession:
        return CoinbaseSession(self, plan)
