"""Protocol v1 of the local WebSocket server: client messages in, replies out. Pure and synchronous.

Client -> server (JSON objects, one per WebSocket message; ``id`` is optional and echoed)::

    {"action": "subscribe", "symbols": [...], "exchanges": [...], "channels": [...], "id": 1}
    {"action": "unsubscribe", ...the same fields...}
    {"action": "ping", "id": 2}

Server -> client: ``hello`` once on connect, ``subscribed`` / ``unsubscribed`` (what is active
now), ``pong``, ``error`` (``code``, one-line ``message`` naming the field, the offending ``id``)
and ``lag`` (events this client lost to its slow-consumer policy); the market events (``price``,
``trade``, ``book``, ``candle``, ``arbitrage``, ``status``) are the hub's bytes, untouched.

:class:`ClientSession` is one connection's state machine: feed it each complete client message
with :meth:`ClientSession.receive` and carry out the returned :class:`Outcome` in order (send the
replies, re-register the hub subscriber for a changed filter, send the snapshot, close). It never
raises on bad input: every problem becomes an ``error`` reply and the connection stays open,
unless the client keeps sending faster than its rate limit (then ``Outcome.close`` is set).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

import msgspec

import arbd
from arbd.config import ServerConfig
from arbd.hub import Filter
from arbd.model import ALL_CHANNELS
from arbd.server.access import RateLimit
from arbd.server.topics import (
    Subscriptions,
    TooManySubscriptions,
    Topic,
    expand,
    request_size,
)

PROTOCOL_VERSION: Final = 1

Markets = Callable[[], Mapping[str, Sequence[str]]]
"""Exchange id -> the symbols streamed now. Asked on every subscribe (symbols change at runtime)."""

RequestId = int | Annotated[str, msgspec.Meta(max_length=256)] | None

ErrorCode = Literal[
    "invalid_json",
    "invalid_message",
    "unknown_action",
    "unknown_channel",
    "unknown_exchange",
    "unknown_symbol",
    "too_many_subscriptions",
    "rate_limited",
]

# -- client -> server ------------------------------------------------------------------------


class _Request(msgspec.Struct, tag_field="action", forbid_unknown_fields=True, kw_only=True):
    id: RequestId = None


class Subscribe(_Request, tag="subscribe"):
    """Add every combination of the lists (an empty or missing list means any)."""

    symbols: list[str] = msgspec.field(default_factory=list)
    exchanges: list[str] = msgspec.field(default_factory=list)
    channels: list[str] = msgspec.field(default_factory=list)


class Unsubscribe(_Request, tag="unsubscribe"):
    """Remove the active subscriptions the lists cover (no lists: everything)."""

    symbols: list[str] = msgspec.field(default_factory=list)
    exchanges: list[str] = msgspec.field(default_factory=list)
    channels: list[str] = msgspec.field(default_factory=list)


class Ping(_Request, tag="ping"):
    """Answered with ``pong`` (an application-level liveness check)."""


ClientMessage = Subscribe | Unsubscribe | Ping
ACTIONS: Final = ("subscribe", "unsubscribe", "ping")

# -- server -> client ------------------------------------------------------------------------


class _Reply(msgspec.Struct, tag_field="type", rename="camel", kw_only=True):
    pass


class Hello(_Reply, tag="hello"):
    protocol: int
    server: str
    server_time: int
    """ms since the epoch."""
    exchanges: list[str]
    symbols: list[str]
    channels: list[str]
    markets: dict[str, list[str]]
    """Exchange id -> the symbols it streams."""


class ActiveTopic(msgspec.Struct, kw_only=True):
    channel: str
    exchange: str
    symbol: str


class Subscribed(_Reply, tag="subscribed"):
    id: int | str | None
    symbols: list[str]
    exchanges: list[str]
    channels: list[str]
    """What the request named (normalized; an empty list means any)."""
    subscriptions: list[ActiveTopic]
    """Everything active now, ``"*"`` meaning any."""


class Unsubscribed(_Reply, tag="unsubscribed"):
    id: int | str | None
    symbols: list[str]
    exchanges: list[str]
    channels: list[str]
    subscriptions: list[ActiveTopic]


class Pong(_Reply, tag="pong"):
    id: int | str | None
    server_time: int


class Error(_Reply, tag="error"):
    code: ErrorCode
    message: str
    id: int | str | None = None


class Lag(_Reply, tag="lag"):
    """Events this client lost (conflated or dropped) since the previous ``lag``."""

    dropped: int
    total: int
    """Lost since the connection opened."""
    policy: str


ServerMessage = Hello | Subscribed | Unsubscribed | Pong | Error | Lag

_decoder: Final[msgspec.json.Decoder[ClientMessage]] = msgspec.json.Decoder(ClientMessage)
_any_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()


def encode(message: ServerMessage) -> bytes:
    return _encoder.encode(message)


def hello(markets: Mapping[str, Sequence[str]], server_time: int) -> Hello:
    symbols = sorted({s for listed in markets.values() for s in listed})
    return Hello(
        protocol=PROTOCOL_VERSION,
        server=f"arbd {arbd.__version__}",
        server_time=server_time,
        exchanges=sorted(markets),
        symbols=symbols,
        channels=list(ALL_CHANNELS),
        markets={exchange: sorted(listed) for exchange, listed in sorted(markets.items())},
    )


# -- parsing and validation ------------------------------------------------------------------


class BadMessage(Exception):
    """A client message that cannot be carried out; becomes an ``error`` reply."""

    def __init__(self, code: ErrorCode, message: str, id: int | str | None = None) -> None:
        message = _printable(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id

    def reply(self) -> Error:
        return Error(code=self.code, message=self.message, id=self.id)


def _printable(text: str) -> str:
    """``text`` on one line: control characters a client put in a value msgspec quotes back
    (``unknown action 'a\nb'``) are shown escaped, as Python would show them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# What msgspec raises for JSON it cannot read besides DecodeError: text that is not UTF-8
# (a binary message) and nesting deeper than the interpreter's recursion limit.
_UNREADABLE: Final = (UnicodeDecodeError, RecursionError)


def _peek_id(data: bytes) -> int | str | None:
    """The ``id`` of a message that failed typed decoding, if it has a usable one."""
    try:
        value = _any_decoder.decode(data)
    except (msgspec.DecodeError, *_UNREADABLE):
        return None
    if not isinstance(value, dict):
        return None
    found = value.get("id")
    if isinstance(found, bool) or not isinstance(found, int | str):
        return None
    return found if not isinstance(found, str) or len(found) <= 256 else None


def parse_message(data: bytes) -> ClientMessage:
    """Decode one client message. Raises :class:`BadMessage` with a one-line reason."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), _peek_id(data)) from None
    except msgspec.DecodeError as exc:
        reason = str(exc).removeprefix("JSON is malformed: ")
        raise BadMessage("invalid_json", f"not valid JSON: {reason}") from None
    except UnicodeDecodeError as exc:
        raise BadMessage("invalid_json", f"not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise BadMessage("invalid_json", "not valid JSON: nested too deeply") from None


def _invalid(text: str, id: int | str | None) -> BadMessage:
    """Turn a msgspec validation error into a one-line message naming the field."""
    text, sep, where = text.partition(" - at `$")
    where = where.rstrip("`").lstrip(".") if sep else ""
    text = text.replace("`", "")
    if text.startswith("Object contains unknown field "):
        name = text.removeprefix("Object contains unknown field ")
        return BadMessage(
            "invalid_message",
            f"{where}.{name}: unknown field" if where else f"{name}: unknown field",
            id,
        )
    if text.startswith("Object missing required field "):
        name = text.removeprefix("Object missing required field ")
        return BadMessage("invalid_message", f"{name}: missing (one of {', '.join(ACTIONS)})", id)
    if where == "action" and text.startswith("Invalid value "):
        value = text.removeprefix("Invalid value ")
        return BadMessage(
            "unknown_action", f"action: unknown action {value} (one of {', '.join(ACTIONS)})", id
        )
    text = text.replace("Expected object", "expected a JSON object").replace("Expected", "expected")
    return BadMessage("invalid_message", f"{where}: {text}" if where else text, id)


def _unique(values: Sequence[str], normalize: Callable[[str], str]) -> list[str]:
    return list(dict.fromkeys(normalize(v) for v in values))


def _check_channels(channels: list[str], id: int | str | None) -> None:
    for i, channel in enumerate(channels):
        if channel not in ALL_CHANNELS:
            raise BadMessage(
                "unknown_channel",
                f"channels[{i}]: unknown channel {channel!r} (one of {', '.join(ALL_CHANNELS)})",
                id,
            )


def _check_markets(
    exchanges: list[str], symbols: list[str], markets: Mapping[str, Sequence[str]], id: RequestId
) -> None:
    for i, exchange in enumerate(exchanges):
        if exchange not in markets:
            streaming = ", ".join(sorted(markets)) or "none"
            raise BadMessage(
                "unknown_exchange",
                f"exchanges[{i}]: unknown exchange {exchange!r} (streaming: {streaming})",
                id,
            )
    chosen = exchanges or sorted(markets)
    served = {s for exchange in chosen for s in markets[exchange]}
    for i, symbol in enumerate(symbols):
        if symbol not in served:
            where = ", ".join(exchanges) if exchanges else "any exchange"
            close = difflib.get_close_matches(symbol, sorted(served), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise BadMessage(
                "unknown_symbol", f"symbols[{i}]: {symbol} is not streamed by {where}{hint}", id
            )


# -- one connection --------------------------------------------------------------------------


@dataclass
class Change:
    """The client's subscriptions changed: register ``filter`` (None: nothing is active), and
    send the current state matching ``snapshot`` first (None: no snapshot, e.g. unsubscribe)."""

    filter: Filter | None
    snapshot: Filter | None


@dataclass
class Outcome:
    """What to do for one client message, in this order."""

    replies: list[bytes] = field(default_factory=list)
    """JSON payloads to send (the reply to the message, or an error)."""
    change: Change | None = None
    close: tuple[int, str] | None = None
    """Close the connection with this code and reason after sending the replies."""


class ClientSession:
    """One client's protocol state: subscriptions, rate limit. Feed it messages in order."""

    def __init__(self, config: ServerConfig, markets: Markets, now: float) -> None:
        self.config = config
        self.markets = markets
        self.subscriptions = Subscriptions(config.max_subscriptions)
        self.rate = RateLimit(config.max_messages_per_s, now)
        self.errors = 0

    def hello(self, server_time: int) -> bytes:
        return encode(hello(self.markets(), server_time))

    def receive(self, data: bytes, now: float, server_time: int) -> Outcome:
        """Handle one complete client message received at ``now`` (monotonic seconds)."""
        if not self.rate.allow(now):
            if self.rate.abusive:
                return Outcome(close=(1008, "too many messages"))
            error = BadMessage(
                "rate_limited",
                f"more than {self.config.max_messages_per_s:g} messages per second; "
                "this one was ignored",
                _peek_id(data),
            )
            return self._error(error)
        try:
            message = parse_message(data)
            if isinstance(message, Ping):
                return Outcome([encode(Pong(id=message.id, server_time=server_time))])
            if isinstance(message, Subscribe):
                return self._subscribe(message)
            return self._unsubscribe(message)
        except BadMessage as error:
            return self._error(error)

    def _error(self, error: BadMessage) -> Outcome:
        self.errors += 1
        return Outcome([encode(error.reply())])

    def _normalized(
        self, message: Subscribe | Unsubscribe
    ) -> tuple[list[str], list[str], list[str]]:
        channels = _unique(message.channels, str.lower)
        _check_channels(channels, message.id)
        return channels, _unique(message.exchanges, str.lower), _unique(message.symbols, str.upper)

    def _subscribe(self, message: Subscribe) -> Outcome:
        channels, exchanges, symbols = self._normalized(message)
        _check_markets(exchanges, symbols, self.markets(), message.id)
        limit = self.subscriptions.limit
        size = request_size(channels, exchanges, symbols)
        try:
            if size > limit:  # do not even build a product that large
                raise TooManySubscriptions(size, limit)
            self.subscriptions.add(expand(channels, exchanges, symbols))
        except TooManySubscriptions as exc:
            raise BadMessage(
                "too_many_subscriptions",
                f"this would make {exc.count} subscriptions; the limit is {limit} per client",
                message.id,
            ) from None
        reply = Subscribed(
            id=message.id,
            symbols=symbols,
            exchanges=exchanges,
            channels=channels,
            subscriptions=self._active(),
        )
        snapshot = Filter(
            channels=frozenset(channels), exchanges=frozenset(exchanges), symbols=frozenset(symbols)
        )
        return Outcome([encode(reply)], Change(self.subscriptions.filter(), snapshot))

    def _unsubscribe(self, message: Unsubscribe) -> Outcome:
        channels, exchanges, symbols = self._normalized(message)
        self.subscriptions.remove(channels, exchanges, symbols)
        reply = Unsubscribed(
            id=message.id,
            symbols=symbols,
            exchanges=exchanges,
            channels=channels,
            subscriptions=self._active(),
        )
        return Outcome([encode(reply)], Change(self.subscriptions.filter(), None))

    def _active(self) -> list[ActiveTopic]:
        return [_topic(t) for t in self.subscriptions.active()]


def _topic(topic: Topic) -> ActiveTopic:
    channel, exchange, symbol = topic
    return ActiveTopic(channel=channel, exchange=exchange, symbol=symbol)


def lag(dropped: int, total: int, policy: str) -> bytes:
    return encode(Lag(dropped=dropped, total=total, policy=policy))
