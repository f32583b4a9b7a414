"""Who may connect to the local WebSocket server, and how fast a client may talk. Pure.

:func:`check_handshake` judges an opening handshake (path, token, Origin) before it is accepted;
:class:`RateLimit` meters a client's messages. Neither reads a clock or touches a socket.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Final, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from arbd.config import ServerConfig

MAX_STRIKES: Final = 10
"""Refused messages (decaying by one per second) after which a client is abusive."""


class Refusal(NamedTuple):
    """Why a handshake is refused: the HTTP status and a one-line reason for the body."""

    status: int
    reason: str


def presented_token(target: str, header: Callable[[str], str | None]) -> str | None:
    """The token a client presents: ``Authorization: Bearer <token>``, else ``?token=``."""
    authorization = header("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        if name == "token":
            return value
    return None


def check_handshake(
    config: ServerConfig, target: str, header: Callable[[str], str | None]
) -> Refusal | None:
    """None if the request for ``target`` (path and query) may open a WebSocket, else why not.

    ``header(name)`` returns a request header's value, or None when it is absent. A browser
    always sends ``Origin``; other clients usually do not, and are not held to
    ``allowed_origins`` (the token is what protects a server reachable from the network).
    """
    path = urlsplit(target).path
    if path != config.path:
        return Refusal(404, f"no WebSocket endpoint at {path}; use {config.path}")
    if config.token:
        token = presented_token(target, header)
        # compare_digest: the time taken does not tell how much of a guess was right.
        if token is None or not hmac.compare_digest(token.encode(), config.token.encode()):
            what = "missing" if token is None else "wrong"
            return Refusal(401, f"{what} token: send 'Authorization: Bearer <token>' or ?token=")
    origin = header("Origin")
    if config.allowed_origins and origin is not None and origin not in config.allowed_origins:
        return Refusal(403, f"origin {origin} is not allowed")
    return None


class RateLimit:
    """A token bucket: ``rate`` messages per second in bursts of up to ``burst`` (default: one
    second's worth). Each refused message is a strike; strikes fade at one per second, and a
    client with more than ``max_strikes`` is :attr:`abusive` (it keeps sending well over its
    rate, or in long bursts)."""

    def __init__(
        self, rate: float, now: float, *, burst: float | None = None, max_strikes: int = MAX_STRIKES
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self.max_strikes = max_strikes
        self.tokens = self.burst
        self.strikes = 0.0
        self.refused = 0
        self._last = now

    def allow(self, now: float) -> bool:
        """Take one message at time ``now`` (seconds, monotonic): True if it is within the rate."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.strikes = max(0.0, self.strikes - elapsed)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.strikes += 1.0
        self.refused += 1
        return False

    @property
    def abusive(self) -> bool:
        return self.strikes > self.max_strikes
