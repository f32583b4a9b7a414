"""RestClient under a REST weight budget: against httpx's MockTransport in virtual time, and
an adapter asking for more than the whole allowance."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
import trio

from arbd.errors import RequestWeightError
from arbd.exchange.adapter import HttpRequest
from arbd.feed.budget import SlidingBudget
from arbd.feed.rest import REST_BUDGET_WINDOW, RestClient, rest_budget
from arbd.testing.fake import open_fake
from arbd_binance.adapter import BinanceAdapter
from arbd_simplex.adapter import SimplexAdapter
from arbd_simplex.fake import SimplexFake

from .conftest import adapter_with, running, wait_until


class Server:
    """A fake REST endpoint: records (trio time, path) of each request it answers."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.seen: list[tuple[float, str]] = []
        self._answer = answer or (lambda request: httpx.Response(200, content=b"{}"))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((trio.current_time(), request.url.path))
        return self._answer(request)

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.seen]


def client(server: Server, limit: int = 100, **options: object) -> RestClient:
    return RestClient(
        transport=httpx.MockTransport(server.handle),
        budget=SlidingBudget(limit, 60.0),
        now=trio.current_time,
        name="testex",
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def instant(mock_clock):
    """Virtual time that jumps as soon as every task sleeps (no real I/O here)."""
    mock_clock.autojump_threshold = 0
    return mock_clock


async def test_requests_wait_until_their_weight_fits(instant) -> None:
    server = Server()
    rest = client(server, limit=100)
    for n in range(5):
        assert await rest.get(f"http://x/r{n}", weight=30) == (200, b"{}")
    # 3 x 30 fit at once; the fourth needs the first 30 out of the window (t = 60), and then
    # the fifth fits too (the three from t = 0 left together).
    assert server.times == [0.0, 0.0, 0.0, 60.0, 60.0]
    assert rest.budget_waits == 1
    await rest.aclose()


async def test_without_a_budget_nothing_waits(instant) -> None:
    server = Server()
    rest = RestClient(transport=httpx.MockTransport(server.handle))
    for _ in range(50):
        await rest.get("http://x/r", weight=250)
    assert set(server.times) == {0.0}
    await rest.aclose()


async def test_each_retry_spends_weight_too(instant) -> None:
    answers = iter([503, 200])
    server = Server(lambda request: httpx.Response(next(answers), content=b"ok"))
    rest = client(server, limit=100)
    assert await rest.get("http://x/depth", weight=60) == (200, b"ok")
    # The retry's backoff is well under a second; the budget makes it wait for the first
    # attempt's 60 to leave the window.
    assert server.times == [0.0, 60.0]
    assert rest.failures == 1
    await rest.aclose()


async def test_waiters_are_served_in_arrival_order(instant) -> None:
    server = Server()
    rest = client(server, limit=100)
    await rest.get("http://x/first", weight=90)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rest.get, "http://x/heavy", 50)  # waits until t = 60
        await trio.sleep(1.0)
        # 90 + 5 would fit now, but the heavy request came first: it is not overtaken.
        nursery.start_soon(rest.get, "http://x/light", 5)
    assert server.seen == [(0.0, "/first"), (60.0, "/heavy"), (60.0, "/light")]
    await rest.aclose()


async def test_one_warning_per_window_however_many_requests_wait(instant, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="arbd.rest")
    server = Server()
    rest = client(server, limit=100)
    await rest.get("http://x/a", weight=60)
    await trio.sleep(30.0)
    await rest.get("http://x/b", weight=40)
    await trio.sleep(1.0)
    await rest.get("http://x/c", weight=60)  # waits from 31 to 60: warned
    await rest.get("http://x/d", weight=40)  # waits from 60 to 90: within the window, quiet
    assert server.times == [0.0, 30.0, 60.0, 90.0]
    assert rest.budget_waits == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "testex: REST weight budget (100 per 60 s) in use; requests wait their turn "
        "(next in 29.0 s)"
    ]
    await rest.aclose()


async def test_a_request_heavier_than_the_whole_allowance_is_an_error_and_never_sent(
    instant,
) -> None:
    server = Server()
    rest = client(server, limit=100)
    with pytest.raises(RequestWeightError) as caught:
        await rest.get("http://x/depth?limit=5000", weight=250)
    assert str(caught.value) == (
        "GET http://x/depth?limit=5000: request weight 250 cannot fit the REST allowance of "
        "100 per 60 s (an adapter bug: it must ask for less)"
    )
    with pytest.raises(RequestWeightError):
        await rest.get("http://x/free", weight=0)
    assert server.seen == []
    await rest.aclose()


async def test_an_instruments_request_heavier_than_the_allowance_fails_the_exchange(
    virtual_time,
) -> None:
    base = adapter_with(rest_weight_per_minute=10)

    class HeavyAdapter(base):  # type: ignore[misc, valid-type]
        def instrument_requests(self) -> list[HttpRequest]:
            (request,) = super().instrument_requests()
            return [HttpRequest(url=request.url, purpose=request.purpose, weight=50)]

    async with open_fake(SimplexFake()) as fake, running(fake, adapter_cls=HeavyAdapter) as h:
        await wait_until(lambda: h.statuses("exchange"))
        (failed,) = h.statuses("exchange")
        assert failed.state == "failed"
        assert failed.reason == (
            f"simplex: GET {fake.rest_url}/api/instruments: request weight 50 cannot fit the "
            "REST allowance of 10 per 61 s (an adapter bug: it must ask for less)"
        )
        assert h.feed.state == "failed"
        assert fake.http_requests == []  # never sent, never retried


def test_one_budget_per_exchange_kept_across_feeds() -> None:
    budgets: dict[str, SlidingBudget] = {}
    first = rest_budget(BinanceAdapter.spec, budgets)
    assert first is not None
    assert (first.limit, first.window) == (6000, REST_BUDGET_WINDOW)
    # A feed restarted by a reload (or loading instruments while the old one runs) spends
    # from the same allowance: the exchange counts per IP.
    assert rest_budget(BinanceAdapter.spec, budgets) is first
    assert rest_budget(SimplexAdapter.spec, budgets) is None  # declares no allowance
