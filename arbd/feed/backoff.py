"""Capped exponential backoff with full jitter (pure; the caller sleeps).

delay(n) is uniform in [0, min(cap, base * 2**n)] for the n-th consecutive failure ("full
jitter": spreads a fleet of reconnecting clients evenly instead of in synchronized waves). A
connection that stayed up for ``reset_after`` seconds resets n to 0, so one blip after a long
healthy run retries fast, while a flapping exchange keeps backing off.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        base: float,
        cap: float,
        reset_after: float,
        max_attempts: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.reset_after = reset_after
        self.max_attempts = max_attempts
        self.failures = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """Upper bound of the next delay."""
        # min() before the power would overflow for large failure counts; cap the exponent.
        return min(self.cap, self.base * 2.0 ** min(self.failures, 62))

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.failures += 1
        return delay

    def connection_ended(self, stable_for: float) -> None:
        """A connection that was up ``stable_for`` seconds ended; reset if it was stable."""
        if stable_for >= self.reset_after:
            self.failures = 0

    @property
    def exhausted(self) -> bool:
        """True once ``max_attempts`` consecutive attempts have failed (never if 0)."""
        return self.max_attempts > 0 and self.failures >= self.max_attempts
