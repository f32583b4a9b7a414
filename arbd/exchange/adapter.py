"""The adapter contract every exchange plugin implements.

An exchange plugin registers an :class:`ExchangeAdapter` subclass through the ``arbd_exchanges``
hook. The daemon makes one adapter instance per configured exchange and drives it like this::

    adapter = AdapterClass(settings)                  # settings: URLs, depth, symbols
    for request in adapter.instrument_requests():     # REST metadata, carried out by the I/O layer
        responses.append(<GET request.url>)
    adapter.load_instruments(responses)               # raises ConfigError on unknown symbols
    for plan in adapter.plan_connections(subscriptions):
        session = adapter.new_session(plan)           # one per WebSocket connection (and per
        ...                                           # reconnect: sessions are never reused)

and, for each connection, the session::

    session.start(now_ns)                             # queues subscribe frames
    loop:
        session.receive(data, is_text, received_ns, events)   # one call per WebSocket message
        session.on_http(response, events)                     # answers to session.http_requests
        session.resubscribe(subscriptions, now_ns)            # the watchdog found them stale
        session.keepalive(now_ns)                             # app-level ping due
        session.waiting(subscription)                         # the watchdog: held back?
        frames = session.take_frames()                        # driver sends these, paced
        requests = session.take_http_requests()               # driver carries these out

Everything here is synchronous and pure: a session never reads a clock, sleeps, logs, or touches a
socket. Time comes in as arguments; effects go out as data (frames to send, HTTP requests, a
reconnect request). That is what lets the same adapter run live, in ``arbd replay``, in tests
with plain values and in benchmarks without an event loop.

Errors: ``receive`` raises :class:`arbd.errors.ProtocolError` (or lets a ``msgspec`` / ``KeyError``
/ ``ValueError`` / ``TypeError`` / ``IndexError`` / ``RecursionError`` escape) for a frame it
cannot parse; the driver counts it and skips the frame. Frames that parse but are of an
unknown type are *not* errors: count them in ``stats.ignored`` and return.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar, Final, Literal

import msgspec

from arbd.errors import ProtocolError
from arbd.exchange.book import RESUBSCRIBE_REASON, book_status
from arbd.model import Event, Subscription

FRAME_ERRORS: Final = (
    ProtocolError,
    msgspec.MsgspecError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    RecursionError,
)
"""What ``receive`` / ``on_http`` may raise for input they cannot parse. The driver and replay
count such a frame and skip it; any other exception is a bug in the adapter and propagates.
(``RecursionError`` is how msgspec refuses JSON nested deeper than the interpreter's recursion
limit: ``[[[[...]]]]`` from a hostile peer.)"""


def py_leading_key(data: bytes, prefix: bytes, stop: bytes = b'"', /) -> bytes | None:
    """The bytes between ``prefix`` at the very start of ``data`` and the next ``stop``, or
    None when ``data`` does not start so or holds no ``stop`` after it.

    Exchanges put the routing key first in their data frames (``{"stream":"btcusdt@trade",...``);
    reading it off the bytes lets an adapter pick the typed decoder for the whole frame and
    decode once, and the bytes themselves key its routing cache (no text is made per frame).
    Key order is not guaranteed by JSON: a frame that does not start so must still be handled
    by the adapter's general path, and so must a key written with escapes.

    This is the Python reference; ``leading_key`` is its compiled twin when the extension was
    built (a fifth of this one's cost, paid on every data frame).
    """
    if not data.startswith(prefix):
        return None
    start = len(prefix)
    end = data.find(stop, start)
    if end < 0:
        return None
    # A frame reassembled from fragments can be a bytearray, whose slices cannot key a dict.
    return bytes(data[start:end])


try:
    from arbd.exchange import _leadingkey

    leading_key = _leadingkey.leading_key
except ImportError:  # installed without a C compiler
    leading_key = py_leading_key


class Keepalive(msgspec.Struct, frozen=True, kw_only=True):
    """How a connection is kept alive and how death is detected.

    protocol_ping_interval: send WebSocket ping frames this often (None: never; some exchanges
        count client pings against their message rate and ping us instead).
    pong_timeout: a protocol ping unanswered this long means the connection is dead.
    app_ping_interval: call ``session.keepalive()`` this often (JSON or text pings).
    idle_timeout: nothing at all received this long means the connection is dead.
    """

    protocol_ping_interval: float | None = 20.0
    pong_timeout: float = 10.0
    app_ping_interval: float | None = None
    idle_timeout: float = 60.0


class ExchangeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Static facts about an exchange, declared by its adapter class."""

    id: str
    name: str
    ws_url: str
    rest_url: str
    channels: tuple[str, ...]
    continuous_channels: tuple[str, ...] = ("price", "book")
    """Channels that are never quiet while the market is open; only these arm the per-subscription
    stale-data watchdog. Trades and candles on an illiquid symbol can be silent for minutes."""
    max_streams_per_connection: int = 1024
    max_outgoing_per_second: float = 5.0
    rest_weight_per_minute: int | None = None
    """The exchange's REST allowance per minute per IP, in request weight (each
    ``HttpRequest.weight``); arbd spends at most that in any 60 s, waiting before a request
    that would not fit. None: the exchange declares none (requests are not paced)."""
    keepalive: Keepalive = Keepalive()
    rotate_after: float | None = None
    """The exchange closes connections at this age (seconds); rotate a little before it."""
    stale_action: Literal["resubscribe", "reconnect"] = "resubscribe"
    taker_fee_pct: float = 0.1
    maker_fee_pct: float = 0.1
    default_symbols: tuple[str, ...] = ()
    enabled_by_default: bool = True


class AdapterSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the daemon tells an adapter about its configuration."""

    ws_url: str
    rest_url: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    book_depth: int = 20


class HttpRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A GET the I/O layer must perform for the adapter. ``purpose`` routes the answer back;
    ``weight`` is what the exchange charges for it against ``ExchangeSpec.rest_weight_per_minute``
    (at most that allowance: a heavier request could never be sent)."""

    url: str
    purpose: str
    weight: int = 1


class HttpResponse(msgspec.Struct, frozen=True, kw_only=True):
    request: HttpRequest
    status: int
    body: bytes
    received_ns: int


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """One tradable spot market with its precision, in the exchange's own terms."""

    symbol: str
    """Normalized ``BASE/QUOTE``."""
    native: str
    """The exchange's own name (``BTCUSDT``, ``BTC-USD``)."""
    base: str
    quote: str
    tick_size: str
    lot_size: str
    price_precision: int
    size_precision: int


class ConnectionPlan(msgspec.Struct, frozen=True, kw_only=True):
    """One WebSocket connection: where to connect and what it carries."""

    url: str
    subscriptions: tuple[Subscription, ...]


class SessionStats(msgspec.Struct, kw_only=True):
    """Plain-integer counters a session keeps; read at scrape time, never labelled per message.

    Frames are not among them: the driver counts every frame it hands to ``receive`` (once per
    socket read), so a session pays nothing per frame for that."""

    ignored: int = 0
    """Well-formed frames of a type the adapter does not use (unknown types are not errors)."""
    errors_reported: int = 0
    """Error frames the exchange sent (bad symbol, rate limit)."""
    book_resyncs: int = 0
    checksum_failures: int = 0
    sequence_gaps: int = 0
    crossed_books: int = 0


class ExchangeSession(abc.ABC):
    """Sans-I/O state machine for one WebSocket connection. See the module docstring."""

    def __init__(self, adapter: ExchangeAdapter, plan: ConnectionPlan) -> None:
        self.adapter = adapter
        self.plan = plan
        self.stats = SessionStats()
        self.notices: list[str] = []
        """Human-readable lines the driver logs (exchange error frames, acks of note)."""
        self._frames: list[str | bytes] = []
        self._http: list[HttpRequest] = []
        self._events: list[Event] = []
        self.reconnect_reason: str | None = None
        """Set when the adapter wants this connection replaced (e.g. the exchange announced a
        shutdown); the driver reconnects and clears nothing: sessions are not reused."""
        self.refused: dict[Subscription, str] = {}
        """Subscriptions the exchange refused for good on this connection (bad symbol, channel
        not offered), with the exchange's reason; fill it with :meth:`refuse`. The driver
        publishes each as a ``refused`` subscription status and its stale-data watchdog leaves
        them alone (waiting for data that will never come would recycle the connection and
        its healthy subscriptions with it)."""

    # -- driver-facing API -------------------------------------------------------------------

    @abc.abstractmethod
    def start(self, now_ns: int) -> None:
        """The connection is open: queue the subscribe frames for ``plan.subscriptions``."""

    @abc.abstractmethod
    def receive(self, data: bytes, is_text: bool, received_ns: int, out: list[Event]) -> None:
        """Handle one complete WebSocket message; append normalized events to ``out``."""

    def on_http(self, response: HttpResponse, out: list[Event]) -> None:  # noqa: B027
        """The answer to one of this session's HTTP requests (a book snapshot, say)."""

    def on_http_failed(self, request: HttpRequest, reason: str, out: list[Event]) -> None:  # noqa: B027
        """A request of this session failed for good; the book it was for stays invalid."""

    @abc.abstractmethod
    def resubscribe(self, subscriptions: Sequence[Subscription], now_ns: int) -> None:
        """Recover these stale or broken subscriptions on this connection (queue frames)."""

    def keepalive(self, now_ns: int) -> None:  # noqa: B027
        """An app-level ping is due (see ``Keepalive.app_ping_interval``): queue it."""

    def waiting(self, subscription: Subscription) -> bool:
        """Whether ``subscription``'s data is arriving but held back until an answer this
        session asked for comes (a REST book snapshot queued or in flight).

        The stale-data watchdog counts a waiting subscription as fresh: a snapshot that waits
        its turn under the exchange's REST budget must not get the subscription renewed or
        the connection replaced. Return False again once the request failed, so a refusing
        REST endpoint still ends in the watchdog's resubscribe. Called a few times per
        watchdog deadline; keep it cheap. Default: never waiting.
        """
        return False

    # -- effects ------------------------------------------------------------------------------

    def send(self, frame: str | bytes) -> None:
        """Queue a frame (text if ``str``) for the driver to send."""
        self._frames.append(frame)

    def request(self, request: HttpRequest) -> None:
        """Queue an HTTP GET for the driver to carry out."""
        self._http.append(request)

    def emit(self, event: Event) -> None:
        """Queue an event from a call that has no ``out`` list; the driver publishes it."""
        self._events.append(event)

    def announce_resubscribing(self, symbol: str, now_ns: int) -> None:
        """A valid book of ``symbol`` is dropped by ``resubscribe`` for a fresh snapshot:
        publish it as ``resyncing`` (it is not served meanwhile). Announce ``valid`` again
        with the snapshot."""
        reason = RESUBSCRIBE_REASON
        self.emit(book_status(self.adapter.spec.id, symbol, "resyncing", reason, now_ns))

    def refuse(self, subscription: Subscription, reason: str) -> None:
        """Record that the exchange refused ``subscription`` (see :attr:`refused`)."""
        if subscription not in self.refused:
            self.refused[subscription] = reason

    def take_frames(self) -> list[str | bytes]:
        frames, self._frames = self._frames, []
        return frames

    def take_http_requests(self) -> list[HttpRequest]:
        requests, self._http = self._http, []
        return requests

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    @property
    def has_output(self) -> bool:
        return bool(self._frames or self._http or self._events or self.reconnect_reason)


class ExchangeAdapter(abc.ABC):
    """One exchange: static facts, instrument metadata, connection planning, session factory."""

    spec: ClassVar[ExchangeSpec]

    def __init__(self, settings: AdapterSettings) -> None:
        self.settings = settings
        self.instruments: dict[str, Instrument] = {}
        """Normalized symbol -> instrument, filled by ``load_instruments``."""

    @abc.abstractmethod
    def instrument_requests(self) -> list[HttpRequest]:
        """REST requests whose answers ``load_instruments`` needs (may be empty)."""

    @abc.abstractmethod
    def load_instruments(self, responses: Sequence[HttpResponse]) -> None:
        """Fill ``self.instruments``. Raise ``ConfigError`` for configured symbols the exchange
        does not list (name the exchange and the symbol, suggest close matches)."""

    def subscriptions(self) -> list[Subscription]:
        """Every (channel, symbol) the settings ask for."""
        return [
            Subscription(channel, symbol)
            for symbol in self.settings.symbols
            for channel in self.settings.channels
        ]

    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionPlan]:
        """Split subscriptions across connections so none exceeds the per-connection limit."""
        limit = max(1, self.spec.max_streams_per_connection)
        subs = sorted(subscriptions)
        return [
            ConnectionPlan(url=self.settings.ws_url, subscriptions=tuple(subs[i : i + limit]))
            for i in range(0, len(subs), limit)
        ]

    @abc.abstractmethod
    def new_session(self, plan: ConnectionPlan) -> ExchangeSession:
        """A fresh session for one connection of ``plan``."""
