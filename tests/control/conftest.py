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

from arbd.model import FeedStatus, Quote, Trade
from arbd.testing.control import FakeControlTarget
from arbd.testing.events import (
    sample_opportunity,
    sample_quote,
    sample_status,
    sample_trade,
)

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
    times = {"timestamp": 1_700_000_000_000 + ns, "received_ns": 1_700_000_000_000_000_000 + ns}
    return sample_quote(exchange, symbol, bid, ask, ask_size="2", **times)


def trade(exchange: str, symbol: str, price: str) -> Trade:
    return sample_trade(exchange, symbol, price)


def status_event(exchange: str, state: str = "live") -> FeedStatus:
    return sample_status(exchange, state)


opportunity = sample_opportunity


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
