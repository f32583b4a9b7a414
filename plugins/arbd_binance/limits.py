"""Binance spot REST request weights and the allowance they count against (pure).

Binance charges every REST request a weight and allows each IP a total weight per minute
(``exchangeInfo`` lists it as ``{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE",
"intervalNum":1,"limit":6000}``). Past it the answer is HTTP 429 with ``Retry-After``; clients
that keep going get 418, an IP ban from 2 minutes up to 3 days. The adapter declares the
allowance (``ExchangeSpec.rest_weight_per_minute``) and each request's weight, so arbd paces its
requests under it; the fake charges and enforces the same numbers.
"""

from __future__ import annotations

from typing import Final

REST_WEIGHT_PER_MINUTE: Final = 6000
"""``REQUEST_WEIGHT`` per minute per IP, as ``GET /api/v3/exchangeInfo`` declares it."""
EXCHANGE_INFO_WEIGHT: Final = 20
"""``GET /api/v3/exchangeInfo`` without symbol parameters."""


def depth_weight(limit: int) -> int:
    """Weight of ``GET /api/v3/depth`` by ``limit`` (reference §1.1): 5 for 1-100, 25 for
    101-500, 50 for 501-1000, 250 for 1001-5000."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    return 50 if limit <= 1000 else 250
