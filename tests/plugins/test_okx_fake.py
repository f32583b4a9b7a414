"""The OKX fake checked directly over loopback: REST shapes and errors, acks and error frames,
text ping/pong, idle close, and books whose seqId chain and checksums match the fake's book."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio

from arbd.plugins import load_plugins
from arbd.testing.client import HandshakeRefused, ProbeClient, ProbeClosed, open_probe
from arbd.testing.fake import FakeExchangeFactory, open_fake
from arbd.testing.market import BookUpdate, MarketSimulator
from arbd_okx.adapter import OkxAdapter
from arbd_okx.checksum import okx_checksum as adapter_checksum
from arbd_okx.fake import BUSINESS_PATH, PUBLIC_PATH, OkxFake, okx_checksum

LIMIT = 10  # seconds: every wait in this file is bounded by this
TS = 1_700_000_000_000
WRONG_URL = (
    "Subscribe failed, wrong URL or channel:{},instId:{} doesn't exist. Please use the correct "
    "URL, channel and parameters referring to API document."
)


def fixed_clock() -> int:
    return TS


async def receive_json(probe: ProbeClient) -> dict[str, Any]:
    message = await probe.receive()
    assert isinstance(message, str)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


def subscribe(probe: ProbeClient, channel: str, inst: str, request_id: str | None = "1") -> None:
    body: dict[str, Any] = {"op": "subscribe", "args": [{"channel": channel, "instId": inst}]}
    if request_id is not None:
        body["id"] = request_id
    probe.send_text(json.dumps(body))


# -- checksum ---------------------------------------------------------------------------------


def test_checksum_matches_the_reference_vectors_and_the_adapter() -> None:
    # exchange-protocols.md §5.4: "3366.1:7:3366.8:9:3366:6:3368:8" and a side running out.
    assert okx_checksum([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == (
        -1881014294
    )
    asks = [("3366.8", "9"), ("3368", "8"), ("3372", "8")]
    assert okx_checksum([("3366.1", "7")], asks) == 831078360
    # The doc snapshot's levels. The reference says -2102840145 for them; the algorithm (and
    # zlib) give this value, and -855196043 in the doc example is illustrative only.
    doc_bids = [("8476.97", "256"), ("8475.55", "101")]
    doc_asks = [("8476.98", "415"), ("8477", "7")]
    assert okx_checksum(doc_bids, doc_asks) == 2123921068
    assert adapter_checksum(doc_bids, doc_asks) == 2123921068


# -- REST -------------------------------------------------------------------------------------


async def test_rest_instruments_and_books_in_okx_shapes() -> None:
    fake = OkxFake(clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake), httpx.AsyncClient(base_url=fake.rest_url) as http:
            spot = await http.get("/api/v5/public/instruments", params={"instType": "SPOT"})
            swap = await http.get("/api/v5/public/instruments", params={"instType": "SWAP"})
            no_type = await http.get("/api/v5/public/instruments")
            bad_type = await http.get("/api/v5/public/instruments", params={"instType": "X"})
            book = await http.get("/api/v5/market/books", params={"instId": "ETH-USDT", "sz": 5})
            one = await http.get("/api/v5/market/books", params={"instId": "ETH-USDT"})
            unknown = await http.get("/api/v5/market/books", params={"instId": "FOO-BAR"})
            too_deep = await http.get(
                "/api/v5/market/books", params={"instId": "ETH-USDT", "sz": 401}
            )
            no_inst = await http.get("/api/v5/market/books")
            nowhere = await http.get("/api/v5/market/nothing")
    body = spot.json()
    assert (spot.status_code, body["code"], body["msg"]) == (200, "0", "")
    rows = {row["instId"]: row for row in body["data"]}
    assert set(rows) == {"BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "BTC-USDC", "ETH-USDC"}
    assert set(OkxAdapter.spec.default_symbols) <= set(fake.by_symbol)
    btc = rows["BTC-USDT"]
    assert (btc["baseCcy"], btc["quoteCcy"], btc["tickSz"], btc["lotSz"]) == (
        "BTC",
        "USDT",
        "0.1",
        "0.00001",
    )
    assert (btc["instType"], btc["state"], btc["ctVal"]) == ("SPOT", "live", "")
    assert swap.json() == {"code": "0", "data": [], "msg": ""}
    assert (no_type.status_code, no_type.json()["code"]) == (400, "50014")
    assert (bad_type.status_code, bad_type.json()["code"]) == (200, "51000")

    (item,) = book.json()["data"]
    eth = fake.market("ETH/USDT")
    bids, asks = eth.book.snapshot(5)
    assert [level[:2] for level in item["bids"]] == [list(level) for level in bids]
    assert [level[:2] for level in item["asks"]] == [list(level) for level in asks]
    assert all(len(level) == 4 and level[2] == "0" for level in item["bids"] + item["asks"])
    assert (item["seqId"], item["ts"]) == (eth.seq, str(TS))
    assert len(one.json()["data"][0]["bids"]) == 1  # OKX's default sz is 1
    assert unknown.status_code == 200
    assert unknown.json() == {
        "code": "51001",
        "data": [],
        "msg": "Instrument ID, Instrument ID code, or Spread ID doesn't exist.",
    }
    assert too_deep.json()["code"] == "51000"
    assert (no_inst.status_code, no_inst.json()["code"]) == (400, "50014")
    assert (nowhere.status_code, nowhere.json()["msg"]) == (404, "Not Found")


# -- acks, errors, ping -----------------------------------------------------------------------


async def test_acks_and_the_real_error_frames() -> None:
    fake = OkxFake(clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url(PUBLIC_PATH)) as probe:
            subscribe(probe, "trades", "BTC-USDT", "42")
            ack = await receive_json(probe)
            subscribe(probe, "candle1m", "BTC-USDT", None)  # a /business channel on /public
            wrong_url = await receive_json(probe)
            subscribe(probe, "books", "DOGE-EUR", "7")
            unknown = await receive_json(probe)
            probe.send_text("{not json")
            garbled = await receive_json(probe)
            probe.send_text('{"op":"subscribe","argss":[{"channel":"books"}]}')
            invalid = await receive_json(probe)
            probe.send_text(
                '{"op":"unsubscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}'
            )
            unsubscribed = await receive_json(probe)
            conn = fake.connections[0]
    conn_id = ack["connId"]
    assert len(conn_id) == 8
    assert ack == {
        "id": "42",
        "event": "subscribe",
        "arg": {"channel": "trades", "instId": "BTC-USDT"},
        "connId": conn_id,
    }
    assert wrong_url == {
        "event": "error",
        "msg": WRONG_URL.format("candle1m", "BTC-USDT"),
        "code": "60018",
        "connId": conn_id,
    }
    assert unknown["id"] == "7"
    assert (unknown["code"], unknown["msg"]) == ("60018", WRONG_URL.format("books", "DOGE-EUR"))
    assert (garbled["code"], garbled["msg"]) == ("60012", "Invalid request: {not json")
    assert invalid["code"] == "60012"
    assert unsubscribed == {
        "event": "unsubscribe",
        "arg": {"channel": "trades", "instId": "BTC-USDT"},
        "connId": conn_id,
    }
    assert conn.subscriptions == set()
    assert fake.errors_sent == 4


async def test_business_path_serves_candles_only() -> None:
    fake = OkxFake(["BTC/USDT"], clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            async with open_probe(fake.ws_url(BUSINESS_PATH)) as probe:
                subscribe(probe, "books", "BTC-USDT")
                refused = await receive_json(probe)
                subscribe(probe, "candle1m", "BTC-USDT")
                assert (await receive_json(probe))["event"] == "subscribe"
                initial = await receive_json(probe)  # the current bar, pushed at once
                await fake.pump(1)
                candle = await receive_json(probe)
            with pytest.raises(HandshakeRefused) as elsewhere:
                async with open_probe(fake.ws_url("/ws/v5/private")):
                    pass
    assert (refused["code"], refused["msg"]) == ("60018", WRONG_URL.format("books", "BTC-USDT"))
    assert candle["arg"] == initial["arg"] == {"channel": "candle1m", "instId": "BTC-USDT"}
    (flat,) = initial["data"]
    assert flat[1] == flat[2] == flat[3] == flat[4] and flat[5] == "0.00000"  # nothing traded
    (row,) = candle["data"]
    assert len(row) == 9 and row[0] == str(TS - TS % 60_000) and row[8] == "0"
    assert elsewhere.value.status == 404


async def test_text_ping_is_answered_while_stalled() -> None:
    fake = OkxFake(["BTC/USDT"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url(PUBLIC_PATH)) as probe:
            subscribe(probe, "bbo-tbt", "BTC-USDT")
            await receive_json(probe)  # the ack
            first = await receive_json(probe)  # the current best bid/ask, pushed at once
            (bid, _), (ask, _) = fake.market("BTC/USDT").book.best()
            fake.faults.stall = True
            await fake.pump(2)
            probe.send_text("ping")
            assert await probe.receive() == "pong"  # the suppressed quotes never came
            assert fake.connections[0].frames_suppressed == 2
    assert first["arg"] == {"channel": "bbo-tbt", "instId": "BTC-USDT"}
    assert (first["data"][0]["bids"][0][0], first["data"][0]["asks"][0][0]) == (bid, ask)


async def test_a_silent_connection_is_closed_after_30_s(virtual_time) -> None:
    fake = OkxFake(["BTC/USDT"])
    async with open_fake(fake):
        async with open_probe(fake.ws_url(PUBLIC_PATH)) as chatty:
            # A client pinging every 20 s keeps its connection.
            for _ in range(4):
                await trio.sleep(20.0)
                chatty.send_text("ping")
                with trio.fail_after(LIMIT):
                    assert await chatty.receive() == "pong"
        async with open_probe(fake.ws_url(PUBLIC_PATH)) as silent:
            opened = trio.current_time()
            with trio.fail_after(60), pytest.raises(ProbeClosed) as closed:
                await silent.receive()
            quiet = trio.current_time() - opened  # virtual seconds
            assert silent.protocol.close_rcvd is not None
            reason = silent.protocol.close_rcvd.reason
    assert closed.value.code == 4004 and reason == "No data received in 30s."
    assert 30.0 <= quiet <= 32.0
    assert fake.idle_closes == 1


# -- books ------------------------------------------------------------------------------------


class LocalBook:
    """What a client rebuilds from the fake's books frames, checking as it goes."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        (item,) = snapshot["data"]
        assert (snapshot["action"], item["prevSeqId"]) == ("snapshot", -1)
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq = item["seqId"]
        self.apply(item)

    def apply(self, item: dict[str, Any]) -> None:
        for side, levels in ((self.bids, item["bids"]), (self.asks, item["asks"])):
            for price, size, _, orders in levels:
                if size == "0":
                    assert orders == "0"
                    side.pop(price, None)
                else:
                    side[price] = size

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = sorted(self.bids.items(), key=lambda lv: Decimal(lv[0]), reverse=True)[:n]
        asks = sorted(self.asks.items(), key=lambda lv: Decimal(lv[0]))[:n]
        return bids, asks


async def books_session(fake: OkxFake, rounds: int) -> tuple[LocalBook, list[dict[str, Any]]]:
    """Subscribe BTC-USDT books, pump ``rounds`` rounds; the snapshot's book and the updates."""
    async with open_probe(fake.ws_url(PUBLIC_PATH)) as probe:
        subscribe(probe, "books", "BTC-USDT")
        assert (await receive_json(probe))["event"] == "subscribe"
        local = LocalBook(await receive_json(probe))
        conn = fake.connections[-1]
        await fake.pump(rounds)
        updates = [await receive_json(probe) for _ in range(conn.data_frames_sent - 1)]
    return local, updates


async def test_books_chain_and_checksums_match_the_fakes_book() -> None:
    fake = OkxFake(["BTC/USDT"], checksum="crc", depth=30, clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            local, updates = await books_session(fake, 8)
    assert len(updates) >= 6
    for frame in updates:
        (item,) = frame["data"]
        assert frame["action"] == "update"
        assert item["prevSeqId"] == local.seq < item["seqId"]
        local.seq = item["seqId"]
        local.apply(item)
        bids, asks = local.top(25)
        assert item["checksum"] == adapter_checksum(bids, asks) != 0
    assert local.top(400) == fake.market("BTC/USDT").book.snapshot()
    assert local.seq == fake.market("BTC/USDT").seq


async def test_skip_corrupt_and_reset_show_on_the_wire() -> None:
    fake = OkxFake(["BTC/USDT"], checksum="crc", clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            fake.skip_sequence("BTC/USDT")
            skipped, after_skip = await books_session(fake, 2)
            fake.corrupt_checksum("BTC/USDT")
            corrupted, after_corrupt = await books_session(fake, 1)
            fake.reset_sequence("BTC/USDT")
            reset, after_reset = await books_session(fake, 2)
    # skip: one update never sent, so the next one's prevSeqId is ahead of the client's seqId.
    (gap,) = after_skip[0]["data"]
    assert gap["prevSeqId"] > skipped.seq
    # corrupt: chained, but the checksum is not the book's.
    (bad,) = after_corrupt[0]["data"]
    assert bad["prevSeqId"] == corrupted.seq
    corrupted.apply(bad)
    assert bad["checksum"] not in (0, adapter_checksum(*corrupted.top(25)))
    # reset: seqId drops below prevSeqId (which still chains), then the chain goes on from it.
    first, second = (frame["data"][0] for frame in after_reset)
    assert first["prevSeqId"] == reset.seq > first["seqId"]
    assert second["prevSeqId"] == first["seqId"] < second["seqId"]


async def test_corrupt_checksum_is_wrong_and_zero_mode_sends_zero() -> None:
    fake = OkxFake(["BTC/USDT"], clock=fixed_clock)  # production: checksum 0
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            _, updates = await books_session(fake, 2)
            fake.corrupt_checksum("BTC/USDT")
            _, corrupt = await books_session(fake, 1)
    assert [frame["data"][0]["checksum"] for frame in updates] == [0] * len(updates)
    (item,) = corrupt[0]["data"]
    bids, asks = fake.market("BTC/USDT").book.snapshot(25)
    assert item["checksum"] not in (0, okx_checksum(bids, asks))


def test_an_unchanged_book_gets_the_60_s_keepalive_update() -> None:
    fake = OkxFake(["BTC/USDT"], clock=fixed_clock)
    m = fake.market("BTC/USDT")
    nothing = BookUpdate(bids=[], asks=[], trades=[])
    assert fake.book_frames(m, nothing, TS) == []  # no change, no push
    fake.sim.advance(60.0)
    ((topic, frame),) = fake.book_frames(m, nothing, TS)
    body = json.loads(str(frame))
    (item,) = body["data"]
    assert topic == "books:BTC-USDT"
    assert (item["asks"], item["bids"], item["prevSeqId"], item["seqId"]) == ([], [], m.seq, m.seq)


async def test_no_snapshot_mode_sends_an_empty_snapshot_and_rest_carries_seq_id() -> None:
    fake = OkxFake(["BTC/USDT"], ws_snapshot=False, clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url(PUBLIC_PATH)) as probe:
            subscribe(probe, "books", "BTC-USDT")
            await receive_json(probe)
            snapshot = await receive_json(probe)
            await fake.pump(1)
            update = await receive_json(probe)
            async with httpx.AsyncClient(base_url=fake.rest_url) as http:
                rest = await http.get(
                    "/api/v5/market/books", params={"instId": "BTC-USDT", "sz": 400}
                )
    (empty,) = snapshot["data"]
    assert (snapshot["action"], empty["bids"], empty["asks"]) == ("snapshot", [], [])
    (item,) = rest.json()["data"]
    assert update["data"][0]["prevSeqId"] <= item["seqId"] == update["data"][0]["seqId"]


# -- registration and determinism -------------------------------------------------------------


def test_plugin_registers_the_fake() -> None:
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "okx"})
    factory = registry.fakes["okx"]
    assert isinstance(factory, FakeExchangeFactory)
    fake = factory.create()
    assert isinstance(fake, OkxFake)
    assert fake.ws_path == "/ws/v5/public"


def test_rounds_are_deterministic_for_a_seed() -> None:
    def rounds(seed: int) -> list[object]:
        fake = OkxFake(seed=seed, clock=fixed_clock)
        return [fake.next_round() for _ in range(5)]

    assert rounds(3) == rounds(3) != rounds(4)
    topics = {topic.partition(":")[0] for frames in rounds(3) for topic, _ in frames}
    assert topics == {"bbo-tbt", "books", "trades", "candle1m"}


def test_demo_construction_shares_the_simulator() -> None:
    simulator = MarketSimulator(seed=1)
    fake = OkxFake(simulator=simulator, offset_bps=-1.0, lag=0.1, seed=5)
    assert fake.sim is simulator
    assert set(OkxAdapter.spec.default_symbols) <= set(fake.by_symbol)
    assert fake.market("BTC/USDT").listing.tick == "0.1"


def test_the_finished_candle_goes_out_with_confirm_1() -> None:
    now = [TS - TS % 60_000 + 59_000]
    fake = OkxFake(["BTC/USDT"], clock=lambda: now[0])

    def candle_rows() -> list[list[str]]:
        return [
            json.loads(str(frame))["data"][0]
            for topic, frame in fake.next_round()
            if topic == "candle1m:BTC-USDT"
        ]

    assert [row[8] for row in candle_rows()] == ["0"]  # the first round pushes the live bar
    now[0] += 2_000  # the minute turns: the finished bar goes out at once, confirmed
    (closed,) = candle_rows()
    start = TS - TS % 60_000
    assert (closed[0], closed[8]) == (str(start), "1")
    later = [row for _ in range(10) for row in candle_rows()]  # about one push per second
    assert [(row[0], row[8]) for row in later] == [(str(start + 60_000), "0")]
    assert later[0][1] == closed[4]  # the new bar opens at the old close
