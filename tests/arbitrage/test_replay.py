"""Replay of a capture pair with a known dislocation: exactly the expected lifecycle, every run.

The two exchanges are the simplex reference plugin and "mirror", the same adapter registered
under another id (as a third party could ship it), so both captures hold verbatim simplex frames
(docs/simplex-protocol.md).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import msgspec
import pytest

from arbd.capture import CaptureWriter
from arbd.config import ArbitrageConfig, Config
from arbd.model import Arbitrage, Event
from arbd.plugins import PluginRegistry
from arbd.replay import replay

from .conftest import MS, S

INSTRUMENTS = (
    b'{"instruments":[{"symbol":"BTC-USDT","base":"BTC","quote":"USDT","tick":"0.01",'
    b'"lot":"0.0001"}]}'
)


def price(seq: int, at_ms: int, bid: str, ask: str) -> bytes:
    return (
        f'{{"ch":"price","s":"BTC-USDT","seq":{seq},"ts":{(S + at_ms * MS) // MS},'
        f'"b":"{bid}","B":"0.5","a":"{ask}","A":"0.4"}}'
    ).encode()


# (ms, bid) per exchange; every ask is bid + 0.10. Fees are 0.1 % on each side.
SIMPLEX = [
    (1000, "64000.00"),
    (1150, "64000.00"),
    (2600, "64000.00"),
    (3350, "64000.00"),  # the update held back at 2500 goes out (its interval has passed)
    (5000, "64000.00"),
]
MIRROR = [
    (1000, "64000.00"),  # no spread
    (1100, "64300.00"),  # +0.27 % net: pending (update 1)
    (1200, "64300.00"),  # update 3 (simplex at 1150 was 2): open
    (2300, "64400.00"),  # +0.42 %, 1.1 s after the open: update
    (2500, "64250.00"),  # +0.19 %: material, but held back by update_interval
    (3400, "64050.00"),  # below the close threshold: close, reason spread
    (5100, "64300.00"),  # again: pending
    (5150, "64300.00"),
    (5200, "64300.00"),  # open
    (7300, "64300.00"),  # simplex last quoted at 5000: older than 2 s, close stale:simplex
]


def write_capture(path: Path, exchange: str, quotes: list[tuple[int, str]]) -> None:
    conn = f"{exchange}-1"
    with CaptureWriter(path, exchange, recorded=1_700_000_000.0, version="test") as w:
        w.http("", S + 500 * MS, "http://127.0.0.1:8080/api/instruments", 200, INSTRUMENTS)
        w.connect(conn, S + 600 * MS, "ws://127.0.0.1:8080/ws", [["price", "BTC/USDT"]])
        for seq, (at, bid) in enumerate(quotes, start=1):
            ask = f"{float(bid) + 0.10:.2f}"
            w.recv(conn, S + at * MS, price(seq, at, bid, ask), True)


def run(tmp_path: Path, registry: PluginRegistry, config: Config | None = None) -> bytes:
    simplex, mirror = tmp_path / "simplex.jsonl", tmp_path / "mirror.jsonl.gz"
    write_capture(simplex, "simplex", SIMPLEX)
    write_capture(mirror, "mirror", MIRROR)
    out = io.BytesIO()
    stats = replay([simplex, mirror], registry, out, config, err=io.StringIO())
    assert stats.skipped_frames == stats.bad_records == 0
    return out.getvalue()


def opportunities(output: bytes) -> list[Arbitrage]:
    events = [msgspec.json.decode(line, type=Event) for line in output.splitlines()]
    return [e for e in events if isinstance(e, Arbitrage)]


def test_a_known_dislocation_gives_exactly_this_lifecycle(tmp_path, registry):
    found = opportunities(run(tmp_path, registry))
    t = S // MS
    assert [
        (e.event, e.buy_exchange, e.sell_exchange, e.timestamp - t, e.opened_at - t,
         e.close_reason)
        for e in found
    ] == [
        ("open", "simplex", "mirror", 1200, 1100, None),
        ("update", "simplex", "mirror", 2300, 1100, None),
        ("update", "simplex", "mirror", 3350, 1100, None),
        ("close", "simplex", "mirror", 3400, 1100, "spread"),
        ("open", "simplex", "mirror", 5200, 5100, None),
        ("close", "simplex", "mirror", 7300, 5100, "stale:simplex"),
    ]  # fmt: skip
    first, update, held_back, close, again, stale = found
    assert first.id == update.id == held_back.id == close.id != again.id == stale.id
    assert held_back.sell_price == "64250.00"
    assert first.buy_price == "64000.10"
    assert first.sell_price == "64300.00"
    assert first.net_spread_pct == pytest.approx(
        (64300.00 * 0.999 - 64000.10 * 1.001) / (64000.10 * 1.001) * 100, abs=1e-6
    )
    assert update.sell_price == "64400.00"
    assert update.peak_net_spread_pct == update.net_spread_pct
    assert close.peak_net_spread_pct == update.net_spread_pct
    assert close.duration_ms == 3400 - 1100
    assert stale.age_ms.buy == 2300.0
    # Price quotes only: sized by the top of book (0.4 ask, 0.5 bid), on the 0.0001 lot.
    assert first.size_source == "top"
    assert first.quantity == 0.4


def test_the_same_captures_give_the_same_bytes_every_run(tmp_path, registry):
    first = run(tmp_path, registry)
    second = run(tmp_path, registry)
    assert first == second
    assert b'"type":"arbitrage"' in first


def test_an_opportunity_still_open_at_the_end_closes_with_shutdown(tmp_path, registry):
    MIRROR_CUT = MIRROR[:-1]  # noqa: N806 - a local copy of the module's script
    simplex, mirror = tmp_path / "simplex.jsonl", tmp_path / "mirror.jsonl"
    write_capture(simplex, "simplex", SIMPLEX)
    write_capture(mirror, "mirror", MIRROR_CUT)
    out = io.BytesIO()
    replay([simplex, mirror], registry, out, err=io.StringIO())
    found = opportunities(out.getvalue())
    assert [(e.event, e.close_reason) for e in found[-2:]] == [
        ("open", None),
        ("close", "shutdown"),
    ]


def test_configured_fees_and_a_disabled_engine(tmp_path, registry):
    # A 0.3 % fee on mirror: +0.27 % is gone, +0.42 % still clears 0.1 %.
    config = msgspec.convert({"exchanges": {"mirror": {"taker_fee_pct": 0.3}}}, Config)
    found = opportunities(run(tmp_path, registry, config))
    assert found
    assert {e.fees.sell for e in found} == {0.3}
    assert all(e.timestamp - S // MS >= 2300 for e in found if e.event == "open")
    off = Config(arbitrage=ArbitrageConfig(enabled=False))
    assert opportunities(run(tmp_path, registry, off)) == []
    assert json.loads(run(tmp_path, registry, off).splitlines()[0])["type"] == "price"
