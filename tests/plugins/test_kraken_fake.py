"""The Kraken fake checked directly with a probe client and httpx: REST shape, acks and errors,
ping/pong and heartbeats, and a book that a client rebuilding it by Kraken's rules (apply,
delete zeros, truncate to the depth) can checksum on every update."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import trio

from arbd.exchange.adapter import AdapterSettings, HttpResponse
from arbd.model import CHANNELS
from arbd.testing.client import ProbeClient, open_probe
from arbd.testing.fake import FakeConnection, FakeExchangeFactory, open_fake
from arbd_kraken import plugin
from arbd_kraken.adapter import KrakenAdapter
from arbd_kraken.fake import KrakenFake, checksum

LIMIT = 10  # seconds (virtual): every wait in this file is bounded by this
TS = 1_790_000_000_000
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def fixed_clock() -> int:
    return TS


def decode(text: str | bytes) -> Any:
    """JSON with every number kept as its exact text (what a checksum needs)."""
    return json.loads(text, parse_float=str, parse_int=str)


@asynccontextmanager
async def probe_of(fake: KrakenFake) -> AsyncIterator[ProbeClient]:
    async with open_probe(fake.ws_url("/v2")) as probe:
        status = decode(await probe.receive())
        assert status["channel"] == "status" and status["data"][0]["system"] == "online"
        yield probe


async def request(probe: ProbeClient, body: dict[str, Any], replies: int = 1) -> list[Any]:
    probe.send_text(json.dumps(body))
    return [decode(await probe.receive()) for _ in range(replies)]


async def drain(probe: ProbeClient, conn: FakeConnection, seen: list[str]) -> list[Any]:
    """Every data frame ``conn`` sent that the probe has not read yet (heartbeats skipped);
    their raw texts are appended to ``seen``."""
    frames = []
    while len(seen) < conn.data_frames_sent:
        text = await probe.receive()
        assert isinstance(text, str)
        if text != '{"channel":"heartbeat"}':
            seen.append(text)
            frames.append(decode(text))
    return frames


def subscribe(channel: str, symbols: list[str], req_id: int, **params: Any) -> dict[str, Any]:
    return {
        "method": "subscribe",
        "params": {"channel": channel, "symbol": symbols, **params},
        "req_id": req_id,
    }


# -- a client's book, written from the checksum guide (not the adapter's code) -----------------


def apply(book: dict[str, dict[str, str]], entry: dict[str, Any], depth: int) -> None:
    for side in ("bids", "asks"):
        levels = book[side]
        for level in entry[side]:
            if Decimal(level["qty"]) == 0:
                levels.pop(level["price"], None)
            else:
                levels[level["price"]] = level["qty"]
        keep = sorted(levels, key=Decimal, reverse=side == "bids")[:depth]
        book[side] = {price: levels[price] for price in keep}


def crc(book: dict[str, dict[str, str]]) -> int:
    def digits(text: str) -> str:
        return text.replace(".", "").lstrip("0")

    asks = sorted(book["asks"], key=Decimal)[:10]
    bids = sorted(book["bids"], key=Decimal, reverse=True)[:10]
    text = "".join(digits(p) + digits(book["asks"][p]) for p in asks)
    text += "".join(digits(p) + digits(book["bids"][p]) for p in bids)
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


def fake_top(fake: KrakenFake, symbol: str, depth: int) -> dict[str, dict[str, str]]:
    bids, asks = fake.market(symbol).book.snapshot(depth)

    def pad(qty: str) -> str:  # Kraken writes quantities with lot_decimals (8)
        whole, _, frac = qty.partition(".")
        return f"{whole}.{frac.ljust(8, '0')}"

    return {"bids": {p: pad(q) for p, q in bids}, "asks": {p: pad(q) for p, q in asks}}


# -- tests --------------------------------------------------------------------------------------


def test_checksum_matches_the_guide_example() -> None:
    bids = "45283.5/0.10000000 45283.4/1.54582015 45282.1/0.10000000 45281.0/0.10000000 "
    bids += "45280.3/1.54592586 45279.0/0.07990000 45277.6/0.03310103 45277.5/0.30000000 "
    bids += "45277.3/1.54602737 45276.6/0.15445238"
    asks = "45285.2/0.00100000 45286.4/1.54571953 45286.6/1.54571109 45289.6/1.54560911 "
    asks += "45290.2/0.15890660 45291.8/1.54553491 45294.7/0.04454749 45296.1/0.35380000 "
    asks += "45297.5/0.09945542 45299.5/0.18772827"

    def levels(text: str) -> list[tuple[str, str]]:
        return [(p, q) for p, _, q in (item.partition("/") for item in text.split())]

    assert checksum(levels(asks), levels(bids)) == 3310070434


def test_plugin_registers_the_fake_and_defaults_include_the_adapter_symbols() -> None:
    assert plugin.arbd_fake_exchanges() == [FakeExchangeFactory("kraken", KrakenFake)]
    fake = KrakenFake()
    assert set(KrakenAdapter.spec.default_symbols) <= set(fake.by_symbol)
    assert KrakenFake.ws_path == "/v2" and KrakenFake.websocket_paths == ("/v2",)


async def test_asset_pairs_in_krakens_shape_load_into_the_adapter(virtual_time) -> None:
    async with open_fake(KrakenFake()) as fake, httpx.AsyncClient() as http:
        url = f"{fake.rest_url}/0/public/AssetPairs"
        with trio.fail_after(LIMIT):
            response = await http.get(url)
            assert response.status_code == 200
            body = response.json()
            assert body["error"] == []
            btc = body["result"]["XXBTZUSD"]
            assert (btc["altname"], btc["wsname"], btc["base"], btc["quote"]) == (
                "XBTUSD",
                "XBT/USD",
                "XXBT",
                "ZUSD",
            )
            assert (btc["pair_decimals"], btc["lot_decimals"], btc["tick_size"]) == (1, 8, "0.1")
            assert body["result"]["XDGUSD"]["wsname"] == "XDG/USD"
            assert body["result"]["USDTZUSD"]["pair_decimals"] == 5

            adapter = KrakenAdapter(
                AdapterSettings(
                    ws_url=fake.adapter_ws_url(),
                    rest_url=fake.rest_url,
                    symbols=("BTC/USD", "DOGE/USD"),
                    channels=CHANNELS,
                    book_depth=10,
                )
            )
            (req,) = adapter.instrument_requests()
            answer = await http.get(req.url)
            adapter.load_instruments(
                [HttpResponse(request=req, status=200, body=answer.content, received_ns=0)]
            )
            assert adapter.instruments["BTC/USD"].price_precision == 1
            assert adapter.instruments["DOGE/USD"].size_precision == 8
            assert adapter.rest_names["BTC/USD"] == "XXBTZUSD"

            some = (await http.get(url, params={"pair": "XBTUSD,ETHUSD"})).json()
            assert list(some["result"]) == ["XXBTZUSD", "XETHZUSD"]
            lev = (await http.get(url, params={"pair": "XXBTZUSD", "info": "leverage"})).json()
            assert set(lev["result"]["XXBTZUSD"]) == {"leverage_buy", "leverage_sell"}
            unknown = await http.get(url, params={"pair": "NOPEUSD"})
            assert unknown.status_code == 200
            assert unknown.json() == {"error": ["EQuery:Unknown asset pair"]}
            missing = await http.get(f"{fake.rest_url}/0/public/Nope")
            assert missing.status_code == 404
            assert missing.json() == {"error": ["EGeneral:Unknown method"]}


async def test_ping_pong_and_unknown_methods(virtual_time) -> None:
    async with open_fake(KrakenFake(clock=fixed_clock)) as fake, probe_of(fake) as probe:
        with trio.fail_after(LIMIT):
            (pong,) = await request(probe, {"method": "ping", "req_id": 101})
            assert list(pong) == ["method", "req_id", "time_in", "time_out"]
            assert pong["method"] == "pong" and pong["req_id"] == "101"
            assert ISO.match(pong["time_in"]) and ISO.match(pong["time_out"])
            (bad,) = await request(probe, {"method": "frobnicate", "req_id": 7})
            assert bad["error"] == "Unsupported event" and bad["success"] is False
            fake.faults.stall = True  # pongs are control replies: a stall does not stop them
            (pong,) = await request(probe, {"method": "ping", "req_id": 102})
            assert pong["method"] == "pong"


async def test_acks_per_symbol_and_the_real_error_frames(virtual_time) -> None:
    async with open_fake(KrakenFake(clock=fixed_clock)) as fake, probe_of(fake) as probe:
        fake.reject("ETH/USD")
        with trio.fail_after(LIMIT):
            trade = subscribe("trade", ["BTC/USD", "XBT/USD", "ETH/USD"], 1)
            ok, unknown, rejected = await request(probe, trade, 3)
            assert list(ok) == ["method", "req_id", "result", "success", "time_in", "time_out"]
            assert ok["result"] == {"channel": "trade", "snapshot": False, "symbol": "BTC/USD"}
            assert unknown["error"] == "Currency pair not supported XBT/USD"
            assert unknown["symbol"] == "XBT/USD" and unknown["success"] is False
            assert rejected["error"] == "Currency pair not supported ETH/USD"

            (again,) = await request(probe, subscribe("trade", ["BTC/USD"], 2))
            assert again["error"] == "Already subscribed" and again["symbol"] == "BTC/USD"
            ohlc, _snap = await request(probe, subscribe("ohlc", ["BTC/USD"], 3, interval=1), 2)
            assert ohlc["result"]["warnings"] == ["timestamp is deprecated, use interval_begin"]
            (depth,) = await request(probe, subscribe("book", ["BTC/USD"], 4, depth=7))
            assert depth["error"].startswith("EGeneral:Invalid arguments") and "symbol" not in depth
            (private,) = await request(probe, subscribe("executions", ["BTC/USD"], 5))
            assert private["error"].startswith("Private data and trading are unavailable")

            unsub = {"method": "unsubscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"]}}
            (done,) = await request(probe, unsub)
            assert done["method"] == "unsubscribe" and done["success"] is True
            (gone,) = await request(probe, unsub)
            assert gone["error"] == "Subscription Not Found"


async def test_heartbeats_only_once_subscribed_and_only_when_quiet(virtual_time) -> None:
    async with open_fake(KrakenFake()) as fake, probe_of(fake) as probe:
        conn = await fake.wait_connected()
        with trio.fail_after(LIMIT):
            await trio.sleep(3.0)
            assert conn.received == []  # nothing subscribed: no heartbeat was sent
            await request(probe, subscribe("trade", ["BTC/USD"], 1))
            started = trio.current_time()
            assert decode(await probe.receive()) == {"channel": "heartbeat"}
            assert trio.current_time() - started <= 2.0


async def test_book_rebuilt_by_the_rules_checksums_on_every_update(virtual_time) -> None:
    fake = KrakenFake(["BTC/USD", "DOGE/USD"], seed=5, clock=fixed_clock)
    async with open_fake(fake), probe_of(fake) as probe:
        conn = await fake.wait_connected()
        books: dict[str, dict[str, dict[str, str]]] = {
            s: {"bids": {}, "asks": {}} for s in ("BTC/USD", "DOGE/USD")
        }
        seen: list[str] = []
        with trio.fail_after(LIMIT):
            probe.send_text(json.dumps(subscribe("book", ["BTC/USD", "DOGE/USD"], 1, depth=10)))
            assert decode(await probe.receive())["success"] is True  # the ack, then its snapshot
            first = await probe.receive()
            assert isinstance(first, str)
            seen.append(first)
            frames = [decode(first)]
            await probe.receive()  # the second symbol's ack
            for _ in range(30):
                frames += await drain(probe, conn, seen)
                for frame in frames:
                    entry = frame["data"][0]
                    apply(books[entry["symbol"]], entry, 10)
                    assert crc(books[entry["symbol"]]) == int(entry["checksum"])
                await fake.pump(1)
                frames = []
            frames += await drain(probe, conn, seen)
            for frame in frames:
                apply(books[frame["data"][0]["symbol"]], frame["data"][0], 10)
        for symbol in ("BTC/USD", "DOGE/USD"):
            assert books[symbol] == fake_top(fake, symbol, 10)
        # Numbers at the pair's precision: BTC/USD prices 1 decimal, DOGE/USD 7, quantities 8.
        assert re.search(r'"BTC/USD","bids":\[\{"price":\d+\.\d,"qty":\d+\.\d{8}\}', seen[0])
        doge = next(text for text in seen if "DOGE/USD" in text)
        assert re.search(r'"price":0\.\d{7},"qty":\d+\.0{8}\}', doge)


async def test_lost_and_corrupted_updates_break_the_checksum(virtual_time) -> None:
    fake = KrakenFake(["BTC/USD"], seed=2, clock=fixed_clock)
    async with open_fake(fake), probe_of(fake) as probe:
        with trio.fail_after(LIMIT):
            _ack, snap = await request(probe, subscribe("book", ["BTC/USD"], 1, depth=25), 2)
            book: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
            apply(book, snap["data"][0], 25)

            async def next_update() -> tuple[dict[str, Any], bool]:
                await fake.pump(1)
                while (frame := decode(await probe.receive())).get("channel") == "heartbeat":
                    pass
                entry = frame["data"][0]
                apply(book, entry, 25)
                return entry, crc(book) == int(entry["checksum"])

            assert (await next_update())[1]
            fake.corrupt_checksum("BTC/USD")
            assert not (await next_update())[1]  # the book is right, the checksum is not
            assert book == fake_top(fake, "BTC/USD", 25)
            fake.skip_sequence("BTC/USD")
            sent = fake.connections[0].data_frames_sent
            await fake.pump(1)
            assert fake.connections[0].data_frames_sent == sent  # this update is lost
            assert not (await next_update())[1]  # the one after it: the book is wrong


async def test_a_crossed_update_carries_the_checksum_of_the_crossed_book(virtual_time) -> None:
    fake = KrakenFake(["BTC/USD"], seed=2, clock=fixed_clock)
    async with open_fake(fake), probe_of(fake) as probe:
        with trio.fail_after(LIMIT):
            _ack, snap = await request(probe, subscribe("book", ["BTC/USD"], 1), 2)
            book: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
            apply(book, snap["data"][0], 10)
            assert fake.send_crossed_book("BTC/USD") == 1
            entry = decode(await probe.receive())["data"][0]
            apply(book, entry, 10)
            assert crc(book) == int(entry["checksum"])
            assert max(map(Decimal, book["bids"])) > min(map(Decimal, book["asks"]))


async def test_ticker_trade_and_ohlc_payloads(virtual_time) -> None:
    fake = KrakenFake(["BTC/USD"], seed=1, clock=fixed_clock, trim_numbers=True)
    async with open_fake(fake), probe_of(fake) as probe:
        conn = await fake.wait_connected()
        with trio.fail_after(LIMIT):
            _ack, snap = await request(probe, subscribe("ticker", ["BTC/USD"], 1), 2)
            item = snap["data"][0]
            assert snap["type"] == "snapshot" and set(item) >= {"bid", "bid_qty", "ask", "ask_qty"}
            assert not item["bid_qty"].endswith("00")  # trimmed: 0.0123 not 0.01230000
            await request(probe, subscribe("trade", ["BTC/USD"], 2))
            await request(probe, subscribe("ohlc", ["BTC/USD"], 3, interval=1), 2)
            seen = ["ticker snapshot", "ohlc snapshot"]
            frames: list[Any] = []
            while not any(f["channel"] == "trade" for f in frames):
                await fake.pump(1)
                frames += await drain(probe, conn, seen)
        trade = next(f for f in frames if f["channel"] == "trade")["data"][0]
        assert trade["side"] in ("buy", "sell") and int(trade["trade_id"]) > 100_000
        assert ISO.match(trade["timestamp"])
        bar = next(f for f in frames if f["channel"] == "ohlc")
        assert bar["timestamp"].endswith("000000Z") and len(bar["timestamp"]) == 30
        candle = bar["data"][0]
        assert candle["interval"] == "1" and candle["interval_begin"].endswith(":00.000000000Z")
        assert int(candle["trades"]) >= 1
