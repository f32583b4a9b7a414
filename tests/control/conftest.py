"""Fixtures for control-channel tests: a short socket directory, a fake target, sample events,
and a line-oriented client over a real Unix socket."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from arbd.model import Arbitrage, BuySell, FeedStatus, ProfitPoint, Quote, Trade
from arbd.testing.control import FakeControlTarget

MARKETS = {"binance": ["BTC/USDT", "ETH/USDT"], "kraken": ["BTC/USDT", "BTC/USD"]}
LISTED = {"binance": ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"], "kraken": ["BTC/USDT"]}


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory with a short path: Unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="arbd-ctl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def target() -> FakeControlTarget:
    return FakeControlTarget(MARKETS, LISTED)


def quote(exchange: str, symbol: str, bid: str, ask: str = "", ns: int = 1) -> Quote:
    ask = ask or str(float(bid) + 1)
    return Quote(
        exchange=exchange,
        symbol=symbol,
        bid=bid,
        ask=ask,
        bid_size="1",
        ask_size="2",
        timestamp=1_700_000_000_000 + ns,
        received_ns=1_700_000_000_000_000_000 + ns,
    )


def trade(exchange: str, symbol: str, price: str) -> Trade:
    return Trade(
        exchange=exchange,
        symbol=symbol,
        price=price,
        size="0.5",
        side="buy",
        id="1",
        timestamp=1_700_000_000_000,
        received_ns=1_700_000_000_000_000_000,
    )


def status_event(exchange: str, state: str = "live") -> FeedStatus:
    return FeedStatus(
        exchange=exchange,
        symbol="",
        scope="connection",
        state=state,
        connection=f"{exchange}-1",
        timestamp=1_700_000_000_000,
    )


def opportunity(oid: str, event: str = "open", net: float = 0.3, **over: Any) -> Arbitrage:
    fields: dict[str, Any] = {
        "id": oid,
        "event": event,
        "symbol": "BTC/USDT",
        "buy_exchange": "binance",
        "sell_exchange": "kraken",
        "buy_symbol": "BTC/USDT",
        "sell_symbol": "BTC/USDT",
        "buy_price": "64000.10",
        "sell_price": "64300.00",
        "spread_pct": net,
        "net_spread_pct": net,
        "gross_spread_pct": net + 0.2,
        "peak_net_spread_pct": net,
        "profit": 114.44,
        "currency": "USDT",
        "quantity": 0.65,
        "buy_vwap": 64001.5,
        "sell_vwap": 64290.0,
        "size_source": "book",
        "profit_curve": [ProfitPoint(size=1000.0, profit=2.9)],
        "conversion": "none",
        "fees": BuySell(buy=0.1, sell=0.26),
        "age_ms": BuySell(buy=30.0, sell=0.0),
        "opened_at": 1_700_000_000_000,
        "closed_at": 1_700_000_001_000 if event == "close" else None,
        "duration_ms": 1000 if event == "close" else 118,
        "close_reason": "spread" if event == "close" else None,
        "timestamp": 1_700_000_000_230,
    }
    fields.update(over)
    return Arbitrage(**fields)


class LineClient:
    """A test client over a real Unix socket: send JSON lines, read JSON lines (bounded)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, path: str) -> LineClient:
        return cls(await trio.open_unix_socket(path))

    async def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        await self.stream.send_all(data)

    async def line(self) -> dict[str, Any]:
        with trio.fail_after(10):
            while b"\n" not in self.buffer:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError(f"closed; unread: {self.buffer!r}")
                self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.send(message)
        return await self.line()

    async def at_eof(self) -> bool:
        """True when the server closed the connection (after any unread lines)."""
        with trio.fail_after(10):
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    return True
                self.buffer += data

    async def aclose(self) -> None:
        await self.stream.aclose()


@pytest.fixture
async def connect():
    """``await connect(path)``: a LineClient closed when the test ends."""
    opened: list[LineClient] = []

    async def open_client(path: str) -> LineClient:
        client = await LineClient.open(str(path))
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.aclose()
