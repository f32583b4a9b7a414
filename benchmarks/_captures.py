"""Captures for the benchmarks: record arbd's real feed against an exchange's fake, load it back.

:func:`record` runs the exchange's adapter against its fake over loopback for ``rounds`` rounds
of market data (the adapter's default symbols, every channel) and writes a capture as ``arbd
record`` does; :func:`load` reads it into a :class:`Workload`: the connections, the frames in
receive order, and the REST answers (instruments, book snapshots) to answer requests from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import trio

from arbd.capture import CaptureWriter, Connect, Http, Recv, iter_records, read_header
from arbd.plugins import PluginRegistry
from arbd.testing.fake import open_fake
from arbd.testing.harness import run_feed


@dataclass
class Workload:
    exchange: str
    connects: list[Connect] = field(default_factory=list)
    frames: list[tuple[str, bytes, bool]] = field(default_factory=list)
    """(conn, payload, is_text) in receive order."""
    http: list[Http] = field(default_factory=list)

    def answer(self, url: str) -> Http:
        """The first recorded answer for the URL's path and query (the host differs)."""
        want = _path_key(url)
        for item in self.http:
            if _path_key(item.url) == want:
                return item
        raise LookupError(f"no recorded answer for {url}")


def _path_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def record(registry: PluginRegistry, exchange: str, rounds: int, path: Path) -> None:
    fake = registry.fakes[exchange].create()
    adapter_cls = registry.exchanges[exchange]
    symbols = list(adapter_cls.spec.default_symbols)
    with CaptureWriter(path, exchange=exchange) as writer:
        async with (
            open_fake(fake),
            run_feed(fake, adapter_cls, symbols=symbols, recorder=writer, stale_after=600.0) as h,
        ):

            def live() -> int:
                return len({s.connection for s in h.statuses("connection") if s.state == "live"})

            with trio.fail_after(60):  # "live" needs data on every subscription
                while live() < len(h.feed.supervisors):
                    await fake.pump(1)  # type: ignore[attr-defined]
                    await trio.sleep(0.05)
            for _ in range(rounds):
                await fake.pump(1)  # type: ignore[attr-defined]
            seen = -1
            while seen != len(h.events):
                seen = len(h.events)
                await trio.sleep(0.1)


def load(path: Path) -> Workload:
    work = Workload(read_header(path).exchange)
    for _, record in iter_records(path):
        if isinstance(record, Connect):
            work.connects.append(record)
        elif isinstance(record, Recv):
            work.frames.append((record.conn, record.payload(), record.is_text))
        elif isinstance(record, Http):
            work.http.append(record)
    return work
