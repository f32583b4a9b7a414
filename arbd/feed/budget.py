"""Per-exchange connection budget: at most N new connections per sliding window.

Protects against reconnect storms (many connections of one exchange failing together) and keeps
arbd under exchange limits such as Binance's 300 connection attempts per 5 minutes per IP. Pure:
``delay(now)`` says how long to wait; ``take(now)`` spends one attempt.
"""

from __future__ import annotations

from collections import deque


class ConnectionBudget:
    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("need limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._attempts: deque[float] = deque()

    def _expire(self, now: float) -> None:
        attempts = self._attempts
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()

    def delay(self, now: float) -> float:
        """Seconds until an attempt is allowed (0 if allowed now)."""
        self._expire(now)
        if len(self._attempts) < self.limit:
            return 0.0
        return self._attempts[0] + self.window - now

    def take(self, now: float) -> None:
        self._expire(now)
        self._attempts.append(now)
