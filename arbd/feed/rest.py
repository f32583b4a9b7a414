"""REST GETs (instrument metadata, book snapshots) through httpx on trio.

Timeouts on every request; transient failures (network errors, 5xx) are retried with the same
jittered backoff as connections; HTTP 429/418 wait for Retry-After when the server gives it.
httpx exceptions are translated into ``arbd.errors.RestError`` / ``RateLimited`` here.

Where the exchange declares a REST weight allowance (``ExchangeSpec.rest_weight_per_minute``),
the client holds a :class:`arbd.feed.budget.SlidingBudget` shared by every connection of the
exchange and waits before each attempt (retries included) until the request's weight fits, in
arrival order: being refused with 429 and then banned with 418 costs far more than waiting.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final

import httpx
import trio

from arbd.errors import RateLimited, RequestWeightError, RestError
from arbd.exchange.adapter import ExchangeSpec
from arbd.feed.backoff import Backoff
from arbd.feed.budget import SlidingBudget
from arbd.feed.transport import USER_AGENT, parse_retry_after

log = logging.getLogger("arbd.rest")

_RETRY_STATUS = frozenset({500, 502, 503, 504})

REST_BUDGET_WINDOW: Final = 61.0
"""The window ``ExchangeSpec.rest_weight_per_minute`` is spent over: a minute plus a second of
slack, because we count requests when they leave and the exchange when they arrive, and
network delay varies (two requests 60.0 s apart here may land 59.9 s apart there)."""


def rest_budget(
    spec: ExchangeSpec, budgets: dict[str, SlidingBudget] | None = None
) -> SlidingBudget | None:
    """The REST weight budget for ``spec`` (None when it declares no allowance), taken from
    ``budgets`` or added to it, so that every client of one exchange spends from one budget."""
    limit = spec.rest_weight_per_minute
    if limit is None:
        return None
    if budgets is None:
        return SlidingBudget(limit, REST_BUDGET_WINDOW)
    budget = budgets.get(spec.id)
    if budget is None or budget.limit != limit:
        budget = budgets[spec.id] = SlidingBudget(limit, REST_BUDGET_WINDOW)
    return budget


class RestClient:
    """One per exchange. ``get(url, weight)`` returns ``(status, body)`` for 2xx/4xx answers.

    ``budget``: the exchange's REST weight budget (None: requests are not paced); ``now``: the
    clock it is read with (trio's, so virtual clocks apply); ``name``: the exchange, for logs.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: Callable[[], Backoff] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retry_after: float = 120.0,
        budget: SlidingBudget | None = None,
        now: Callable[[], float] = trio.current_time,
        name: str = "rest",
    ) -> None:
        self._client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=True,
        )
        self.retries = retries
        self._backoff = backoff or (lambda: Backoff(0.25, 5.0, 60.0))
        self.max_retry_after = max_retry_after
        self.budget = budget
        self._now = now
        self.name = name
        # trio's Lock hands over in arrival order, so a heavy request waiting for room is not
        # overtaken for ever by light ones that would fit sooner.
        self._budget_lock = trio.Lock()
        self._warned_at = -math.inf
        self.requests = 0
        self.failures = 0
        self.budget_waits = 0
        """Attempts that had to wait for the weight budget (plain int, read by tests/metrics)."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, url: str, weight: int = 1) -> tuple[int, bytes]:
        """GET with retries, each attempt spending ``weight`` from the budget. Raises
        ``RestError`` when every attempt failed, ``RateLimited`` when the server keeps saying
        429/418, ``RequestWeightError`` (nothing sent) when ``weight`` can never fit."""
        budget = self.budget
        if budget is not None and not 1 <= weight <= budget.limit:
            raise RequestWeightError(
                f"GET {url}: request weight {weight} cannot fit the REST allowance of "
                f"{budget.limit} per {budget.window:g} s (an adapter bug: it must ask for less)"
            )
        backoff = self._backoff()
        last: RestError | RateLimited | None = None
        for _attempt in range(self.retries + 1):
            if budget is not None:
                await self._spend(budget, weight)
            self.requests += 1
            try:
                response = await self._client.get(url)
            except httpx.InvalidURL as exc:
                raise RestError(f"{url}: invalid URL: {exc}") from None
            except httpx.HTTPError as exc:
                last = RestError(f"GET {url} failed: {type(exc).__name__}: {exc}")
            else:
                status = response.status_code
                if status in (418, 429):
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    last = RateLimited(f"GET {url}: HTTP {status}", retry_after)
                    if retry_after is not None:
                        await trio.sleep(min(retry_after, self.max_retry_after))
                        continue
                elif status in _RETRY_STATUS:
                    last = RestError(f"GET {url}: HTTP {status}", status)
                else:
                    return status, response.content
            self.failures += 1
            log.debug("%s; retrying", last)
            await trio.sleep(backoff.next_delay())
        assert last is not None
        raise last

    async def _spend(self, budget: SlidingBudget, weight: int) -> None:
        """Wait until ``weight`` fits the budget, then spend it (one waiter at a time)."""
        async with self._budget_lock:
            while True:
                now = self._now()
                wait = budget.delay(now, weight)
                if wait <= 0:
                    budget.take(now, weight)
                    return
                self.budget_waits += 1
                # One line per window at most: 200 snapshots queued behind the budget are one
                # situation, not 200.
                if now - self._warned_at >= budget.window:
                    self._warned_at = now
                    log.warning(
                        "%s: REST weight budget (%d per %g s) in use; requests wait their turn "
                        "(next in %.1f s)",
                        self.name,
                        budget.limit,
                        budget.window,
                        wait,
                    )
                await trio.sleep(wait)
