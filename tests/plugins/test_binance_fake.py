"""The Binance fake checked directly: REST shapes and errors, control frames, keepalive, the
message-rate limit, and the depth stream against the REST snapshot (reference §1.4)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from websockets.frames import Frame

from arbd.exchange.adapter import HttpRequest, HttpResponse
from arbd.plugins import load_plugins
from arbd.testing.client import HandshakeRefused, ProbeClient, ProbeClosed, open_probe
from arbd.testing.fake import open_fake
from arbd_binance.adapter import BinanceAdapter
from arbd_binance.fake import BinanceFake, pad8
from arbd_binance.instruments import parse_instruments

LIMIT = 10  # seconds: every wait in this file is bounded by this
TS = 1_700_000_000_000


def fixed_clock() -> int:
    return TS


async def ask(probe: ProbeClient, request: dict[str, Any] | str) -> dict[str, Any]:
    probe.send_text(request if isinstance(request, str) else json.dumps(request))
    reply = json.loads(await probe.receive())
    assert isinstance(reply, dict)
    return reply


async def until_closed(probe: ProbeClient) -> tuple[list[Frame], int | None]:
    """Every frame until the connection ends, and the server's close code (None: dropped)."""
    frames = []
    try:
        while True:
            frames.append(await probe.receive_frame())
    except ProbeClosed as closed:
        return frames, closed.code


async def test_exchange_info_has_the_real_shape_and_loads_into_the_adapter() -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_fake(BinanceFake()) as fake,
            httpx.AsyncClient(base_url=fake.rest_url) as http,
        ):
            full = await http.get("/api/v3/exchangeInfo")
            one = await http.get("/api/v3/exchangeInfo", params={"symbol": "BTCUSDC"})
            some = await http.get("/api/v3/exchangeInfo", params={"symbols": '["ETHUSDT"]'})
            bad = await http.get("/api/v3/exchangeInfo", params={"symbol": "FOOBAR"})
    body = full.json()
    assert {"timezone", "serverTime", "rateLimits", "exchangeFilters"} <= set(body)
    btc = body["symbols"][0]
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert (btc["symbol"], btc["status"], btc["baseAsset"], btc["quoteAsset"]) == (
        "BTCUSDT",
        "TRADING",
        "BTC",
        "USDT",
    )
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert full.headers["x-mbx-used-weight-1m"] == "20"
    assert [s["symbol"] for s in one.json()["symbols"]] == ["BTCUSDC"]
    assert [s["symbol"] for s in some.json()["symbols"]] == ["ETHUSDT"]
    assert (bad.status_code, bad.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
    # The adapter's own parser reads it; BTCUSDC comes out right without string splitting.
    request = HttpRequest(url="x", purpose="instruments")
    instruments = parse_instruments(
        [HttpResponse(request=request, status=200, body=full.content, received_ns=0)]
    )
    assert set(instruments) == set(fake.by_symbol)
    assert instruments["BTC/USDC"].native == "BTCUSDC"
    assert (instruments["XRP/USDT"].tick_size, instruments["XRP/USDT"].lot_size) == (
        "0.00010000",
        "0.10000000",
    )


async def test_depth_snapshot_and_its_errors() -> None:
    with trio.fail_after(LIMIT):
        async with (
            open_fake(BinanceFake(depth=20)) as fake,
            httpx.AsyncClient(base_url=fake.rest_url) as http,
        ):
            default = await http.get("/api/v3/depth", params={"symbol": "BTCUSDT"})
            five = await http.get("/api/v3/depth", params={"symbol": "ETHUSDT", "limit": "5"})
            unknown = await http.get("/api/v3/depth", params={"symbol": "FOOBAR"})
            missing = await http.get("/api/v3/depth")
            bad_limit = await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "x"})
            other = await http.get("/api/v3/nothing")
    body = default.json()
    assert list(body) == ["lastUpdateId", "bids", "asks"]
    assert body["lastUpdateId"] == fake.market("BTC/USDT").seq
    bids, asks = fake.market("BTC/USDT").book.snapshot()
    assert body["bids"] == [[pad8(p), pad8(q)] for p, q in bids]
    assert body["asks"] == [[pad8(p), pad8(q)] for p, q in asks]
    assert len(five.json()["bids"]) == len(five.json()["asks"]) == 5
    assert (unknown.status_code, unknown.json()["code"]) == (400, -1121)
    assert (missing.status_code, missing.json()["code"]) == (400, -1102)
    assert (bad_limit.status_code, bad_limit.json()["code"]) == (400, -1100)
    assert other.status_code == 404


async def test_request_weight_is_enforced_per_minute_with_429_and_retry_after(
    virtual_time: Any,
) -> None:
    heavy = {"symbol": "BTCUSDT", "limit": "5000"}  # weight 250: 24 fill the minute
    async with (
        open_fake(BinanceFake()) as fake,
        httpx.AsyncClient(base_url=fake.rest_url) as http,
    ):
        await trio.sleep_until(600.0)  # the start of a minute
        for n in range(1, 25):
            ok = await http.get("/api/v3/depth", params=heavy)
            assert (ok.status_code, ok.headers["x-mbx-used-weight-1m"]) == (200, str(250 * n))
        await trio.sleep(20.0)
        refused = await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5"})
        info = await http.get("/api/v3/exchangeInfo")
        await trio.sleep_until(660.0)  # the next minute
        served = await http.get("/api/v3/depth", params=heavy)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "40"  # seconds to the next minute
    assert refused.json() == {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 6000 request weight per 1 "
        "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
    }
    assert refused.headers["x-mbx-used-weight-1m"] == "6000"  # the refusal is not charged
    assert info.status_code == 429
    assert (served.status_code, served.headers["x-mbx-used-weight-1m"]) == (200, "250")
    assert fake.weight_refusals == 2
    assert fake.weight_log == [(600.0, 250)] * 24 + [(660.0, 250)]


async def test_control_frames_acks_and_errors(virtual_time: Any) -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(BinanceFake()) as fake, open_probe(fake.ws_url("/stream")) as probe:
            sub = {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@depth@100ms"]}
            assert await ask(probe, {**sub, "id": 1}) == {"result": None, "id": 1}
            listed = await ask(probe, {"method": "LIST_SUBSCRIPTIONS", "id": 2})
            assert listed == {"result": ["btcusdt@trade", "ethusdt@depth@100ms"], "id": 2}
            unsub = {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 3}
            assert await ask(probe, unsub) == {"result": None, "id": 3}
            # Probe replies one at a time: five requests per second is the limit.
            await trio.sleep(1.1)
            bad = await ask(
                probe, {**sub, "params": ["btcusdt@nonsense", "solusdt@trade"], "id": 4}
            )
            assert bad == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 4}
            garbage = await ask(probe, "not json")
            assert garbage == {
                "error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"},
                "id": None,
            }
            unknown = await ask(probe, {"method": "PING", "id": 5})
            assert unknown["error"]["code"] == 2
            assert unknown["error"]["msg"].startswith("Invalid request: unknown variant `PING`")
            no_method = await ask(probe, {"params": [], "id": 6})
            assert "missing field `method`" in no_method["error"]["msg"]
            await trio.sleep(1.1)
            bad_id = await ask(probe, {**sub, "id": -1.5})
            assert bad_id == {
                "error": {
                    "code": 2,
                    "msg": "Invalid request: request ID must be an unsigned integer",
                },
                "id": None,
            }
            assert await ask(
                probe, {"method": "GET_PROPERTY", "params": ["combined"], "id": 7}
            ) == {
                "result": True,
                "id": 7,
            }
            unknown_prop = {"method": "SET_PROPERTY", "params": ["speed", 1], "id": 8}
            assert (await ask(probe, unknown_prop))["error"] == {
                "code": 0,
                "msg": "Unknown property",
            }
            bad_value = {"method": "SET_PROPERTY", "params": ["combined", 1], "id": 9}
            assert (await ask(probe, bad_value))["error"]["code"] == 1
            conn = fake.connections[0]
    # The failed request subscribed nothing: validation is all or nothing.
    assert conn.subscriptions == {"ethusdt@depth@100ms"}
    assert fake.errors_sent == 7


async def test_unlisted_symbols_are_silently_accepted_and_rejected_ones_are_errors() -> None:
    fake = BinanceFake(reject_symbols=["ETH/USDT"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/stream")) as probe:
            unlisted = {"method": "SUBSCRIBE", "params": ["dogeusdt@trade"], "id": 1}
            assert await ask(probe, unlisted) == {"result": None, "id": 1}
            rejected = {"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": "a1"}
            assert await ask(probe, rejected) == {
                "error": {"code": 2, "msg": "Invalid request: invalid stream"},
                "id": "a1",
            }
            fake.reject_symbol("ETH/USDT", False)
            assert await ask(probe, {**rejected, "id": 3}) == {"result": None, "id": 3}


async def test_raw_and_combined_paths_and_url_streams() -> None:
    fake = BinanceFake(["BTC/USDT"], clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            async with open_probe(fake.ws_url("/stream?streams=btcusdt@trade/btcusdt@kline_1m")):
                conn = await fake.wait_connected()
                assert conn.subscriptions == {"btcusdt@trade", "btcusdt@kline_1m"}
            async with open_probe(fake.ws_url("/ws")) as raw:
                sub = {"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1}
                await ask(raw, sub)
                await fake.pump(1)
                ticker = json.loads(await raw.receive())
                assert set(ticker) == {"u", "s", "b", "B", "a", "A"}  # no wrapper on /ws
                prop = {"method": "SET_PROPERTY", "params": ["combined", True], "id": 2}
                assert await ask(raw, prop) == {"result": None, "id": 2}
                fake.send_shutdown(fake.connections[-1])
                shutdown = json.loads(await raw.receive())
            with pytest.raises(HandshakeRefused) as refused:
                async with open_probe(fake.ws_url("/api")):
                    pass
    assert shutdown == {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": TS}}
    assert refused.value.status == 404


async def test_server_pings_and_pong_timeout(virtual_time: Any) -> None:
    fake = BinanceFake(["BTC/USDT"])
    with trio.fail_after(200):
        async with open_fake(fake), open_probe(fake.ws_url("/stream")) as probe:
            conn = await fake.wait_connected()
            started = trio.current_time()
            for _ in range(2):
                frame = await probe.receive_frame()  # answered automatically
                assert frame.opcode.name == "PING" and frame.data
            assert trio.current_time() - started == pytest.approx(40.0, abs=0.1)
            await fake.wait_for(lambda: conn.pongs_received == 2)
            probe.answer_pings = False
            _, code = await until_closed(probe)
            # Third ping at 60 s unanswered: dropped 60 s later (pings at 80, 100 s unanswered).
            assert trio.current_time() - started == pytest.approx(120.0, abs=0.1)
    assert code is None  # dropped, no close frame
    assert fake.pong_timeouts == 1


async def test_more_than_five_messages_a_second_close_the_connection() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(BinanceFake()) as fake, open_probe(fake.ws_url("/stream")) as probe:
            for n in range(6):
                probe.send_text(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": n}))
            frames, code = await until_closed(probe)
    replies = [json.loads(f.data) for f in frames if f.opcode.name == "TEXT"]
    assert [r["id"] for r in replies] == [0, 1, 2, 3, 4]
    assert code == 1008
    assert fake.rate_limit_closes == 1


async def test_client_pings_count_against_the_limit() -> None:
    with trio.fail_after(LIMIT):
        async with open_fake(BinanceFake()) as fake, open_probe(fake.ws_url("/stream")) as probe:
            for _ in range(6):
                probe.send_ping(b"x")
            _, code = await until_closed(probe)
    assert code == 1008


async def test_depth_diffs_chain_and_line_up_with_the_rest_snapshot() -> None:
    """The documented procedure (§1.4), done by hand over the wire: buffer, snapshot, drop
    u <= lastUpdateId, the first applied event straddles lastUpdateId + 1, then U == u + 1;
    the rebuilt book is the fake's. A skipped sequence shows as a gap in U."""
    fake = BinanceFake(["BTC/USDT"], depth=20)
    m = fake.market("BTC/USDT")
    with trio.fail_after(LIMIT):
        async with (
            open_fake(fake),
            open_probe(fake.ws_url("/stream")) as probe,
            httpx.AsyncClient(base_url=fake.rest_url) as http,
        ):
            sub = {"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1}
            await ask(probe, sub)
            await fake.pump(2)
            snapshot = (await http.get("/api/v3/depth", params={"symbol": "BTCUSDT"})).json()
            await fake.pump(3)
            events = [json.loads(await probe.receive())["data"] for _ in range(5)]
            expected = m.book.snapshot()
            fake.skip_sequence("BTC/USDT")
            await fake.pump(2)
            after_skip = json.loads(await probe.receive())["data"]
    assert [e["U"] for e in events[1:]] == [e["u"] + 1 for e in events[:-1]]
    last = snapshot["lastUpdateId"]
    buffered = [e for e in events if e["u"] > last]
    assert len(buffered) == 3
    assert buffered[0]["U"] <= last + 1 <= buffered[0]["u"]
    book = {"b": dict(map(tuple, snapshot["bids"])), "a": dict(map(tuple, snapshot["asks"]))}
    for event in buffered:
        apply(book, event)
    assert book == padded(expected)
    assert after_skip["U"] > events[-1]["u"] + 1  # the lost event's ids are missing


def apply(book: dict[str, dict[str, str]], event: dict[str, Any]) -> None:
    for key in ("b", "a"):
        for price, size in event[key]:
            if float(size) == 0:
                book[key].pop(price, None)
            else:
                book[key][price] = size


def padded(snapshot: tuple[list[tuple[str, str]], list[tuple[str, str]]]) -> dict[str, Any]:
    bids, asks = snapshot
    return {"b": {pad8(p): pad8(q) for p, q in bids}, "a": {pad8(p): pad8(q) for p, q in asks}}


def test_book_rebuilt_from_diffs_equals_the_fake_book() -> None:
    fake = BinanceFake(["ETH/USDT"], depth=10, clock=fixed_clock)
    m = fake.market("ETH/USDT")
    seq, book = m.seq, padded(m.book.snapshot())
    for _ in range(30):
        for topic, frame in fake.next_round():
            if topic == "ethusdt@depth@100ms":
                assert callable(frame)
                event = json.loads(frame(fake_conn()))["data"]
                assert event["U"] == seq + 1
                seq = event["u"]
                apply(book, event)
    assert seq == m.seq
    assert book == padded(m.book.snapshot())


def fake_conn() -> Any:
    """A stand-in connection for rendering frames outside a server (combined mode)."""

    class _Conn:
        id = -1

    return _Conn()


def test_corrupt_checksum_is_not_a_binance_fault() -> None:
    with pytest.raises(NotImplementedError):
        BinanceFake().corrupt_checksum("BTC/USDT")


def test_plugin_registers_adapter_and_fake() -> None:
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "binance"})
    assert registry.exchanges["binance"] is BinanceAdapter
    fake = registry.fakes["binance"].create()
    assert isinstance(fake, BinanceFake)
    assert set(BinanceAdapter.spec.default_symbols) <= set(fake.by_symbol)
