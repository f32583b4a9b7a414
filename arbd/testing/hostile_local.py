"""Hostile input to arbd's own parsers: one input in, the outcome checked. Pure, no fuzzer.

Each ``check_*`` function feeds one input to one parser as the daemon does and raises
:class:`HostileInputFailure` (one line) when the outcome breaks the rule the parser promises:

* :func:`check_client_message`, the local WebSocket protocol (``arbd.server.protocol``): every
  message gets exactly one reply that decodes as a server message; an ``error`` reply's message
  is one line naming the offending field; the connection stays open and still answers a
  ``ping`` and a ``subscribe`` correctly afterwards.
* :func:`check_control_line`, the control channel (``arbd.control.protocol``): every line is a
  request or an error reply with a known code and a one-line message naming the field; a
  ``subscribe`` request then becomes a hub filter or such an error.
* :func:`check_capture`, the capture reader behind ``arbd replay``: any file either replays or
  raises ``CaptureError`` whose message is one line starting with the file's name; every line
  replay reports about a damaged record is ``<file>:<line>: ...``.
* :func:`check_config`, the config loader: any file gives a ``Config`` or a one-line
  ``ConfigError`` naming the file and, unless the file as a whole is unreadable, the key path.

Used by the hypothesis tests in ``tests/fuzz/`` and the atheris harnesses in ``fuzz/``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from arbd.config import Config, ServerConfig, load_config
from arbd.control import protocol as control
from arbd.errors import CaptureError, ConfigError
from arbd.plugins import PluginRegistry
from arbd.replay import replay
from arbd.server import protocol as server

MARKETS: Final[Mapping[str, Sequence[str]]] = {
    "binance": ("BTC/USDT", "ETH/USDT"),
    "kraken": ("BTC/USD", "ETH/USD"),
}
"""What the daemon streams, as far as the local protocols are concerned."""

_CLIENT_FIELDS: Final = ("action", "id", "symbols", "exchanges", "channels")
_CONTROL_FIELDS: Final = ("cmd", "id", "symbols", "exchanges", "channels", "all", "op", "exchange")
_server_message: Final[msgspec.json.Decoder[server.ServerMessage]] = msgspec.json.Decoder(
    server.ServerMessage
)
_control_reply: Final = msgspec.json.Decoder(control.ErrorReply)


class HostileInputFailure(AssertionError):
    """A parser broke its rule for one input (see the module docstring)."""


def _one_line(what: str, text: str) -> None:
    if not text.strip() or len(text.splitlines()) != 1 or text != text.strip():
        raise HostileInputFailure(f"{what} is not one line: {text[:300]!r}")


def _names_field(message: str, fields: Sequence[str]) -> bool:
    """Whether an error message names the field it is about: it starts with a field path
    (``symbols[2]: ...``, ``action: ...``), names an unknown or missing field, or is about the
    message as a whole (not an object, an unknown command)."""
    head = message.split(": ", 1)[0]
    root = head.split("[", 1)[0].split(".", 1)[0]
    return (
        root in fields
        or message.endswith(": unknown field")
        or message.startswith(_WHOLE)
        or ("missing" in message and any(repr(f) in message or f in head for f in fields))
    )


_WHOLE: Final = (
    "unknown field ",
    "expected a JSON object",
    "a request is a JSON object",
    "unknown command ",
)


# -- local WebSocket protocol ---------------------------------------------------------------


def _reply(session: server.ClientSession, data: bytes, now: float) -> server.ServerMessage:
    try:
        outcome = session.receive(data, now, 1_700_000_000_000)
    except Exception as exc:
        raise HostileInputFailure(f"server: receive raised {type(exc).__name__}: {exc}") from exc
    if outcome.close is not None:
        raise HostileInputFailure(f"server: the connection was closed: {outcome.close}")
    if len(outcome.replies) != 1:
        raise HostileInputFailure(f"server: {len(outcome.replies)} replies, expected one")
    return _server_message.decode(outcome.replies[0])


def check_client_message(data: bytes) -> server.ServerMessage:
    """One client message to a fresh session, then a ping and a subscribe. Returns the reply."""
    session = server.ClientSession(ServerConfig(), lambda: MARKETS, now=0.0)
    reply = _reply(session, data, 0.0)
    if isinstance(reply, server.Error):
        _one_line("server: error message", reply.message)
        if reply.code not in ("invalid_json", "rate_limited") and not _names_field(
            reply.message, _CLIENT_FIELDS
        ):
            raise HostileInputFailure(f"server: error names no field: {reply.message!r}")
    # The connection is still good (one message per second: well within the rate limit).
    pong = _reply(session, b'{"action":"ping","id":"after"}', 1.0)
    if not isinstance(pong, server.Pong) or pong.id != "after":
        raise HostileInputFailure(f"server: a ping after it got {pong}")
    good = b'{"action":"subscribe","symbols":["BTC/USDT"],"channels":["price"]}'
    subscribed = _reply(session, good, 2.0)
    if not isinstance(subscribed, server.Subscribed):
        raise HostileInputFailure(f"server: a subscribe after it got {subscribed}")
    return reply


# -- control channel ------------------------------------------------------------------------


def check_control_line(line: bytes) -> control.Request | control.ErrorReply:
    """One request line; a subscribe is also checked against :data:`MARKETS`."""
    try:
        request = control.parse_request(line)
        if isinstance(request, control.SubscribeRequest):
            answer = control.subscription(request, MARKETS)
            if isinstance(answer, control.ErrorReply):
                _check_control_error(answer)
        if isinstance(request, control.ErrorReply):
            _check_control_error(request)
            # What the server sends must decode as an error reply again.
            _control_reply.decode(control.encode(request))
    except HostileInputFailure:
        raise
    except Exception as exc:
        raise HostileInputFailure(f"control: raised {type(exc).__name__}: {exc}") from exc
    return request


def _check_control_error(reply: control.ErrorReply) -> None:
    error = reply.error
    if error.code not in control.ERROR_CODES:
        raise HostileInputFailure(f"control: unknown error code {error.code!r}")
    _one_line("control: error message", error.message)
    if error.code != "invalid_json" and not _names_field(error.message, _CONTROL_FIELDS):
        raise HostileInputFailure(f"control: error names no field: {error.message!r}")


def check_line_buffer(chunks: Sequence[bytes], max_line: int = 256) -> list[bytes]:
    """Chunks through a :class:`LineBuffer`: the lines come out whole, none longer than
    ``max_line``, and they are the input's lines up to the first too long one."""
    buffer = control.LineBuffer(max_line)
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(buffer.feed(chunk))
    if any(len(line) > max_line or b"\n" in line for line in lines):
        raise HostileInputFailure("control: a line longer than the limit, or not split")
    expected = [line.removesuffix(b"\r") for line in b"".join(chunks).split(b"\n")[:-1]]
    if lines != expected[: len(lines)]:
        raise HostileInputFailure("control: lines differ from the input's")
    if not buffer.too_long and len(lines) != len(expected):
        raise HostileInputFailure("control: complete lines were held back")
    return lines


# -- captures -------------------------------------------------------------------------------


def check_capture(path: Path, registry: PluginRegistry) -> str:
    """Replay ``path`` as ``arbd replay`` does; returns what happened (for statistics)."""
    name = str(path)
    errors = io.StringIO()
    try:
        stats = replay([path], registry, io.BytesIO(), err=errors)
    except CaptureError as exc:
        _one_line("capture: error", str(exc))
        if not str(exc).startswith(name):
            raise HostileInputFailure(f"capture: error does not name the file: {exc}") from exc
        return "refused"
    except Exception as exc:
        raise HostileInputFailure(
            f"capture: replay raised {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    for line in errors.getvalue().splitlines():
        location, _, problem = line.partition(": ")
        file, _, number = location.rpartition(":")
        if file != name or not number.isdigit() or not problem:
            raise HostileInputFailure(f"capture: report is not '<file>:<line>: ...': {line!r}")
    return "skipped some" if stats.bad_records or stats.skipped_frames else "replayed"


# -- config ---------------------------------------------------------------------------------

_FILE_PROBLEMS: Final = ("cannot read", "not UTF-8", "invalid TOML")
"""Problems of the file as a whole: the only ConfigErrors that name no key."""


def check_config(path: Path) -> Config | ConfigError:
    """Load ``path`` as ``arbd start --config`` does."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        _one_line("config: error", exc.one_line())
        if exc.path != str(path):
            raise HostileInputFailure(f"config: error names no file: {exc.one_line()}") from exc
        if not exc.key and not exc.problem.startswith(_FILE_PROBLEMS):
            raise HostileInputFailure(f"config: error names no key: {exc.one_line()}") from exc
        return exc
    except Exception as exc:
        raise HostileInputFailure(f"config: raised {type(exc).__name__}: {str(exc)[:300]}") from exc
    nan = _nan_key(msgspec.to_builtins(config))
    if nan is not None:
        raise HostileInputFailure(f"config: accepted NaN for {nan}")
    return config


def _nan_key(value: object, path: str = "") -> str | None:
    """The key path of a NaN in a loaded config (NaN passes every ``<`` and ``>`` check)."""
    if isinstance(value, float) and math.isnan(value):
        return path
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _nan_key(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None
