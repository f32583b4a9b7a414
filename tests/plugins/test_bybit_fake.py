"""The Bybit spot fake checked directly, over loopback, with a probe client and httpx."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio

from arbd.exchange.adapter import AdapterSettings, HttpResponse
from arbd.model import CHANNELS
from arbd.plugins import load_plugins
from arbd.testing.client import HandshakeRefused, ProbeClient, ProbeClosed, open_probe
from arbd.testing.fake import FakeExchangeFactory, open_fake
from arbd_bybit.adapter import BybitAdapter
from arbd_bybit.fake import BybitFake, conn_id

LIMIT = 10  # seconds: every wait in this file is bounded by this
TS = 1_700_000_000_000


def fixed_clock() -> int:
    return TS


async def receive_json(probe: ProbeClient) -> dict[str, Any]:
    message = await probe.receive()
    assert isinstance(message, str)
    decoded = json.loads(message)
    assert isinstance(decoded, dict)
    return decoded


async def request(probe: ProbeClient, body: dict[str, Any]) -> dict[str, Any]:
    probe.send_text(json.dumps(body))
    return await receive_json(probe)


class LocalBook:
    """A client-side book built from the fake's frames exactly as the protocol says."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.u: int | None = None

    def apply(self, frame: dict[str, Any]) -> None:
        data = frame["data"]
        if frame["type"] == "snapshot":
            self.bids, self.asks = dict(data["b"]), dict(data["a"])
        else:
            assert data["u"] == self.u + 1  # type: ignore[operator]
            for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
                for price, size in levels:
                    if size == "0":
                        del side[price]
                    else:
                        side[price] = size
        self.u = data["u"]

    def levels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))
        return bids, asks


async def test_instruments_info_in_the_real_shape_loads_into_the_adapter() -> None:
    fake = BybitFake(["BTC/USDT", "ETH/USDT"], clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake), httpx.AsyncClient(base_url=fake.rest_url) as http:
            spot = await http.get("/v5/market/instruments-info", params={"category": "spot"})
            one = await http.get(
                "/v5/market/instruments-info", params={"category": "spot", "symbol": "ETHUSDT"}
            )
            bad = await http.get("/v5/market/instruments-info", params={"category": "spots"})
            missing = await http.get("/v5/market/instruments-info")
            other = await http.get("/v5/market/nothing")
    body = spot.json()
    assert (spot.status_code, body["retCode"], body["retMsg"], body["time"]) == (200, 0, "OK", TS)
    assert body["retExtInfo"] == {} and body["result"]["category"] == "spot"
    btc = body["result"]["list"][0]
    assert (btc["symbol"], btc["baseCoin"], btc["quoteCoin"], btc["status"]) == (
        "BTCUSDT",
        "BTC",
        "USDT",
        "Trading",
    )
    assert btc["priceFilter"] == {"tickSize": "0.01"}
    assert btc["lotSizeFilter"]["basePrecision"] == "0.00001"
    assert {"quotePrecision", "minOrderQty", "minOrderAmt"} <= set(btc["lotSizeFilter"])
    assert [i["symbol"] for i in one.json()["result"]["list"]] == ["ETHUSDT"]
    for refused in (bad, missing):
        assert refused.status_code == 200  # Bybit reports parameter errors in retCode
        assert (refused.json()["retCode"], refused.json()["retMsg"]) == (10001, "Illegal category")
    assert other.status_code == 404

    adapter = BybitAdapter(
        AdapterSettings(
            ws_url="ws://127.0.0.1:1/v5/public/spot",
            rest_url="http://127.0.0.1:1",
            symbols=("BTC/USDT", "ETH/USDT"),
            channels=CHANNELS,
            book_depth=10,
        )
    )
    (req,) = adapter.instrument_requests()
    assert req.url.endswith("/v5/market/instruments-info?category=spot")
    adapter.load_instruments(
        [HttpResponse(request=req, status=200, body=spot.content, received_ns=0)]
    )
    eth = adapter.instruments["ETH/USDT"]
    assert (eth.native, eth.tick_size, eth.lot_size, eth.price_precision) == (
        "ETHUSDT",
        "0.01",
        "0.0001",
        2,
    )


async def test_subscribe_is_acked_then_snapshots_follow() -> None:
    fake = BybitFake(["BTC/USDT"], clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/v5/public/spot")) as probe:
            topics = ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT", "orderbook.1.BTCUSDT"]
            ack = await request(probe, {"req_id": "7", "op": "subscribe", "args": topics})
            first, second = await receive_json(probe), await receive_json(probe)
            conn = fake.connections[0]
            assert conn.subscriptions == set(topics)
            unsub = await request(
                probe, {"op": "unsubscribe", "args": ["publicTrade.BTCUSDT"], "req_id": 8}
            )
    assert ack == {
        "success": True,
        "ret_msg": "subscribe",
        "conn_id": conn_id(conn.id),
        "req_id": "7",
        "op": "subscribe",
    }
    assert (first["topic"], first["type"], second["topic"]) == (
        "orderbook.50.BTCUSDT",
        "snapshot",
        "orderbook.1.BTCUSDT",
    )
    assert list(first) == ["topic", "ts", "type", "data", "cts"]  # spot: ts before type
    book = fake.market("BTC/USDT").book
    bids, asks = book.snapshot(50)
    assert [tuple(level) for level in first["data"]["b"]] == bids
    assert [tuple(level) for level in first["data"]["a"]] == asks
    assert first["data"]["u"] == fake.update_id("BTCUSDT", 50)
    assert second["data"]["b"] == [list(bids[0])] and second["data"]["a"] == [list(asks[0])]
    assert (unsub["success"], unsub["op"], unsub["req_id"]) == (True, "unsubscribe", 8)
    assert conn.subscriptions == {"orderbook.50.BTCUSDT", "orderbook.1.BTCUSDT"}


async def test_refusals_use_the_real_error_frames() -> None:
    fake = BybitFake(["BTC/USDT", "ETH/USDT"], reject_symbols=["ETHUSDT"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/v5/public/spot")) as probe:
            replies = [
                await request(probe, {"op": "subscribe", "args": args, "req_id": str(n)})
                for n, args in enumerate(
                    [
                        ["orderbook.50.NOPEUSDT"],
                        ["orderbook.30.BTCUSDT"],
                        ["tickers.BTCUSDT"],
                        ["kline.5.BTCUSDT"],
                        ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"],  # ETHUSDT is refused
                        [f"publicTrade.X{i}" for i in range(11)],
                    ]
                )
            ]
            ok = await request(probe, {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            again = await request(probe, {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            bad_op = await request(probe, {"op": "nope"})
            probe.send_text("hello")
            undecodable = await receive_json(probe)
            subscriptions = set(fake.connections[0].subscriptions)
    assert [(r["success"], r["ret_msg"], r["req_id"], r["op"]) for r in replies] == [
        (False, "Invalid symbol :[orderbook.50.NOPEUSDT]", "0", "subscribe"),
        (False, "error:handler not found,topic:orderbook.30.BTCUSDT", "1", "subscribe"),
        (False, "error:handler not found,topic:tickers.BTCUSDT", "2", "subscribe"),
        (False, "error:handler not found,topic:kline.5.BTCUSDT", "3", "subscribe"),
        (False, "Invalid symbol :[publicTrade.ETHUSDT]", "4", "subscribe"),
        (False, "args size >10", "5", "subscribe"),
    ]
    assert (ok["success"], "req_id" in ok) == (True, False)
    assert again["ret_msg"] == "error:already subscribed,topic:publicTrade.BTCUSDT"
    assert (bad_op["success"], bad_op["ret_msg"], bad_op["op"]) == (
        False,
        "error:invalid op",
        "nope",
    )
    assert undecodable["success"] is False
    assert undecodable["ret_msg"].startswith("Failed to decode incoming data")
    assert subscriptions == {"publicTrade.BTCUSDT"}  # a refused request subscribes nothing


async def test_json_ping_is_answered_even_while_stalled() -> None:
    fake = BybitFake(["BTC/USDT"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/v5/public/spot")) as probe:
            await request(probe, {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            fake.faults.stall = True
            await fake.pump(3)
            pong = await request(probe, {"op": "ping"})
            pong_with_id = await request(probe, {"req_id": "100001", "op": "ping"})
            conn = fake.connections[0]
    assert pong == {"success": True, "ret_msg": "pong", "conn_id": conn_id(conn.id), "op": "ping"}
    assert pong_with_id["req_id"] == "100001"
    assert conn.frames_suppressed >= 1 and conn.pings_received == 0  # no protocol pings


async def test_rebuilt_books_equal_the_fakes_and_u_chains_per_topic() -> None:
    fake = BybitFake(["BTC/USDT"], depth=60, clock=fixed_clock)
    topics = ["orderbook.1.BTCUSDT", "orderbook.50.BTCUSDT", "orderbook.200.BTCUSDT"]
    books = {t: LocalBook() for t in topics}
    deltas = dict.fromkeys(topics, 0)
    seqs: list[int] = []
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/v5/public/spot")) as probe:
            await request(probe, {"op": "subscribe", "args": topics})
            for _ in range(3):
                frame = await receive_json(probe)
                books[frame["topic"]].apply(frame)
            start_u = {t: b.u for t, b in books.items()}
            await fake.pump(20)
            probe.send_text('{"op":"ping"}')  # a fence: the pong comes after every round
            while "topic" in (frame := await receive_json(probe)):
                books[frame["topic"]].apply(frame)  # asserts u == previous u + 1
                deltas[frame["topic"]] += 1
                seqs.append(frame["data"]["seq"])
                # orderbook.1 is snapshot-only; the rest send deltas after the first snapshot.
                assert frame["type"] == ("snapshot" if ".1." in frame["topic"] else "delta")
    assert frame["ret_msg"] == "pong"
    book = fake.market("BTC/USDT").book
    assert books["orderbook.50.BTCUSDT"].levels() == book.snapshot(50)
    assert books["orderbook.200.BTCUSDT"].levels() == book.snapshot(200)  # 60 levels: all
    assert books["orderbook.1.BTCUSDT"].levels() == book.snapshot(1)
    for topic, depth in zip(topics, (1, 50, 200), strict=True):
        assert books[topic].u == start_u[topic] + deltas[topic] == fake.update_id("BTCUSDT", depth)
    assert deltas["orderbook.50.BTCUSDT"] >= 15  # nearly every round moves the book
    assert seqs == sorted(seqs)  # the cross sequence never goes back


async def test_skip_sequence_spends_u_and_service_restart_resets_it() -> None:
    fake = BybitFake(["BTC/USDT"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/v5/public/spot")) as probe:
            await request(probe, {"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]})
            snapshot = await receive_json(probe)
            fake.skip_sequence("BTC/USDT")
            await fake.pump(2)
            after_gap = await receive_json(probe)
            assert fake.resend_snapshot("BTC/USDT") == 1
            resent = await receive_json(probe)
            assert fake.restart_service("BTC/USDT") == 1
            restarted = await receive_json(probe)
            await fake.pump(1)
            next_delta = await receive_json(probe)
    assert after_gap["type"] == "delta"
    assert after_gap["data"]["u"] == snapshot["data"]["u"] + 2  # one message was lost
    assert (resent["type"], resent["data"]["u"]) == ("snapshot", after_gap["data"]["u"] + 1)
    assert (restarted["type"], restarted["data"]["u"]) == ("snapshot", 1)
    assert (next_delta["type"], next_delta["data"]["u"]) == ("delta", 2)


async def test_crossed_book_is_sent_as_a_delta_and_repaired_next_round() -> None:
    fake = BybitFake(["BTC/USDT"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/v5/public/spot")) as probe:
            await request(probe, {"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]})
            local = LocalBook()
            local.apply(await receive_json(probe))
            assert fake.send_crossed_book("BTC/USDT") == 1
            local.apply(await receive_json(probe))
            bids, asks = local.levels()
            assert Decimal(bids[0][0]) > Decimal(asks[0][0])
            assert len(bids) == 50  # the lowest bid left the window
            await fake.pump(1)
            local.apply(await receive_json(probe))
    bids, asks = local.levels()
    assert Decimal(bids[0][0]) < Decimal(asks[0][0])
    assert (bids, asks) == fake.market("BTC/USDT").book.snapshot(50)


async def test_trades_and_klines_in_the_real_shape() -> None:
    now = [60_000 * 28_333_333 + 59_000]  # one second before a minute turns
    fake = BybitFake(["BTC/USDT"], clock=lambda: now[0], seed=5)
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/v5/public/spot")) as probe:
            await request(probe, {"op": "subscribe", "args": ["kline.1.BTCUSDT"]})
            await fake.pump(1)
            open_bar = await receive_json(probe)
            now[0] += 2_000
            await fake.pump(1)
            closed, new = await receive_json(probe), await receive_json(probe)
            await request(probe, {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            trades: dict[str, Any] = {}
            while not trades:
                await fake.pump(1)
                frame = await receive_json(probe)
                if frame["topic"].startswith("publicTrade"):
                    trades = frame
    bar = open_bar["data"][0]
    assert (open_bar["topic"], open_bar["type"], bar["interval"], bar["confirm"]) == (
        "kline.1.BTCUSDT",
        "snapshot",
        "1",
        False,
    )
    assert bar["end"] == bar["start"] + 59_999
    assert closed["data"][0]["confirm"] is True and closed["data"][0]["start"] == bar["start"]
    assert new["data"][0]["start"] == bar["start"] + 60_000 and not new["data"][0]["confirm"]
    assert new["data"][0]["open"] == closed["data"][0]["close"]
    trade = trades["data"][0]
    assert set(trade) == {"T", "s", "S", "v", "p", "i", "BT", "RPI", "seq"}
    assert trade["S"] in {"Buy", "Sell"} and trade["i"].isdigit() and trade["BT"] is False


async def test_idle_connections_are_cut_and_pings_keep_them(virtual_time: Any) -> None:
    fake = BybitFake(["BTC/USDT"])
    fake.idle_timeout = 30.0
    async with (
        open_fake(fake),
        open_probe(fake.ws_url("/v5/public/spot")) as pinging,
        open_probe(fake.ws_url("/v5/public/spot")) as silent,
    ):
        for _ in range(4):  # 80 s with a ping every 20 s
            await trio.sleep(20.0)
            assert (await request(pinging, {"op": "ping"}))["ret_msg"] == "pong"
        assert fake.idle_closes == 1 and len(fake.connections) == 1
        with pytest.raises(ProbeClosed) as closed:
            await silent.receive()
    assert closed.value.code is None  # cut without a close frame


async def test_websocket_only_on_the_spot_path_and_handshake_429() -> None:
    fake = BybitFake(["BTC/USDT"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            assert fake.adapter_ws_url().endswith("/v5/public/spot")
            with pytest.raises(HandshakeRefused) as wrong_path:
                async with open_probe(fake.ws_url("/v5/public/linear")):
                    pass
            fake.faults.refuse_status, fake.faults.retry_after = 429, 2
            with pytest.raises(HandshakeRefused) as limited:
                async with open_probe(fake.ws_url("/v5/public/spot")):
                    pass
    assert wrong_path.value.status == 404
    assert (limited.value.status, limited.value.headers["Retry-After"]) == (429, "2")


def test_plugin_registers_adapter_and_fake() -> None:
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "bybit"})
    assert registry.exchanges["bybit"] is BybitAdapter
    factory = registry.fakes["bybit"]
    assert isinstance(factory, FakeExchangeFactory)
    fake = factory.create()
    assert isinstance(fake, BybitFake)
    assert set(BybitAdapter.spec.default_symbols) <= set(fake.by_symbol)


def test_demo_keywords_and_determinism() -> None:
    from arbd.testing.market import MarketSimulator

    shared = MarketSimulator(seed=1)
    demo = BybitFake(simulator=shared, offset_bps=2.0, lag=0.1, clock=fixed_clock)
    assert demo.sim is shared
    a, b = BybitFake(seed=3, clock=fixed_clock), BybitFake(seed=3, clock=fixed_clock)
    assert [a.next_round() for _ in range(5)] == [b.next_round() for _ in range(5)]
