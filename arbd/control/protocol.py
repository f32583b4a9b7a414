"""The control channel's wire format: JSON lines, one request and one reply per line. Pure.

A client sends a request line such as ``{"cmd":"status","id":1}`` and gets exactly one reply
line, ``{"ok":true,"id":1,"result":{...}}`` or ``{"ok":false,"id":1,"error":{"code":...,
"message":...}}``, before its next request is read. ``id`` is optional and echoed untouched.
``subscribe`` is the exception: after its reply the connection carries only event lines (the
event schema of ``docs/protocol.md``, plus ``lag`` lines) until the client closes it.

Nothing a client sends can make :func:`parse_request` raise: every line becomes a request or an
:class:`ErrorReply` naming the field that was wrong. ``docs/protocol.md`` shows every request and
reply; ``tests/test_docs.py`` decodes those examples with the types below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import msgspec

from arbd.hub import Filter
from arbd.model import ALL_CHANNELS, Arbitrage
from arbd.status import DaemonStatus

MAX_LINE: Final = 64 * 1024
"""Longest request line accepted (bytes); requests are small, so anything longer is abuse."""

RequestId = int | str | None

ERROR_CODES: Final = {
    "invalid_json": "the line is not valid JSON",
    "invalid_request": "a field is missing, unknown, malformed or of the wrong type",
    "unknown_command": "cmd names no request",
    "unknown_exchange": "subscribe named an exchange the daemon does not run",
    "unknown_symbol": "subscribe named a symbol no running exchange streams",
    "unknown_channel": "subscribe named a channel that does not exist",
    "config_error": "the daemon refused the change (symbols, reload); the running config stays",
    "line_too_long": "a request line longer than 64 KiB; the connection is closed",
    "permission_denied": "the peer's user may not use the socket; the connection is closed",
    "too_many_connections": "control.max_connections reached; the connection is closed",
    "overflow": "a subscribe stream fell too far behind; the connection is closed",
    "internal_error": "the daemon failed to answer (logged with its traceback)",
}
"""Every error ``code`` and what it means (documented in ``docs/protocol.md``)."""

ErrorCode = Literal[
    "invalid_json",
    "invalid_request",
    "unknown_command",
    "unknown_exchange",
    "unknown_symbol",
    "unknown_channel",
    "config_error",
    "line_too_long",
    "permission_denied",
    "too_many_connections",
    "overflow",
    "internal_error",
]

_SYMBOL = re.compile(r"[A-Z0-9]+/[A-Z0-9]+")


# -- requests ---------------------------------------------------------------------------------


class _Request(msgspec.Struct, tag_field="cmd", forbid_unknown_fields=True, kw_only=True):
    id: RequestId = None


class StatusRequest(_Request, tag="status"):
    """Reply: a ``DaemonStatus``."""


class SubscribeRequest(_Request, tag="subscribe"):
    """Filters as in the WebSocket protocol: empty lists mean all. Reply: ``Subscribed``, then
    the current state and live events until the client closes the connection."""

    symbols: list[str] = msgspec.field(default_factory=list)
    exchanges: list[str] = msgspec.field(default_factory=list)
    channels: list[str] = msgspec.field(default_factory=list)


class OpportunitiesRequest(_Request, tag="opportunities"):
    """Reply: the open opportunities; with ``all`` also the recently closed ones."""

    all: bool = False


class SymbolsRequest(_Request, tag="symbols"):
    """Subscribe (``add``) or unsubscribe (``remove``) an exchange's symbols at runtime."""

    op: Literal["add", "remove"]
    exchange: str
    symbols: list[str]


class ReloadRequest(_Request, tag="reload"):
    """Re-read the config file. Reply: ``Reloaded`` (one line per change made)."""


class StopRequest(_Request, tag="stop"):
    """Shut the daemon down gracefully; the reply is sent first."""


Request = (
    StatusRequest
    | SubscribeRequest
    | OpportunitiesRequest
    | SymbolsRequest
    | ReloadRequest
    | StopRequest
)

COMMANDS: Final = ("status", "subscribe", "opportunities", "symbols", "reload", "stop")


# -- replies ----------------------------------------------------------------------------------


class ErrorInfo(msgspec.Struct, kw_only=True):
    code: str
    """One of :data:`ERROR_CODES`."""
    message: str
    """One line, for people."""


class OkReply(msgspec.Struct, kw_only=True, omit_defaults=False):
    ok: Literal[True] = True
    id: RequestId = None
    result: Any


class ErrorReply(msgspec.Struct, kw_only=True, omit_defaults=False):
    ok: Literal[False] = False
    id: RequestId = None
    error: ErrorInfo


class Subscribed(msgspec.Struct, kw_only=True):
    """The filter now active (sorted; an empty list means all)."""

    symbols: list[str]
    exchanges: list[str]
    channels: list[str]


class SymbolsChanged(msgspec.Struct, kw_only=True):
    exchange: str
    op: Literal["add", "remove"]
    changed: list[str]
    """The symbols actually subscribed (or removed); ones already in that state are left out."""


class Reloaded(msgspec.Struct, kw_only=True):
    changes: list[str]
    """One line per change applied; empty when the file had not changed."""


class Stopping(msgspec.Struct, kw_only=True):
    stopping: bool = True


class Lag(msgspec.Struct, kw_only=True, tag_field="type", tag="lag"):
    """On a subscribe stream: ``dropped`` events were conflated away (older prices and books
    replaced by newer ones) because the client read slower than events arrived."""

    dropped: int


RESULT_TYPES: Final[dict[str, Any]] = {
    "status": DaemonStatus,
    "subscribe": Subscribed,
    "opportunities": list[Arbitrage],
    "symbols": SymbolsChanged,
    "reload": Reloaded,
    "stop": Stopping,
}
"""The ``result`` type of each request's successful reply."""


_decoder: msgspec.json.Decoder[Request] = msgspec.json.Decoder(Request)
_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """One line of the wire format (newline included)."""
    return _encoder.encode(message) + b"\n"


def ok(request_id: RequestId, result: object) -> bytes:
    return encode(OkReply(id=request_id, result=result))


def error(request_id: RequestId, code: ErrorCode, message: str) -> bytes:
    return encode(ErrorReply(id=request_id, error=ErrorInfo(code=code, message=one_line(message))))


def one_line(text: str) -> str:
    return " ".join(text.split())


# -- parsing ----------------------------------------------------------------------------------


def parse_request(line: bytes) -> Request | ErrorReply:
    """A request, or the error reply to send for ``line``. Never raises."""
    try:
        request = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        code, message = _explain(str(exc))
        return _error_reply(_raw_id(line), code, message)
    except msgspec.DecodeError as exc:
        return _error_reply(None, "invalid_json", f"invalid JSON: {_strip_malformed(str(exc))}")
    except RecursionError:
        # msgspec refuses nesting deeper than the interpreter's recursion limit this way.
        return _error_reply(None, "invalid_json", "invalid JSON: nested too deeply")
    except UnicodeDecodeError as exc:
        # ... and text that is not UTF-8 this way (a ValueError, not a DecodeError).
        return _error_reply(None, "invalid_json", f"invalid JSON: not UTF-8 (byte {exc.start})")
    problem = _check(request)
    if problem is not None:
        return _error_reply(request.id, *problem)
    return request


def _error_reply(request_id: RequestId, code: ErrorCode, message: str) -> ErrorReply:
    return ErrorReply(id=request_id, error=ErrorInfo(code=code, message=one_line(message)))


def _raw_id(line: bytes) -> RequestId:
    """The ``id`` of a line that is JSON but not a valid request, so the error can echo it."""
    try:
        fields = msgspec.json.decode(line, type=dict[str, msgspec.Raw])
        raw = fields.get("id")
        return None if raw is None else msgspec.json.decode(raw, type=RequestId)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None


def _strip_malformed(text: str) -> str:
    return text.removeprefix("JSON is malformed: ")


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>.+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>.+)`$")
_TYPE = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_INVALID = re.compile(r"^Invalid (?:enum )?value (?P<value>.*)$")
_ALLOWED = {"op": "add, remove"}


def _explain(text: str) -> tuple[ErrorCode, str]:
    """Turn msgspec's validation message into a code and a line naming the field."""
    path = ""
    match = _AT.search(text)
    if match:
        path = match["path"].lstrip(".")
        text = text[: match.start()]
    if path == "cmd":
        value = _INVALID.match(text)
        if value:
            known = ", ".join(COMMANDS)
            return "unknown_command", f"unknown command {value['value']} (one of {known})"
        return "invalid_request", f"cmd: must be a string, one of {', '.join(COMMANDS)}"
    if value := _INVALID.match(text):
        allowed = _ALLOWED.get(path)
        hint = f" (one of {allowed})" if allowed else ""
        return "invalid_request", f"{path}: invalid value {value['value']}{hint}"
    if missing := _MISSING.match(text):
        field = ".".join(p for p in (path, missing["field"]) if p)
        return "invalid_request", f"missing field {field!r}"
    if unknown := _UNKNOWN.match(text):
        field = ".".join(p for p in (path, unknown["field"]) if p)
        return "invalid_request", f"unknown field {field!r}"
    if wrong := _TYPE.match(text):
        want, got = wrong["want"], wrong["got"]
        if not path and want == "object":
            return "invalid_request", f"a request is a JSON object, got {got}"
        return "invalid_request", f"{path}: expected {want}, got {got}"
    return "invalid_request", f"{path}: {text}" if path else text


def _check(request: Request) -> tuple[ErrorCode, str] | None:
    """Rules a type cannot state."""
    if isinstance(request, SubscribeRequest):
        for i, channel in enumerate(request.channels):
            if channel not in ALL_CHANNELS:
                known = ", ".join(ALL_CHANNELS)
                return "unknown_channel", f"channels[{i}]: unknown channel {channel!r} ({known})"
        return _check_symbols(request.symbols)
    if isinstance(request, SymbolsRequest):
        if not request.exchange:
            return "invalid_request", "exchange: must not be empty"
        if not request.symbols:
            return "invalid_request", "symbols: name at least one symbol"
        return _check_symbols(request.symbols)
    return None


def _check_symbols(symbols: Sequence[str]) -> tuple[ErrorCode, str] | None:
    for i, symbol in enumerate(symbols):
        if not _SYMBOL.fullmatch(symbol):
            return (
                "invalid_request",
                f"symbols[{i}]: {symbol!r} is not a BASE/QUOTE symbol like BTC/USDT",
            )
    return None


def subscription(
    request: SubscribeRequest, markets: Mapping[str, Sequence[str]]
) -> tuple[Filter, Subscribed] | ErrorReply:
    """The hub filter for a subscribe request, checked against what the daemon streams now
    (``markets``: exchange -> subscribed symbols), or the error reply.

    A symbol must be streamed by one of the chosen exchanges, unless the request asks only for
    ``arbitrage`` or ``status`` events: an opportunity's ``symbol`` may name a quote group
    (``BTC/USD``) that no single exchange streams.
    """
    for i, exchange in enumerate(request.exchanges):
        if exchange not in markets:
            running = ", ".join(sorted(markets)) or "none"
            return _error_reply(
                request.id,
                "unknown_exchange",
                f"exchanges[{i}]: unknown exchange {exchange!r} (running: {running})",
            )
    chosen = request.exchanges or list(markets)
    streamed = {symbol for exchange in chosen for symbol in markets[exchange]}
    data_wanted = not request.channels or not set(request.channels) <= {"arbitrage", "status"}
    if data_wanted:
        for i, symbol in enumerate(request.symbols):
            if symbol not in streamed:
                where = ", ".join(sorted(request.exchanges)) or "any exchange"
                return _error_reply(
                    request.id,
                    "unknown_symbol",
                    f"symbols[{i}]: {symbol} is not streamed by {where}",
                )
    active = Subscribed(
        symbols=sorted(set(request.symbols)),
        exchanges=sorted(set(request.exchanges)),
        channels=sorted(set(request.channels)),
    )
    return (
        Filter(
            symbols=frozenset(active.symbols),
            exchanges=frozenset(active.exchanges),
            channels=frozenset(active.channels),
        ),
        active,
    )


class LineBuffer:
    """Splits received bytes into lines (``\\n``, an optional ``\\r`` before it is dropped).

    ``too_long`` turns true when a line grows past ``max_line`` bytes without ending; the
    caller replies ``line_too_long`` and closes (there is no way to resynchronise safely).
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.too_long = False
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        if self.too_long:
            return []
        self._pending += data
        *lines, rest = self._pending.split(b"\n")
        self._pending = bytearray(rest)
        complete: list[bytes] = []
        for line in lines:
            if len(line) > self.max_line:
                self.too_long = True
                return complete  # the lines before the long one are still answered
            complete.append(bytes(line.removesuffix(b"\r")))
        if len(self._pending) > self.max_line:
            self.too_long = True
        return complete
