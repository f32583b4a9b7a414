"""The Coinbase Advanced Trade fake checked directly: REST shape, acks, errors, heartbeats,
per-connection sequence numbers, and the book a client rebuilds from its frames."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from arbd.exchange.adapter import AdapterSettings, HttpResponse
from arbd.model import CHANNELS
from arbd.plugins import load_plugins
from arbd.testing.client import HandshakeRefused, ProbeClient, ProbeClosed, open_probe
from arbd.testing.fake import FakeConnection, FakeExchangeFactory, open_fake
from arbd_coinbase.adapter import CoinbaseAdapter
from arbd_coinbase.fake import CoinbaseFake, num, rfc3339

LIMIT = 10  # seconds: every wait in this file is bounded by this
TS = 1_775_571_901_230  # 2026-04-07T14:25:01.23Z


def fixed_clock() -> int:
    return TS


def sub(channel: str, *products: str, op: str = "subscribe") -> str:
    body: dict[str, Any] = {"type": op, "channel": channel}
    if products:
        body["product_ids"] = list(products)
    return json.dumps(body)


async def recv(probe: ProbeClient) -> dict[str, Any]:
    message = await probe.receive()
    assert isinstance(message, str)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


def book_of(fake: CoinbaseFake, symbol: str) -> dict[str, list[tuple[str, str]]]:
    """The fake's own book as Coinbase writes it, best first."""
    bids, asks = fake.market(symbol).book.snapshot()
    return {
        "bid": [(num(p), num(s)) for p, s in bids],
        "offer": [(num(p), num(s)) for p, s in asks],
    }


async def catch_up(probe: ProbeClient, fake: CoinbaseFake, conn: FakeConnection) -> list[Any]:
    """Every message up to the last one the fake numbered on ``conn``."""
    messages = []
    last = fake.sequence(conn) - 1
    while not messages or messages[-1]["sequence_num"] < last:
        messages.append(await recv(probe))
    return messages


class Rebuilt:
    """A client-side level2 book: snapshot, then absolute updates ("0" removes)."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[Decimal, tuple[str, str]]] = {"bid": {}, "offer": {}}

    def apply(self, event: dict[str, Any]) -> None:
        if event["type"] == "snapshot":
            self.sides = {"bid": {}, "offer": {}}
        for u in event["updates"]:
            side = self.sides[u["side"]]
            if Decimal(u["new_quantity"]) == 0:
                assert u["new_quantity"] == "0"  # Coinbase writes a removal as "0"
                side.pop(Decimal(u["price_level"]), None)
            else:
                side[Decimal(u["price_level"])] = (u["price_level"], u["new_quantity"])

    def levels(self) -> dict[str, list[tuple[str, str]]]:
        bids = [self.sides["bid"][p] for p in sorted(self.sides["bid"], reverse=True)]
        asks = [self.sides["offer"][p] for p in sorted(self.sides["offer"])]
        return {"bid": bids, "offer": asks}


async def test_products_list_has_the_real_shape_and_loads_into_the_adapter() -> None:
    fake = CoinbaseFake(["BTC/USD", "ETH/USDT", "USDT/USD"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake), httpx.AsyncClient(base_url=fake.rest_url) as http:
            spot = await http.get("/api/v3/brokerage/market/products?product_type=SPOT")
            future = await http.get("/api/v3/brokerage/market/products?product_type=FUTURE")
            one = await http.get("/api/v3/brokerage/market/products?product_ids=ETH-USDT")
            bad = await http.get("/api/v3/brokerage/market/products?product_type=SPOTS")
            other = await http.get("/api/v3/brokerage/products")
    body = spot.json()
    ids = [p["product_id"] for p in body["products"]]
    assert ids == ["BTC-USD", "ETH-USDT", "USDT-USD", "BTC-USDC"]  # USDT-USDC is no alias
    assert (body["num_products"], body["pagination"]) == (4, None)
    btc, usdc = body["products"][0], body["products"][3]
    assert {k: btc[k] for k in ("base_currency_id", "quote_currency_id", "status")} == {
        "base_currency_id": "BTC",
        "quote_currency_id": "USD",
        "status": "online",
    }
    assert (btc["price_increment"], btc["base_increment"], btc["product_type"]) == (
        "0.01",
        "0.00001",
        "SPOT",
    )
    assert (btc["alias"], btc["alias_to"]) == ("", ["BTC-USDC"])
    assert (usdc["alias"], usdc["quote_currency_id"]) == ("BTC-USD", "USDC")
    assert future.json()["products"] == []
    assert [p["product_id"] for p in one.json()["products"]] == ["ETH-USDT"]
    assert bad.status_code == 400
    assert bad.json()["error"] == "INVALID_ARGUMENT"
    assert set(bad.json()) == {"error", "error_details", "message"}
    assert other.status_code == 404

    adapter = CoinbaseAdapter(
        AdapterSettings(
            ws_url="ws://127.0.0.1:1/",
            rest_url="http://127.0.0.1:1",
            symbols=("BTC/USD", "BTC/USDC"),
            channels=CHANNELS,
            book_depth=10,
        )
    )
    (request,) = adapter.instrument_requests()
    assert request.url.endswith("/api/v3/brokerage/market/products?product_type=SPOT")
    adapter.load_instruments(
        [HttpResponse(request=request, status=200, body=spot.content, received_ns=0)]
    )
    assert adapter.stream_id("BTC/USDC") == "BTC-USD"
    assert adapter.instruments["BTC/USD"].tick_size == "0.01"


async def test_acks_snapshots_and_updates_share_one_counter_per_connection() -> None:
    # Real time here: no heartbeat may interleave (they are checked on virtual time below).
    fake = CoinbaseFake(["BTC/USD", "ETH/USD"], clock=fixed_clock, depth=5, heartbeat_interval=None)
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/")) as probe:
            probe.send_text(sub("heartbeats"))
            probe.send_text(sub("level2", "BTC-USD", "ETH-USD"))
            probe.send_text(sub("ticker", "BTC-USD"))
            first = [await recv(probe) for _ in range(6)]
            await fake.pump(3)
            rounds = await catch_up(probe, fake, fake.connections[0])
            async with open_probe(fake.ws_url("/")) as other:
                other.send_text(sub("market_trades", "ETH-USD"))
                second = [await recv(other) for _ in range(2)]
    assert [(m["channel"], m["sequence_num"]) for m in first] == [
        ("subscriptions", 0),
        ("subscriptions", 1),
        ("l2_data", 2),
        ("l2_data", 3),
        ("subscriptions", 4),
        ("ticker", 5),
    ]
    assert first[0]["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"]}}]
    assert first[4]["events"][0]["subscriptions"] == {
        "heartbeats": ["heartbeats"],
        "level2": ["BTC-USD", "ETH-USD"],
        "ticker": ["BTC-USD"],
    }
    assert set(first[0]) == {"channel", "client_id", "timestamp", "sequence_num", "events"}
    assert first[0]["timestamp"] == rfc3339(TS) == "2026-04-07T14:25:01.23Z"
    snapshot = first[2]["events"][0]
    assert (snapshot["type"], snapshot["product_id"]) == ("snapshot", "BTC-USD")
    assert len(snapshot["updates"]) == 10
    ticker = first[5]["events"][0]["tickers"][0]
    assert set(ticker) >= {"best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity"}
    # Rounds: consecutive numbers across l2_data and ticker, only what was subscribed.
    assert [m["sequence_num"] for m in rounds] == list(range(6, 6 + len(rounds)))
    assert {m["channel"] for m in rounds} <= {"l2_data", "ticker"}
    assert {e["product_id"] for m in rounds if m["channel"] == "l2_data" for e in m["events"]} == {
        "BTC-USD",
        "ETH-USD",
    }
    assert all(e["type"] == "update" for m in rounds for e in m["events"])
    # Another connection has its own counter, from 0.
    assert [(m["channel"], m["sequence_num"]) for m in second] == [
        ("subscriptions", 0),
        ("market_trades", 1),
    ]
    assert second[1]["events"][0]["type"] == "snapshot"


async def test_the_book_a_client_rebuilds_equals_the_fakes_book() -> None:
    fake = CoinbaseFake(["BTC/USD"], clock=fixed_clock, depth=20)
    book = Rebuilt()
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/")) as probe:
            probe.send_text(sub("level2", "BTC-USD"))
            assert (await recv(probe))["channel"] == "subscriptions"
            snapshot = await recv(probe)
            book.apply(snapshot["events"][0])
            assert book.levels() == book_of(fake, "BTC/USD")
            conn = fake.connections[0]
            for n in range(26):
                # One round at a time, read before the next: a client that does not read
                # would leave the fake blocked on a full socket buffer.
                if n == 20:
                    assert fake.send_crossed_book("BTC/USD") == 1
                await fake.pump(1)
                for message in await catch_up(probe, fake, conn):
                    for event in message["events"]:
                        book.apply(event)
    assert book.levels() == book_of(fake, "BTC/USD")
    bids, asks = book.levels()["bid"], book.levels()["offer"]
    assert Decimal(bids[0][0]) < Decimal(asks[0][0])  # the crossing level was removed again


async def test_bad_subscribes_get_the_error_frame_and_change_nothing() -> None:
    fake = CoinbaseFake(["BTC/USD", "ETH/USD"])
    fake.reject("candles", "ETH/USD")
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/")) as probe:
            probe.send_text(sub("ticker", "BTC-USD", "FOO-BAR"))
            probe.send_text(sub("ticker_batch", "BTC-USD"))
            probe.send_text(sub("ticker"))
            probe.send_text(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"]}))
            probe.send_text("{not json")
            probe.send_text(sub("candles", "BTC-USD", "ETH-USD"))
            errors = [await recv(probe) for _ in range(6)]
            conn = fake.connections[0]
            subscriptions = set(conn.subscriptions)
            sequence = fake.sequence(conn)
    assert all(set(e) == {"type", "message"} and e["type"] == "error" for e in errors)
    assert errors[0]["message"] == "Failed to subscribe: FOO-BAR is not a valid product"
    assert "ticker_batch" in errors[1]["message"]
    assert errors[5]["message"] == "Failed to subscribe: ETH-USD is not a valid product"
    assert subscriptions == set()
    assert sequence == 0  # error frames carry no sequence_num and spend none


async def test_unsubscribe_is_acknowledged_with_what_remains() -> None:
    fake = CoinbaseFake(["BTC/USD", "ETH/USD"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/")) as probe:
            probe.send_text(sub("market_trades", "BTC-USD", "ETH-USD"))
            await recv(probe)  # ack
            await recv(probe)  # BTC-USD snapshot
            await recv(probe)  # ETH-USD snapshot
            probe.send_text(sub("market_trades", "BTC-USD", op="unsubscribe"))
            partial = await recv(probe)
            probe.send_text(sub("market_trades", op="unsubscribe"))
            entire = await recv(probe)
            conn = fake.connections[0]
    assert partial["events"] == [{"subscriptions": {"market_trades": ["ETH-USD"]}}]
    assert entire["events"] == [{"subscriptions": {}}]
    assert conn.subscriptions == set()


async def test_usdc_products_are_served_by_the_usd_book() -> None:
    fake = CoinbaseFake(["BTC/USD"], clock=fixed_clock)
    with trio.fail_after(LIMIT):
        async with open_fake(fake), open_probe(fake.ws_url("/")) as probe:
            probe.send_text(sub("level2", "BTC-USDC"))
            ack = await recv(probe)
            snapshot = await recv(probe)
    assert ack["events"][0]["subscriptions"] == {"level2": ["BTC-USDC"]}
    assert snapshot["events"][0]["product_id"] == "BTC-USD"


async def test_heartbeats_every_second_keep_flowing_while_data_is_stalled(
    virtual_time: trio.testing.MockClock,
) -> None:
    fake = CoinbaseFake(["BTC/USD"], clock=fixed_clock)
    async with open_fake(fake), open_probe(fake.ws_url("/")) as probe:
        with trio.fail_after(LIMIT):
            probe.send_text(sub("heartbeats"))
            probe.send_text(sub("level2", "BTC-USD"))
            first = [await recv(probe) for _ in range(3)]  # ack, ack, snapshot
            start = trio.current_time()
            beats = [await recv(probe) for _ in range(2)]
            assert trio.current_time() - start >= 2.0
            conn = fake.connections[0]
            fake.faults.stall = True
            await fake.pump(3)
            assert conn.frames_suppressed == 3
            stalled = await recv(probe)  # a heartbeat: stalled data spent no numbers
            fake.faults.stall = False
            await fake.pump(1)
            resumed = await recv(probe)
            fake.faults.ignore_pings = True  # this exchange's "pings" are the heartbeats
            quiet_from = fake.sequence(conn)
            await trio.sleep(3)
            assert fake.sequence(conn) == quiet_from
    assert [m["sequence_num"] for m in first] == [0, 1, 2]
    assert [b["channel"] for b in [*beats, stalled]] == ["heartbeats"] * 3
    assert [b["events"][0]["heartbeat_counter"] for b in [*beats, stalled]] == ["1", "2", "3"]
    assert [b["sequence_num"] for b in [*beats, stalled]] == [3, 4, 5]
    assert beats[0]["events"][0]["current_time"].startswith("2026-04-07 14:25:01.23 +0000 UTC m=+")
    assert (resumed["channel"], resumed["sequence_num"]) == ("l2_data", 6)


async def test_a_connection_that_never_subscribes_is_closed_after_five_seconds(
    virtual_time: trio.testing.MockClock,
) -> None:
    fake = CoinbaseFake(["BTC/USD"])
    async with open_fake(fake), open_probe(fake.ws_url("/")) as probe:
        start = trio.current_time()
        with trio.fail_after(LIMIT), pytest.raises(ProbeClosed) as closed:
            await probe.receive()
    assert closed.value.code == 1000
    assert trio.current_time() - start >= 5.0


async def test_skip_sequence_makes_the_counter_jump_on_every_connection() -> None:
    fake = CoinbaseFake(["BTC/USD", "ETH/USD"], clock=fixed_clock, heartbeat_interval=None)
    with trio.fail_after(LIMIT):
        async with (
            open_fake(fake),
            open_probe(fake.ws_url("/")) as a,
            open_probe(fake.ws_url("/")) as b,
        ):
            for probe in (a, b):
                probe.send_text(sub("level2", "BTC-USD", "ETH-USD"))
                for _ in range(3):
                    await recv(probe)
            fake.skip_sequence("ETH/USD")
            await fake.pump(1)
            got = {name: [await recv(p) for _ in range(2)] for name, p in (("a", a), ("b", b))}
    for messages in got.values():
        numbered = [(m["events"][0]["product_id"], m["sequence_num"]) for m in messages]
        assert numbered == [("BTC-USD", 3), ("ETH-USD", 5)]  # 4 was lost on the way


async def test_websocket_only_on_the_bare_path_and_refusals_carry_retry_after() -> None:
    fake = CoinbaseFake(["BTC/USD"])
    with trio.fail_after(LIMIT):
        async with open_fake(fake):
            with pytest.raises(HandshakeRefused) as wrong_path:
                async with open_probe(fake.ws_url("/ws")):
                    pass
            fake.faults.refuse_status, fake.faults.retry_after = 429, 2
            with pytest.raises(HandshakeRefused) as refused:
                async with open_probe(fake.adapter_ws_url()):
                    pass
    assert wrong_path.value.status == 404
    assert (refused.value.status, refused.value.headers["Retry-After"]) == (429, "2")


def test_plugin_registers_the_fake_and_defaults_cover_the_adapter() -> None:
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "coinbase"})
    factory = registry.fakes["coinbase"]
    assert isinstance(factory, FakeExchangeFactory)
    fake = factory.create()
    assert isinstance(fake, CoinbaseFake)
    assert set(CoinbaseAdapter.spec.default_symbols) <= set(fake.by_symbol)
    assert (fake.ws_path, fake.websocket_paths) == ("/", ("/",))


def test_rounds_are_deterministic_for_a_seed() -> None:
    def run(seed: int) -> tuple[list[list[str]], dict[str, list[tuple[str, str]]]]:
        fake = CoinbaseFake(seed=seed, clock=fixed_clock)
        topics = [[topic for topic, _ in fake.next_round()] for _ in range(5)]
        return topics, book_of(fake, "BTC/USD")

    assert run(3) == run(3)
    assert run(3)[1] != run(4)[1]
    assert {"level2:BTC-USD", "candles:ETH-USD"} <= {t for r in run(3)[0] for t in r}
