"""The OKX v5 public market-data adapter (spot), after exchange-protocols.md §5.

Endpoints: ``wss://ws.okx.com:8443/ws/v5/public`` carries ``bbo-tbt``, ``trades`` and ``books``;
candles (``candle1m``) live only on ``/ws/v5/business``, so :meth:`OkxAdapter.plan_connections`
puts them on connections of their own, to the URL made from ``settings.ws_url`` by replacing its
trailing ``/public`` with ``/business``.

Channel choices (normalized channel -> OKX channel):

* ``price``   -> ``bbo-tbt``: 1-level snapshot every 10 ms with a ``seqId``, the fastest BBO
  (``tickers`` lags at up to 100 ms and is trade-driven; ``books5`` is 100 ms).
* ``trades``  -> ``trades``: one message per taker order; ``side`` is the taker side.
* ``book``    -> ``books``: 400 levels, snapshot then increments chained by ``seqId`` /
  ``prevSeqId`` (``books-l2-tbt`` needs a login and a VIP tier).
* ``candles`` -> ``candle1m`` on /business: ``Candle`` with ``interval="1m"``.

Book integrity and the two snapshot modes are described in :mod:`arbd_okx.session`.

Instruments: ``GET {rest_url}/api/v5/public/instruments?instType=SPOT`` answers::

    {"code":"0","msg":"","data":[{"instType":"SPOT","instId":"BTC-USDT","baseCcy":"BTC",
      "quoteCcy":"USDT","tickSz":"0.1","lotSz":"0.00000001","minSz":"0.00001","state":"live"}]}

Only ``state == "live"`` instruments are loaded; a configured symbol that is listed but not live
(``suspend``, ``preopen``) is a ``ConfigError`` naming its state.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec

from arbd.errors import ConfigError, ProtocolError, RestError
from arbd.exchange.adapter import (
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
from arbd_okx import wire
from arbd_okx.session import OkxSession

EXCHANGE: Final = "okx"
BOOK_CHANNEL_DEPTH: Final = 400
"""Levels per side the ``books`` channel maintains (and the REST snapshot's maximum ``sz``)."""
INSTRUMENTS_PATH: Final = "/api/v5/public/instruments?instType=SPOT"
BOOKS_PATH: Final = "/api/v5/market/books"


def _precision(step: str) -> int:
    """Decimal places of a tick or lot size: "0.01" -> 2, "0.50" -> 1, "1" -> 0, "10" -> 0."""
    try:
        exponent = Decimal(step).normalize().as_tuple().exponent
    except InvalidOperation:
        raise ProtocolError(f"okx: bad step size {step!r}") from None
    return max(0, -exponent) if isinstance(exponent, int) else 0


def business_url(ws_url: str) -> str:
    """The /business endpoint next to a /public one; any other URL is used as it is.

    ``wss://ws.okx.com:8443/ws/v5/public`` -> ``wss://ws.okx.com:8443/ws/v5/business``. A URL
    that does not end in ``/public`` (a single-endpoint fake, say) serves candles itself.
    """
    base = ws_url.rstrip("/")
    if base.endswith("/public"):
        return base[: -len("/public")] + "/business"
    return ws_url


class OkxAdapter(ExchangeAdapter):
    """OKX spot: REST instruments, public + business WebSocket connections of 25 streams."""

    spec = ExchangeSpec(
        id=EXCHANGE,
        name="OKX",
        ws_url="wss://ws.okx.com:8443/ws/v5/public",
        rest_url="https://www.okx.com",
        channels=("price", "trades", "book", "candles"),
        continuous_channels=("price", "book"),
        # OKX: "use several connections with fewer than 30 channels each" for book channels;
        # 480 subscribe/unsubscribe requests per hour per connection (subscribes are batched).
        max_streams_per_connection=25,
        max_outgoing_per_second=5.0,
        # No protocol pings: OKX wants the text frame "ping" when nothing arrived for < 30 s and
        # answers "pong"; it closes a connection that received no push for 30 s.
        keepalive=Keepalive(
            protocol_ping_interval=None,
            pong_timeout=10.0,
            app_ping_interval=20.0,
            idle_timeout=35.0,
        ),
        rotate_after=None,
        stale_action="resubscribe",
        taker_fee_pct=0.1,
        maker_fee_pct=0.08,
        default_symbols=("BTC/USDT", "ETH/USDT"),
        enabled_by_default=True,
    )

    def instrument_requests(self) -> list[HttpRequest]:
        url = f"{self.settings.rest_url.rstrip('/')}{INSTRUMENTS_PATH}"
        return [HttpRequest(url=url, purpose="instruments")]

    def load_instruments(self, responses: Sequence[HttpResponse]) -> None:
        """Fill ``instruments`` from the SPOT instruments answer.

        Raises ``RestError`` for a missing, non-200 or ``code != "0"`` answer, ``ProtocolError``
        for a body that does not parse, ``ConfigError`` for a configured symbol OKX does not list
        as live (with close matches suggested).
        """
        response = next((r for r in responses if r.request.purpose == "instruments"), None)
        if response is None:
            raise RestError(f"okx: no answer to GET {INSTRUMENTS_PATH}")
        if response.status != 200:
            raise RestError(
                f"okx: GET {INSTRUMENTS_PATH} answered HTTP {response.status}", response.status
            )
        try:
            document = wire.decode_rest_instruments(response.body)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"okx: bad instruments document: {exc}") from None
        if str(document.code) != "0":
            raise RestError(f"okx: instruments error {document.code}: {document.msg}")
        instruments: dict[str, Instrument] = {}
        not_live: dict[str, str] = {}
        for item in document.data:
            if item.instType != "SPOT" or not item.baseCcy or not item.quoteCcy:
                continue
            symbol = normalize(item.baseCcy, item.quoteCcy)
            if item.state != "live":
                not_live[symbol] = item.state
                continue
            instruments[symbol] = Instrument(
                symbol=symbol,
                native=item.instId,
                base=item.baseCcy.upper(),
                quote=item.quoteCcy.upper(),
                tick_size=item.tickSz,
                lot_size=item.lotSz,
                price_precision=_precision(item.tickSz),
                size_precision=_precision(item.lotSz),
            )
        for symbol in self.settings.symbols:
            if symbol not in instruments and symbol in not_live:
                raise ConfigError(
                    f"symbol {symbol!r} on {EXCHANGE} is not trading (state {not_live[symbol]})",
                    key=f"exchanges.{EXCHANGE}.symbols",
                )
        check_symbols(EXCHANGE, self.settings.symbols, instruments)
        self.instruments = instruments

    def native(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTC-USDT`` (from the instruments when loaded)."""
        instrument = self.instruments.get(symbol)
        return instrument.native if instrument is not None else symbol.replace("/", "-")

    def book_snapshot_url(self, native: str) -> str:
        """REST book for the no-snapshot bootstrap, as deep as the ``books`` channel."""
        base = self.settings.rest_url.rstrip("/")
        return f"{base}{BOOKS_PATH}?instId={native}&sz={BOOK_CHANNEL_DEPTH}"

    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionPlan]:
        """Public channels on ``settings.ws_url``; candles on the /business endpoint.

        Each group is split so no connection carries more than ``max_streams_per_connection``.
        """
        limit = max(1, self.spec.max_streams_per_connection)
        subs = sorted(subscriptions)
        public = [s for s in subs if s.channel != "candles"]
        business = [s for s in subs if s.channel == "candles"]
        plans: list[ConnectionPlan] = []
        for url, group in (
            (self.settings.ws_url, public),
            (business_url(self.settings.ws_url), business),
        ):
            plans += [
                ConnectionPlan(url=url, subscriptions=tuple(group[i : i + limit]))
                for i in range(0, len(group), limit)
            ]
        return plans

    def new_session(self, plan: ConnectionPlan) -> OkxSession:
        return OkxSession(self, plan)
