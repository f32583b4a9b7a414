"""One exception tree for arbd.

::

    ArbdError
    ├── ConfigError            bad configuration: file, key path and problem (terminal for start,
    │                          non-fatal for reload: the running config stays)
    ├── PluginError            a plugin failed to load or registered something invalid
    ├── CaptureError           an unreadable capture file or an unanswerable replay request
    ├── ProtocolError          a frame or document an adapter could not understand (recoverable:
    │                          counted and skipped)
    ├── ControlError           a control-channel request failed (arbctl's side): ``code`` says why
    │   └── DaemonNotRunning   no daemon answers on any control socket arbctl looked at
    └── FeedError              something went wrong with an exchange connection (recoverable
        │                      unless ``terminal`` is set)
        ├── ConnectFailed      could not open the TCP/TLS stream or finish the handshake
        ├── RateLimited        HTTP 429/418 with an optional Retry-After, on handshake or REST
        ├── PeerClosed         the exchange closed the connection or the stream broke
        ├── HeartbeatTimeout   a ping went unanswered past its deadline, or nothing arrived
        ├── StaleFeed          data stopped for a subscription and the adapter asked to reconnect
        ├── ReconnectRequested the adapter asked for a fresh connection (e.g. serverShutdown)
        └── RestError          a REST request failed after its retries
            └── RequestWeightError  a request weighs more than the exchange's whole REST
                                    allowance (or less than 1): an adapter bug, never sent

Library exceptions (OSError, trio.BrokenResourceError, websockets.exceptions.*, httpx.*) are
translated into this tree at the I/O boundary (``arbd.feed.transport``, ``arbd.feed.rest``), so
the supervisor decides what to do from one hierarchy and never from a third party's.

"Closed by us" (shutdown, rotation) is not an error and never raises.
"""

from __future__ import annotations


class ArbdError(Exception):
    """Base of every error arbd raises on purpose."""


class ConfigError(ArbdError):
    """A configuration problem, rendered as ``<file>: <key.path>: <problem>``."""

    def __init__(self, problem: str, *, path: str = "", key: str = "") -> None:
        self.problem = problem
        self.path = path
        self.key = key
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [p for p in (self.path, self.key) if p]
        line = ": ".join([*parts, self.problem])
        if line.isprintable():
            return line
        # A key or value from the file may hold a newline or other control character (TOML
        # allows them in quoted keys and strings): show it escaped, keeping this one line.
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


class PluginError(ArbdError):
    """A plugin could not be loaded or registered something invalid."""


class CaptureError(ArbdError):
    """A capture could not be read, or a replayed request has no recorded answer."""


class ProtocolError(ArbdError):
    """An exchange frame (or REST document) that does not parse as the protocol says."""


class FeedError(ArbdError):
    """A problem with an exchange connection. Recoverable by reconnecting unless terminal."""

    reason = "error"
    terminal = False


class ConnectFailed(FeedError):
    reason = "connect_failed"


class RateLimited(FeedError):
    """The exchange said slow down (HTTP 429 or 418). ``retry_after`` in seconds if given."""

    reason = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PeerClosed(FeedError):
    reason = "peer_closed"


class HeartbeatTimeout(FeedError):
    reason = "heartbeat_timeout"


class StaleFeed(FeedError):
    reason = "stale"


class ReconnectRequested(FeedError):
    reason = "requested"


class RestError(FeedError):
    reason = "rest_error"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RequestWeightError(RestError):
    """An adapter asked for a request the exchange's REST weight budget can never carry.
    Retrying cannot help: the feed gives up on that request (instruments: the exchange fails)."""

    reason = "rest_weight"
    terminal = True


class ControlError(ArbdError):
    """A control-channel request failed, as the client sees it. ``code`` is the protocol's error
    code (``docs/protocol.md``), or ``connection`` when the socket itself failed."""

    def __init__(self, message: str, code: str = "connection") -> None:
        super().__init__(message)
        self.code = code


class DaemonNotRunning(ControlError):
    """No daemon answered: every control socket path looked at is missing or refuses."""

    def __init__(self, message: str, looked_at: tuple[str, ...] = ()) -> None:
        super().__init__(message, code="not_running")
        self.looked_at = looked_at
