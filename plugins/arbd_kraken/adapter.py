"""The Kraken spot adapter: public WebSocket v2 (``wss://ws.kraken.com/v2``), pure and synchronous.

Symbols: v2 already names markets ``BASE/QUOTE`` with ``BTC`` (v1 and REST say ``XBT``) and
``DOGE`` (``XDG``), so the native name *is* the normalized symbol.

Instrument metadata comes from REST ``GET {rest_url}/0/public/AssetPairs``, not from the v2
``instrument`` channel: the adapter contract loads instruments *before* any connection exists
(``load_instruments`` must reject an unknown configured symbol at start-up, with suggestions),
and the channel is only reachable inside a WebSocket session. AssetPairs carries the same
precisions: ``pair_decimals`` is v2's ``price_precision`` and ``lot_decimals`` its
``qty_precision``. Its ``wsname`` (``XBT/USD``) is mapped to the v2 name with the asset renames
below. Those precisions are what the session pads Kraken's JSON numbers to, for events and for
the book checksum alike (see :mod:`arbd_kraken.checksum`).

Fees default to Kraken Pro tier 1 of the July 2026 schedule (maker 0.40 %, taker 0.80 %);
configure them per account.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from arbd_kraken.session import KrakenSession
from arbd_kraken.wire import AssetPair, decode_asset_pairs

EXCHANGE: Final = "kraken"
BOOK_DEPTHS: Final = (10, 25, 100, 500, 1000)
"""The depths a v2 ``book`` subscription accepts."""
ASSET_RENAMES: Final = {"XBT": "BTC", "XDG": "DOGE"}
"""v1/REST asset codes that v2 spells differently."""


def subscribe_depth(book_depth: int) -> int:
    """The smallest valid v2 book depth holding ``book_depth`` levels (1000 at most).

    Never below 10: the checksum covers the top 10 levels, so a shallower book cannot be checked.
    """
    return next((depth for depth in BOOK_DEPTHS if depth >= book_depth), BOOK_DEPTHS[-1])


def v2_symbol(wsname: str) -> str | None:
    """``XBT/USD`` -> ``BTC/USD``; ``None`` for a name that is not ``BASE/QUOTE``."""
    base, sep, quote = wsname.partition("/")
    if not (sep and base and quote) or "/" in quote:
        return None
    return normalize(ASSET_RENAMES.get(base, base), ASSET_RENAMES.get(quote, quote))


def _step(decimals: int) -> str:
    """The smallest increment at ``decimals`` places: 8 -> ``0.00000001``, 0 -> ``1``."""
    return f"0.{'0' * (decimals - 1)}1" if decimals > 0 else "1"


class KrakenAdapter(ExchangeAdapter):
    """Kraken spot, public market data over WebSocket v2.

    Channels: ``price`` is ``ticker`` with ``event_trigger: "bbo"`` (a Quote on every change of
    the best bid/offer), ``trades`` is ``trade``, ``book`` is ``book`` at
    :func:`subscribe_depth` levels (CRC32-checked), ``candles`` is ``ohlc`` at 1 minute.
    """

    spec = ExchangeSpec(
        id=EXCHANGE,
        name="Kraken",
        ws_url="wss://ws.kraken.com/v2",
        rest_url="https://api.kraken.com",
        channels=("price", "trades", "book", "candles"),
        continuous_channels=("price", "book"),
        # No per-connection cap is documented for public v2 channels; 200 streams (50 symbols
        # with all four channels) keeps one connection's snapshot burst moderate.
        max_streams_per_connection=200,
        max_outgoing_per_second=5.0,
        keepalive=Keepalive(
            # Kraken closes a connection after about a minute without a request; its own keepalive
            # is the app-level {"method":"ping"}, so no WebSocket ping frames are needed.
            protocol_ping_interval=None,
            pong_timeout=10.0,
            app_ping_interval=20.0,
            # Once anything is subscribed a heartbeat arrives every second when nothing else does.
            idle_timeout=30.0,
        ),
        rotate_after=None,
        stale_action="resubscribe",
        taker_fee_pct=0.8,
        maker_fee_pct=0.4,
        default_symbols=("BTC/USD", "ETH/USD"),
    )

    def __init__(self, settings: AdapterSettings) -> None:
        super().__init__(settings)
        self.by_native: dict[str, Instrument] = {}
        """v2 symbol -> instrument (the same keys as ``instruments``: v2 names are normalized)."""
        self.rest_names: dict[str, str] = {}
        """Normalized symbol -> REST pair key (``XXBTZUSD``), for REST calls and messages."""

    @property
    def book_subscribe_depth(self) -> int:
        return subscribe_depth(self.settings.book_depth)

    def instrument_requests(self) -> list[HttpRequest]:
        url = f"{self.settings.rest_url.rstrip('/')}/0/public/AssetPairs"
        return [HttpRequest(url=url, purpose="instruments")]

    def load_instruments(self, responses: Sequence[HttpResponse]) -> None:
        """Fill ``instruments`` from the AssetPairs answer.

        Pairs without a ``wsname`` (not on the WebSocket API), without precisions, or with
        status ``delisted`` are left out. Raises ``RestError`` for a missing or non-200 answer
        or one whose ``error`` list is not empty, ``ProtocolError`` for a body that does not
        parse, ``ConfigError`` for a configured symbol Kraken does not list.
        """
        response = next((r for r in responses if r.request.purpose == "instruments"), None)
        if response is None:
            raise RestError("kraken: no answer to GET /0/public/AssetPairs")
        if response.status != 200:
            raise RestError(
                f"kraken: GET /0/public/AssetPairs answered HTTP {response.status}",
                response.status,
            )
        try:
            document = decode_asset_pairs(response.body)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"kraken: bad AssetPairs document: {exc}") from None
        if document.error:
            raise RestError(f"kraken: AssetPairs answered {', '.join(document.error)}")
        if document.result is None:
            raise ProtocolError("kraken: AssetPairs document without a result")
        instruments: dict[str, Instrument] = {}
        rest_names: dict[str, str] = {}
        for key, pair in document.result.items():
            instrument = _instrument(pair)
            if instrument is not None and instrument.symbol not in instruments:
                instruments[instrument.symbol] = instrument
                rest_names[instrument.symbol] = key
        check_symbols(EXCHANGE, self.settings.symbols, instruments)
        self.instruments = instruments
        self.by_native = {i.native: i for i in instruments.values()}
        self.rest_names = rest_names

    def native(self, symbol: str) -> str:
        """The v2 name of a normalized symbol: the same text (v2 names are ``BASE/QUOTE``)."""
        instrument = self.instruments.get(symbol)
        return instrument.native if instrument is not None else symbol

    def new_session(self, plan: ConnectionPlan) -> KrakenSession:
        return KrakenSession(self, plan)


def _instrument(pair: AssetPair) -> Instrument | None:
    if pair.wsname is None or pair.pair_decimals is None or pair.lot_decimals is None:
        return None
    if pair.status == "delisted":
        return None
    symbol = v2_symbol(pair.wsname)
    if symbol is None:
        return None
    base, _, quote = symbol.partition("/")
    return Instrument(
        symbol=symbol,
        native=symbol,
        base=base,
        quote=quote,
        tick_size=pair.tick_size or _step(pair.pair_decimals),
        lot_size=_step(pair.lot_decimals),
        price_precision=pair.pair_decimals,
        size_precision=pair.lot_decimals,
    )
