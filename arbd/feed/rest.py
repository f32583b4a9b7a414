"""REST GETs (instrument metadata, book snapshots) through httpx on trio.

Timeouts on every request; transient failures (network errors, 5xx) are retried with the same
jittered backoff as connections; HTTP 429/418 wait for Retry-After when the server gives it.
httpx exceptions are translated into ``arbd.errors.RestError`` / ``RateLimited`` here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import trio

from arbd.errors import RateLimited, RestError
from arbd.feed.backoff import Backoff
from arbd.feed.transport import USER_AGENT, parse_retry_after

log = logging.getLogger("arbd.rest")

_RETRY_STATUS = frozenset({500, 502, 503, 504})


class RestClient:
    """One per exchange. ``get(url)`` returns ``(status, body)`` for 2xx/4xx answers."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: Callable[[], Backoff] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retry_after: float = 120.0,
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
        self.requests = 0
        self.failures = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, url: str) -> tuple[int, bytes]:
        """GET with retries. Raises ``RestError`` when every attempt failed, or ``RateLimited``
        when the server keeps saying 429/418."""
        backoff = self._backoff()
        last: RestError | RateLimited | None = None
        for _attempt in range(self.retries + 1):
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
