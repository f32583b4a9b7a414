"""Sliding-window budgets: at most ``limit`` units spent in any ``window`` seconds. Pure.

Two uses, one class:

* the connection budget (units of 1 per connection attempt), which protects against reconnect
  storms and keeps arbd under limits such as Binance's 300 connection attempts per 5 minutes
  per IP;
* an exchange's REST weight budget (units = a request's weight), which keeps arbd under a
  declared allowance such as Binance's 6000 request weight per minute per IP.

A sliding window is stricter than the fixed windows exchanges count in (Binance resets its
weight counter at each minute): whatever fits in every window of ``window`` seconds also fits
in every fixed one. ``delay(now, units)`` says how long to wait; ``take(now, units)`` spends.
Time is passed in; nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import math
from collections import deque


class SlidingBudget:
    """``limit`` units per sliding ``window`` seconds.

    Spending is kept as ``(time, units)`` entries plus a running total, so a budget of 6000
    weight spent in requests of 50 holds 120 entries, not 6000.
    """

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("need limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0

    def _expire(self, now: float) -> None:
        # The same arithmetic as delay()'s answer, so "expired" and "no wait" agree to the ulp.
        spent, window = self._spent, self.window
        while spent and spent[0][0] + window <= now:
            self._total -= spent.popleft()[1]

    def _check(self, units: int) -> None:
        if units < 1:
            raise ValueError(f"units must be at least 1, not {units}")
        if units > self.limit:
            raise ValueError(
                f"{units} units can never fit a budget of {self.limit} per {self.window:g} s"
            )

    def used(self, now: float) -> int:
        """Units spent in the window ending at ``now``."""
        self._expire(now)
        return self._total

    def delay(self, now: float, units: int = 1) -> float:
        """Seconds until ``units`` may be spent (0 if now). Raises ``ValueError`` when
        ``units`` exceeds the whole limit (it would never fit)."""
        self._check(units)
        self._expire(now)
        excess = self._total + units - self.limit
        if excess <= 0:
            return 0.0
        # Wait until the oldest entries whose units cover the excess have left the window.
        freed = 0
        for at, spent in self._spent:
            freed += spent
            if freed >= excess:
                return _until(now, at + self.window)
        raise AssertionError("unreachable: the entries sum to more than the excess")

    def take(self, now: float, units: int = 1) -> None:
        """Spend ``units`` at ``now`` (call when :meth:`delay` says 0: this does not check)."""
        self._check(units)
        self._expire(now)
        self._spent.append((now, units))
        self._total += units


def _until(now: float, deadline: float) -> float:
    """The wait that takes ``now`` to ``deadline``: ``deadline - now`` rounded, so ``now + wait``
    can fall an ulp short of ``deadline`` (and a caller who waited that long be told to wait
    again); such a wait is raised to the next float up until it reaches."""
    wait = deadline - now
    while now + wait < deadline:
        wait = math.nextafter(wait, math.inf)
    return wait
