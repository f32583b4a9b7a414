"""The simplex fake over loopback, checked with a probe client and the real simplex adapter."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from arbd.exchange.adapter import AdapterSettings, HttpResponse
from arbd.model import CHANNELS, Book, Candle, Event, FeedStatus, Quote, Trade
from arbd.plugins import load_plugins
from arbd.testing.client import HandshakeRefused, ProbeClient, open_probe
from arbd.testing.fake import FakeExchangeFactory, open_fake
from arbd_simplex.adapter import SimplexAdapter, SimplexSession
from arbd_simplex.fake import SimplexFake

LIMIT = 10  # seconds: every wait in this file is bounded by this
TS = 1_700_000_000_000


def fixed_clock() -> int:
    return TS


async def make_session(
    fake: SimplexFake, symbols: tuple[str, ...] = ("BTC/USDT",)
) -> SimplexSession:
    """An adapter loaded from the fake's own REST answer, and a session for its one plan."""
    adapter = SimplexAdapter(
        AdapterSettings(
            ws_url=fake.ws_url(),
            rest_url=fake.rest_url,
            symbols=symbols,
            channels=CHANNELS,
            book_depth=5,
        )
    )
    (request,) = adapter.instrument_requests()
    async with httpx.AsyncClient() as http:
        response = await http.get(request.url)
    adapter.load_instruments(
        [
            HttpResponse(
                request=request, status=response.status_code, body=response.content, received_ns=0
            )
        ]
    )
    (plan,) = adapter.plan_connections(adapter.subscriptions())
    return adapter.new_session(plan)


async def send_frames(probe: ProbeClient, session: SimplexSession) -> list[dict[str, Any]]:
    frames = session.take_frames()
    for frame in frames:
        assert isinstance(frame, str)
        probe.send_text(frame)
    await probe.flush()
    return [json.loads(f) for f in frames if isinstance(f, str)]


async def pass_on(probe: ProbeClient, session: SimplexSession, n: int) -> list[Event]:
    """Receive ``n`` messages and hand each to the session, as the driver does."""
    out: list[Event] = []
    for _ in range(n):
        message = await probe.receive()
        data = message.encode() if isinstance(message, str) else message
        session.receive(data, isinstance(message, str), TS * 1_000_000, out)
    return out


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


async def test_rest_endpoints() -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_fake(SimplexFake()) as fake,
            httpx.AsyncClient(base_url=fake.rest_url) as http,
        ):
            instruments = (await http.get("/api/instruments")).json()
            book = await http.get("/api/book", params={"symbol": "ETH-USDT"})
            unknown = await http.get("/api/book", params={"symbol": "FOO-BAR"})
            missing = await http.get("/api/book")
            other = await http.get("/api/nothing")
    assert instruments == {
        "instruments": [
            {"symbol": "BTC-USDT", "base": "BTC", "quote": "USDT", "tick": "0.01", "lot": "0.0001"},
            {"symbol": "ETH-USDT", "base": "ETH", "quote": "USDT", "tick": "0.01", "lot": "0.001"},
        ]
    }
    body = book.json()
    assert (book.status_code, body["symbol"], body["seq"]) == (200, "ETH-USDT", 100)
    assert len(body["bids"]) == len(body["asks"]) == 10
    assert float(body["bids"][0][0]) < float(body["asks"][0][0])
    assert (unknown.status_code, unknown.json()["code"]) == (400, "bad_symbol")
    assert missing.status_code == 400
    assert other.status_code == 404
    assert fake.http_requests[0] == ("/api/instruments", {})


async def test_subscribe_ack_snapshot_and_pumped_rounds_reach_the_adapter() -> None:
    fake = SimplexFake(clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            session = await make_session(fake)
            async with open_probe(fake.ws_url()) as probe:
                session.start(0)
                (subscribe,) = await send_frames(probe, session)
                # The ack (no event) and the snapshot (a Book).
                assert kinds(await pass_on(probe, session, 2)) == ["Book"]
                conn = fake.connections[0]
                assert conn.subscriptions == set(subscribe["args"])

                await fake.pump(3)
                events = await pass_on(probe, session, 12)  # 3 rounds x 4 channels, BTC only
            async with httpx.AsyncClient(base_url=fake.rest_url) as http:
                rest = (await http.get("/api/book", params={"symbol": "BTC-USDT"})).json()
    assert kinds(events) == ["Quote", "Trade", "Book", "Candle"] * 3
    assert session.acknowledged == set(subscribe["args"])
    assert [e.sequence for e in events if isinstance(e, (Quote, Trade))] == [1, 1, 2, 2, 3, 3]
    last = [e for e in events if isinstance(e, Book)][-1]
    assert last.sequence == rest["seq"] == 103
    assert [list(level) for level in last.bids] == rest["bids"][:5]
    assert [list(level) for level in last.asks] == rest["asks"][:5]
    candle = next(e for e in events if isinstance(e, Candle))
    assert (candle.start, candle.closed, candle.timestamp) == (TS - TS % 60_000, False, TS)
    assert session.stats.ignored == session.stats.errors_reported == 0


async def test_unknown_stream_gets_an_error_and_known_ones_an_ack() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(SimplexFake()) as fake, open_probe(fake.ws_url()) as probe:
            probe.send_text('{"op":"subscribe","args":["price:FOO-BAR","price:ETH-USDT"],"id":7}')
            probe.send_text('{"op":"subscribe","args":["funding:BTC-USDT"],"id":8}')
            probe.send_text("not json")
            replies = [json.loads(await probe.receive()) for _ in range(4)]
            probe.send_text('{"op":"unsubscribe","args":["price:ETH-USDT"],"id":9}')
            unsubscribed = json.loads(await probe.receive())
            conn = fake.connections[0]
    assert replies[0] == {"op": "subscribed", "args": ["price:ETH-USDT"], "id": 7}
    assert replies[1] == {
        "op": "error",
        "code": "bad_symbol",
        "msg": "unknown symbol FOO-BAR",
        "id": 7,
    }
    assert (replies[2]["code"], replies[2]["id"]) == ("bad_channel", 8)
    assert replies[3]["code"] == "bad_request"
    assert "id" not in replies[3]
    assert unsubscribed == {"op": "unsubscribed", "args": ["price:ETH-USDT"], "id": 9}
    assert conn.subscriptions == set()


async def test_app_pings_are_answered_even_while_stalled() -> None:
    fake = SimplexFake()
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url()) as probe:
            probe.send_text('{"op":"subscribe","args":["price:BTC-USDT"],"id":1}')
            assert json.loads(await probe.receive())["op"] == "subscribed"
            fake.faults.stall = True
            await fake.pump(2)
            probe.send_text('{"op":"ping","ts":1700000000000}')
            # The pumped prices were suppressed: the pong is the next message.
            assert json.loads(await probe.receive()) == {"op": "pong", "ts": 1700000000000}
            assert fake.connections[0].frames_suppressed == 2
            fake.faults.stall = False
            await fake.pump(1)
            price = json.loads(await probe.receive())
    assert (price["ch"], price["seq"]) == ("price", 3)  # seq is per symbol, not per connection


async def test_skipped_sequence_is_detected_and_resynced_over_the_wire() -> None:
    fake = SimplexFake(("BTC/USDT",))
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            session = await make_session(fake)
            async with open_probe(fake.ws_url()) as probe:
                session.start(0)
                await send_frames(probe, session)
                await pass_on(probe, session, 2)  # ack, snapshot
                fake.skip_sequence("BTC/USDT")
                await fake.pump(1)
                events = await pass_on(probe, session, 4)
                assert session.stats.sequence_gaps == 1
                assert [e.state for e in events if isinstance(e, FeedStatus)] == [
                    "invalid",
                    "resyncing",
                ]
                assert not any(isinstance(e, Book) for e in events)
                resync = await send_frames(probe, session)
                assert [(f["op"], f["args"]) for f in resync] == [
                    ("unsubscribe", ["book:BTC-USDT"]),
                    ("subscribe", ["book:BTC-USDT"]),
                ]
                # unsubscribed ack, subscribed ack, fresh snapshot
                events = await pass_on(probe, session, 3)
                assert [(type(e).__name__, getattr(e, "state", "")) for e in events] == [
                    ("FeedStatus", "valid"),
                    ("Book", ""),
                ]
                await fake.pump(1)
                events = await pass_on(probe, session, 4)
    assert kinds(events) == ["Quote", "Trade", "Book", "Candle"]
    assert session.stats.sequence_gaps == 1


async def test_crossed_book_and_shutdown_faults() -> None:
    fake = SimplexFake(("BTC/USDT",))
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            session = await make_session(fake)
            async with open_probe(fake.ws_url()) as probe:
                session.start(0)
                await send_frames(probe, session)
                await pass_on(probe, session, 2)
                assert fake.send_crossed_book("BTC/USDT") == 1
                events = await pass_on(probe, session, 1)
                assert session.stats.crossed_books == 1
                assert [e.state for e in events if isinstance(e, FeedStatus)] == [
                    "invalid",
                    "resyncing",
                ]
                await send_frames(probe, session)
                events = await pass_on(probe, session, 3)
                assert kinds(events) == ["FeedStatus", "Book"]
                # The server's book moved on past the crossed delta: deltas chain again.
                await fake.pump(1)
                assert "FeedStatus" not in kinds(await pass_on(probe, session, 4))
                assert fake.send_shutdown(fake.connections[0])
                await pass_on(probe, session, 1)
    assert session.reconnect_reason == "server shutdown"


async def test_refused_handshake_carries_retry_after() -> None:
    fake = SimplexFake()
    fake.faults.refuse_status = 429
    fake.faults.retry_after = 3
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            with pytest.raises(HandshakeRefused) as refused:
                async with open_probe(fake.ws_url()):
                    pass
    assert (refused.value.status, refused.value.headers["Retry-After"]) == (429, "3")
    assert fake.handshake_refusals == 1


async def test_websocket_only_on_its_path() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(SimplexFake()) as fake:
            with pytest.raises(HandshakeRefused) as refused:
                async with open_probe(fake.ws_url("/stream")):
                    pass
    assert refused.value.status == 404
    assert fake.connection_count == 0


async def test_run_feed_streams_at_a_rate() -> None:
    fake = SimplexFake(("ETH/USDT",))
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url()) as probe:
            probe.send_text('{"op":"subscribe","args":["trades:ETH-USDT"],"id":1}')
            await probe.receive()
            fake.start_soon(fake.run_feed, 500.0, 5)
            trades = [json.loads(await probe.receive()) for _ in range(5)]
    assert [t["seq"] for t in trades] == [1, 2, 3, 4, 5]


async def test_run_feed_sleeps_on_the_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    fake = SimplexFake()
    start = trio.current_time()
    await fake.run_feed(2.0, rounds=4)  # no connections needed: the market still moves
    assert fake.rounds == 4
    assert trio.current_time() - start == pytest.approx(2.0)


def test_plugin_registers_adapter_and_fake() -> None:
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "simplex"})
    assert registry.exchanges["simplex"] is SimplexAdapter
    factory = registry.fakes["simplex"]
    assert isinstance(factory, FakeExchangeFactory)
    assert isinstance(factory.create(), SimplexFake)


def test_next_round_is_deterministic_for_a_seed() -> None:
    a = SimplexFake(seed=3, clock=fixed_clock)
    b = SimplexFake(seed=3, clock=fixed_clock)
    rounds_a = [a.next_round() for _ in range(5)]
    assert rounds_a == [b.next_round() for _ in range(5)]
    assert rounds_a != [SimplexFake(seed=4, clock=fixed_clock).next_round() for _ in range(5)]
    assert {channel for channel, _, _ in rounds_a[0]} == {"price", "trades", "book", "candles"}
