"""How arbctl renders replies and events: plain dicts in, lines out."""

from __future__ import annotations

import json

import msgspec

from arbd.cli.ctlview import (
    TopView,
    age,
    duration,
    event_line,
    opportunity_lines,
    status_lines,
    table,
)
from arbd.model import Book, Candle, FeedStatus, Quote, Trade
from arbd.status import DaemonStatus, ExchangeStatus


def wire(struct: msgspec.Struct) -> dict:
    return json.loads(msgspec.json.encode(struct))


def test_durations_and_ages():
    assert duration(45.9) == "45s"
    assert duration(185) == "3m 05s"
    assert duration(7384) == "2h 03m 04s"
    assert duration(3 * 86400 + 7260) == "3d 02h 01m"
    assert age(None) == "-"
    assert age(0.26) == "0.3s"
    assert age(75) == "1m 15s"


def test_table_aligns_columns_and_right_aligns_numbers():
    assert table([["A", "NUM"], ["long", "5"], ["x", "100"]], right={1}) == [
        "A     NUM",
        "long    5",
        "x     100",
    ]
    assert table([]) == []


def status(**over) -> dict:
    ex = ExchangeStatus(
        exchange="kraken",
        state="failed",
        connections=1,
        connections_live=0,
        symbols=["BTC/USD"],
        messages=0,
        messages_per_s=0.0,
        last_message_age=None,
        reconnects=5,
        books_valid=0,
        books_invalid=1,
        error="attempts exhausted",
    )
    fields = {
        "version": "1.2.3",
        "pid": 42,
        "started_at": 0.0,
        "uptime": 90061.0,
        "exchanges": [ex],
        "clients": 3,
        "opportunities_open": 0,
        "config_path": "/etc/arbd.toml",
    }
    fields.update(over)
    return wire(DaemonStatus(**fields))


def test_status_lines_show_errors_of_failed_exchanges_below_the_table():
    lines = status_lines(status())
    assert lines[0] == "arbd 1.2.3  pid 42  up 1d 01h 01m  config /etc/arbd.toml"
    assert lines[1] == "clients 3  open opportunities 0"
    assert lines[4].split() == ["kraken", "failed", "0/1", "0.0", "-", "5", "0", "1", "1"]
    assert lines[5] == "kraken: attempts exhausted"
    assert status_lines(status(exchanges=[]))[-1] == "no exchanges configured"


BASE = {"exchange": "binance", "symbol": "BTC/USDT", "timestamp": 1_700_000_000_123}
TIMES = {"received_ns": 1_700_000_000_125_431_000}


def test_one_line_per_event_type():
    lines = [
        event_line(wire(Quote(**BASE, **TIMES, bid="1", ask="2", bid_size="3", ask_size="4"))),
        event_line(wire(Trade(**BASE, **TIMES, price="5", size="6", side=None, id=None))),
        event_line(wire(Book(**BASE, **TIMES, bids=[("1", "2")], asks=[], depth=20))),
        event_line(
            wire(
                Candle(
                    **BASE,
                    **TIMES,
                    interval="1m",
                    start=0,
                    open="1",
                    high="2",
                    low="0.5",
                    close="1.5",
                    volume="9",
                    closed=True,
                )
            )
        ),
        event_line(
            wire(
                FeedStatus(
                    **BASE,
                    scope="book",
                    state="invalid",
                    connection="binance-1",
                    channel="book",
                    reason="sequence gap",
                )
            )
        ),
    ]
    assert all("\n" not in line for line in lines)
    assert [line.split()[1] for line in lines] == ["price", "trade", "book", "candle", "status"]
    assert lines[0].endswith("bid 1 x 3  ask 2 x 4")
    assert lines[1].endswith("? 6 @ 5")
    assert lines[2].endswith("1x0 levels  best 1 / -")
    assert lines[3].endswith("1m o 1 h 2 l 0.5 c 1.5 v 9 (closed)")
    assert lines[4].endswith("book binance-1: invalid (sequence gap)")
    assert event_line({"type": "lag", "dropped": 7}).split()[1:3] == ["lag", "7"]


def opp(oid: str, net: float, event: str = "open", **over) -> dict:
    fields = {
        "type": "arbitrage",
        "id": oid,
        "event": event,
        "symbol": "BTC/USD",
        "buyExchange": "okx",
        "sellExchange": "bybit",
        "buySymbol": "BTC/USDT",
        "sellSymbol": "BTC/USDC",
        "buyPrice": "100",
        "sellPrice": "101",
        "netSpreadPct": net,
        "peakNetSpreadPct": net,
        "profit": 1234.5,
        "currency": "USD",
        "quantity": 2.0,
        "durationMs": 65_000,
        "closeReason": None,
    }
    fields.update(over)
    return fields


def test_opportunity_table():
    lines = opportunity_lines([opp("a", 0.25), opp("b", 0.5, "close", closeReason="spread")], True)
    assert lines[0].split() == [
        "ID",
        "STATE",
        "SYMBOL",
        "BUY",
        "SELL",
        "NET",
        "PEAK",
        "PROFIT",
        "QTY",
        "OPEN",
        "FOR",
        "CLOSED",
    ]
    assert lines[1].split() == [
        "a",
        "open",
        "BTC/USD",
        "okx",
        "100",
        "bybit",
        "101",
        "+0.250",
        "%",
        "+0.250",
        "%",
        "1,234.50",
        "USD",
        "2",
        "1m",
        "05s",
    ]
    assert lines[2].endswith("spread")
    assert opportunity_lines([], False) == ["no open opportunities"]


def price(exchange: str, bid: str, ask: str, received_ns: int) -> dict:
    return {
        "type": "price",
        "exchange": exchange,
        "symbol": "BTC/USDT",
        "bid": bid,
        "ask": ask,
        "bidSize": "1",
        "askSize": "1",
        "receivedNs": received_ns,
    }


def test_top_view_tracks_quotes_and_the_best_open_opportunity():
    view = TopView(["BTC/USDT", "ETH/USDT"])
    view.update(price("binance", "100", "101", 10 * 10**9))
    view.update(price("kraken", "103", "104", 11 * 10**9))
    view.update(price("binance", "100.5", "101", 12 * 10**9))  # replaces binance's
    view.update(opp("a", 0.3))
    view.update(opp("b", 0.6))
    view.update(opp("b", 0.6, "close"))
    text = "\n".join(view.lines(now=12.5))
    assert "ETH/USDT\n  no quotes yet" in text
    rows = [line.split() for line in text.splitlines() if line.startswith("  binance")]
    assert rows == [["binance", "100.5", "101", "1", "1", "0.5s"]]
    # Buy binance at 101, sell kraken at 103: (103 - 101) / 101.
    assert "best gross spread +1.980 %  (buy binance, sell kraken; before fees)" in text
    # The closed one is gone; the open one names BTC/USDT as its buy leg.
    assert "best net spread +0.300 %  (buy okx, sell bybit;" in text


def test_top_view_without_a_second_exchange_or_an_opportunity_says_so():
    view = TopView(["BTC/USDT"])
    view.update(price("binance", "100", "101", 0))
    text = "\n".join(view.lines(now=1.0))
    assert "gross spread: needs quotes from two exchanges" in text
    assert "best net spread: no open opportunity" in text
