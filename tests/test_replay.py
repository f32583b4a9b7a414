"""`arbd replay`: captures through the real adapters and hub, deterministic JSON-lines output."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from arbd.capture import CaptureWriter
from arbd.cli.main import cli
from arbd.errors import CaptureError
from arbd.exchange.adapter import (
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSession,
    ExchangeSpec,
    HttpRequest,
    HttpResponse,
)
from arbd.hookspecs import hookimpl
from arbd.hub import Hub
from arbd.model import Book, Candle, Event, FeedStatus, Quote, Subscription, Trade
from arbd.plugins import PluginRegistry, load_plugins
from arbd.replay import replay

S = 1_700_000_000_000_000_000  # ns
MS = 1_000_000

INSTRUMENTS = (
    b'{"instruments":[{"symbol":"BTC-USDT","base":"BTC","quote":"USDT","tick":"0.01",'
    b'"lot":"0.0001"},{"symbol":"ETH-USDT","base":"ETH","quote":"USDT","tick":"0.01",'
    b'"lot":"0.001"}]}'
)
# Frames verbatim from docs/simplex-protocol.md.
ACK = '{"op":"subscribed","args":["trades:BTC-USDT"],"id":1}'
PRICE = (
    '{"ch":"price","s":"BTC-USDT","seq":41,"ts":1700000000123,"b":"64000.10","B":"0.5",'
    '"a":"64000.20","A":"1.25"}'
)
TRADE = (
    '{"ch":"trades","s":"BTC-USDT","seq":7,"ts":1700000000124,"p":"64000.15","q":"0.010",'
    '"side":"buy","id":"7"}'
)
SNAPSHOT = (
    '{"ch":"book","s":"BTC-USDT","type":"snapshot","seq":100,"ts":1700000000125,'
    '"bids":[["64000.10","0.5"]],"asks":[["64000.20","1.25"]]}'
)
DELTA = (
    '{"ch":"book","s":"BTC-USDT","type":"delta","seq":101,"prev":100,"ts":1700000000126,'
    '"bids":[["64000.10","0"]],"asks":[]}'
)
CANDLE = (
    '{"ch":"candles","s":"BTC-USDT","ts":1700000000127,"start":1699999980000,"o":"1","h":"2",'
    '"l":"0.5","c":"1.5","v":"10","closed":false}'
)
GAP = (
    '{"ch":"book","s":"BTC-USDT","type":"delta","seq":105,"prev":104,"ts":1700000000130,'
    '"bids":[["63999.00","1"]],"asks":[]}'
)
RESNAPSHOT = (
    '{"ch":"book","s":"BTC-USDT","type":"snapshot","seq":200,"ts":1700000000140,'
    '"bids":[["63990.00","2"]],"asks":[["64010.00","3"]]}'
)
GARBAGE = "this is {not json"


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "simplex"})
    assert "simplex" in registry.exchanges, registry.failed
    return registry


def simplex_capture(path: Path) -> None:
    """A recorded simplex session; the line numbers are in the comments."""
    subs = [[c, "BTC/USDT"] for c in ("book", "candles", "price", "trades")]
    # The recording host differs from the adapter's default: replay matches path and query only.
    with CaptureWriter(path, "simplex", recorded=1_700_000_000.0, version="test") as w:  # 1
        w.http("", S, "http://10.1.2.3:8080/api/instruments", 200, INSTRUMENTS)  # 2
        w.connect("simplex-1", S + 1 * MS, "ws://10.1.2.3:8080/ws", subs)  # 3
        w.send("simplex-1", S + 2 * MS, '{"op":"subscribe","args":[],"id":1}')  # 4
        for i, frame in enumerate(  # 5..11
            [ACK, PRICE, TRADE, SNAPSHOT, DELTA, CANDLE, GARBAGE], start=3
        ):
            w.recv("simplex-1", S + i * MS, frame.encode(), True)
        w.recv("simplex-1", S + 10 * MS, GAP.encode(), True)  # 12
        w.recv("simplex-1", S + 11 * MS, RESNAPSHOT.encode(), True)  # 13
        w.disconnect("simplex-1", S + 12 * MS, "closed by us")  # 14
        w.recv("simplex-1", S + 13 * MS, PRICE.encode(), True)  # 15: after the disconnect


def run_replay(
    paths: Sequence[Path], registry: PluginRegistry, **kwargs: Any
) -> tuple[bytes, str, Any]:
    out, err = io.BytesIO(), io.StringIO()
    stats = replay(paths, registry, out, err=err, **kwargs)
    return out.getvalue(), err.getvalue(), stats


def decode_lines(output: bytes) -> list[Event]:
    return [msgspec.json.decode(line, type=Event) for line in output.splitlines()]


def test_replay_emits_the_adapter_events(tmp_path: Path, registry: PluginRegistry) -> None:
    path = tmp_path / "simplex.jsonl"
    simplex_capture(path)
    output, errors, stats = run_replay([path], registry)
    events = decode_lines(output)

    assert [type(e).__name__ for e in events] == [
        "Quote", "Trade", "Book", "Book", "Candle",
        "FeedStatus", "FeedStatus", "FeedStatus", "Book",
    ]  # fmt: skip
    quote, trade, snapshot, delta, candle, invalid, resyncing, valid, resynced = events
    assert isinstance(quote, Quote)
    assert (quote.exchange, quote.symbol, quote.bid, quote.ask) == (
        "simplex",
        "BTC/USDT",
        "64000.10",
        "64000.20",
    )
    # Time inside a replay is the capture's: the frame's recorded receive time.
    assert quote.received_ns == S + 4 * MS
    assert isinstance(trade, Trade)
    assert (trade.price, trade.size, trade.side, trade.id) == ("64000.15", "0.010", "buy", "7")
    assert isinstance(snapshot, Book)
    assert (snapshot.bids, snapshot.asks, snapshot.sequence) == (
        [("64000.10", "0.5")],
        [("64000.20", "1.25")],
        100,
    )
    assert isinstance(delta, Book)
    assert (delta.bids, delta.sequence) == ([], 101)
    assert isinstance(candle, Candle)
    assert (candle.start, candle.close, candle.closed) == (1699999980000, "1.5", False)
    assert [(s.scope, s.state) for s in (invalid, resyncing, valid)] == [  # type: ignore[union-attr]
        ("book", "invalid"),
        ("book", "resyncing"),
        ("book", "valid"),
    ]
    assert isinstance(resynced, Book)
    assert resynced.sequence == 200

    # The garbage frame is reported with its line and skipped; so is data on a closed connection.
    lines = errors.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:11: cannot parse frame: ")
    assert lines[1] == f"{path}:15: recv on connection 'simplex-1', which is not open"
    assert (stats.frames, stats.skipped_frames, stats.bad_records, stats.events) == (9, 1, 1, 9)


def test_replay_is_byte_identical(tmp_path: Path, registry: PluginRegistry) -> None:
    path = tmp_path / "simplex.jsonl.gz"
    simplex_capture(path)
    first = run_replay([path], registry)[0]
    second = run_replay([path], registry)[0]
    assert first
    assert first == second
    # The CLI writes the same bytes, to stdout or to --out.
    env = {"ARBD_LOAD_PLUGINS": "simplex"}
    cli_stdout = CliRunner().invoke(cli, ["replay", str(path)], env=env)
    assert cli_stdout.exit_code == 0, cli_stdout.output
    assert cli_stdout.stdout_bytes == first
    assert cli_stdout.stderr.splitlines()[-1] == (
        "replayed 1 capture(s): 14 records, 9 frames, 9 events, 2 skipped"
    )
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        cli, ["replay", str(path), "--out", str(out)], env={"ARBD_LOAD_PLUGINS": "simplex"}
    )
    assert result.exit_code == 0
    assert result.stdout == ""
    assert out.read_bytes() == first
    assert not (tmp_path / "events.jsonl.partial").exists()


def test_text_output_stream(tmp_path: Path, registry: PluginRegistry) -> None:
    path = tmp_path / "simplex.jsonl"
    simplex_capture(path)
    text = io.StringIO()
    replay([path], registry, text, err=io.StringIO())
    assert text.getvalue().encode() == run_replay([path], registry)[0]


def test_capture_without_subs_replays_every_instrument(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    path = tmp_path / "nosubs.jsonl"
    path.write_text(
        '{"t":"header","format":1,"exchange":"simplex","recorded":1.0}\n'
        + json.dumps(
            {
                "t": "http",
                "conn": "",
                "ts": 1.0,
                "url": "http://h/api/instruments",
                "status": 200,
                "data": INSTRUMENTS.decode(),
            }
        )
        + "\n"
        + '{"t":"connect","conn":"a","ts":2.0,"url":"ws://h/ws"}\n'
        + json.dumps({"t": "recv", "conn": "a", "ts": 3.0, "data": PRICE})
        + "\n"
        + json.dumps(
            {"t": "recv", "conn": "a", "ts": 4.0, "data": PRICE.replace("BTC-USDT", "ETH-USDT")}
        )
        + "\n"
        + json.dumps(
            {"t": "recv", "conn": "a", "ts": 5.0, "data": PRICE.replace("BTC-USDT", "XRP-USDT")}
        )
        + "\n"
    )
    output, errors, _ = run_replay([path], registry)
    assert errors == ""
    events = decode_lines(output)
    assert all(isinstance(e, Quote) for e in events)
    # Every listed instrument is accepted; an unlisted one is ignored, as live.
    assert [(e.symbol, e.received_ns) for e in events if isinstance(e, Quote)] == [
        ("BTC/USDT", 3_000_000_000),
        ("ETH/USDT", 4_000_000_000),
    ]


def test_several_captures_merge_by_time(tmp_path: Path, registry: PluginRegistry) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl.zst"
    for path, offset in ((a, 0), (b, MS // 2)):
        with CaptureWriter(path, "simplex", recorded=1.0) as w:
            w.http("", S, "http://h/api/instruments", 200, INSTRUMENTS)
            w.connect("simplex-1", S + offset, "ws://h/ws", [["price", "BTC/USDT"]])
            for i in range(3):
                seq_price = PRICE.replace('"seq":41', f'"seq":{i}')
                w.recv("simplex-1", S + (i + 1) * MS + offset, seq_price.encode(), True)
    output, errors, _ = run_replay([a, b], registry)
    assert errors == ""
    received = [e.received_ns for e in decode_lines(output) if isinstance(e, Quote)]
    assert received == sorted(received)
    assert len(received) == 6
    assert output == run_replay([a, b], registry)[0]


def test_processors_on_the_hub_run_during_replay(tmp_path: Path, registry: PluginRegistry) -> None:
    path = tmp_path / "simplex.jsonl"
    simplex_capture(path)
    hub = Hub()
    seen: list[int] = []

    def processor(batch: Sequence[Event]) -> Sequence[Event]:
        seen.append(len(batch))
        return [
            FeedStatus(exchange="simplex", symbol=e.symbol, scope="exchange", state="seen",
                       timestamp=e.timestamp)
            for e in batch if isinstance(e, Quote)
        ]  # fmt: skip

    hub.add_processor(processor)
    output, _, _ = run_replay([path], registry, hub=hub)
    events = decode_lines(output)
    assert sum(seen) == 9
    assert [type(e).__name__ for e in events[:2]] == ["Quote", "FeedStatus"]


def test_errors_that_stop_a_replay(tmp_path: Path, registry: PluginRegistry) -> None:
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"t":"header","format":1,"exchange":"mtgox","recorded":1.0}\n')
    with pytest.raises(CaptureError, match="exchange 'mtgox', which no installed plugin"):
        run_replay([unknown], registry)

    no_instruments = tmp_path / "noinst.jsonl"
    no_instruments.write_text('{"t":"header","format":1,"exchange":"simplex","recorded":1.0}\n')
    with pytest.raises(CaptureError, match=r"no recorded answer to instrument request .*/api/inst"):
        run_replay([no_instruments], registry)

    failed = tmp_path / "failed.jsonl"
    with CaptureWriter(failed, "simplex", recorded=1.0) as w:
        w.http("", S, "http://h/api/instruments", 503, b"busy")
    with pytest.raises(CaptureError, match=r"cannot load instruments: .*HTTP 503"):
        run_replay([failed], registry)

    result = CliRunner().invoke(cli, ["replay", str(unknown)], env={"ARBD_LOAD_PLUGINS": "simplex"})
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"{unknown}: recorded from exchange 'mtgox'")
    missing = CliRunner().invoke(cli, ["replay", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
    assert missing.stderr == f"{tmp_path / 'nope.jsonl'}: cannot open: No such file or directory\n"


def test_damaged_capture_line_is_reported_and_skipped(
    tmp_path: Path, registry: PluginRegistry
) -> None:
    path = tmp_path / "damaged.jsonl"
    simplex_capture(path)
    lines = path.read_text().splitlines()
    lines[5] = lines[5][:20]  # line 6 (the price frame) cut short
    path.write_text("\n".join(lines) + "\n")
    output, errors, stats = run_replay([path], registry)
    assert errors.splitlines()[0].startswith(f"{path}:6: bad record: ")
    assert stats.bad_records == 2
    assert "Quote" not in {type(e).__name__ for e in decode_lines(output)}


# -- HTTP requests made by sessions (book snapshots) ---------------------------------------------


class _SnapSession(ExchangeSession):
    """A Binance-style book: deltas stream, the snapshot comes by REST; deltas before it wait."""

    def __init__(self, adapter: ExchangeAdapter, plan: ConnectionPlan) -> None:
        super().__init__(adapter, plan)
        self.seq: dict[str, int] = {}
        self.early: list[tuple[str, int]] = []

    def start(self, now_ns: int) -> None:
        for sub in self.plan.subscriptions:
            native = sub.symbol.replace("/", "-")
            url = f"{self.adapter.settings.rest_url}/api/book?symbol={native}"
            self.request(HttpRequest(url=url, purpose=f"book:{sub.symbol}"))

    def receive(self, data: bytes, is_text: bool, received_ns: int, out: list[Event]) -> None:
        frame = json.loads(data)
        symbol, seq = frame["s"].replace("-", "/"), int(frame["seq"])
        if symbol not in self.seq:
            self.early.append((symbol, seq))
            return
        out.append(self._book(symbol, seq, received_ns))

    def on_http(self, response: HttpResponse, out: list[Event]) -> None:
        body = json.loads(response.body)
        symbol = body["symbol"].replace("-", "/")
        self.seq[symbol] = body["seq"]
        out.append(self._book(symbol, body["seq"], response.received_ns))
        for early_symbol, seq in self.early:
            if early_symbol == symbol and seq > body["seq"]:
                out.append(self._book(symbol, seq, response.received_ns))

    def _book(self, symbol: str, seq: int, ns: int) -> Book:
        return Book(exchange="snapbook", symbol=symbol, bids=[], asks=[], depth=1,
                    timestamp=ns // MS, received_ns=ns, sequence=seq)  # fmt: skip

    def resubscribe(self, subscriptions: Sequence[Subscription], now_ns: int) -> None:
        raise AssertionError("replay never resubscribes")


class _SnapAdapter(ExchangeAdapter):
    spec = ExchangeSpec(
        id="snapbook", name="Snapbook", ws_url="wss://snap.example/ws",
        rest_url="https://snap.example", channels=("book",),
    )  # fmt: skip

    def instrument_requests(self) -> list[HttpRequest]:
        return []

    def load_instruments(self, responses: Sequence[HttpResponse]) -> None:
        pass

    def new_session(self, plan: ConnectionPlan) -> ExchangeSession:
        return _SnapSession(self, plan)


@pytest.fixture(scope="module")
def snap_registry() -> PluginRegistry:
    plugin = SimpleNamespace(arbd_exchanges=hookimpl(lambda: [_SnapAdapter]))
    registry = load_plugins(extra=[("snapbook", plugin)], discover=False)
    assert "snapbook" in registry.exchanges, registry.failed
    return registry


def snap_capture(path: Path, *, answer_eth: bool) -> None:
    with CaptureWriter(path, "snapbook", recorded=1.0) as w:
        # An answer recorded before the request was made is not its answer.
        w.http("", S - MS, "http://127.0.0.1:5555/api/book?symbol=ETH-USDT", 200, b"{}")
        w.connect("s-1", S, "ws://127.0.0.1:5555/ws", [["book", "BTC/USDT"], ["book", "ETH/USDT"]])
        w.recv("s-1", S + 1 * MS, b'{"s":"BTC-USDT","seq":10}', True)
        w.recv("s-1", S + 2 * MS, b'{"s":"BTC-USDT","seq":11}', True)
        body = b'{"symbol":"BTC-USDT","seq":10}'
        w.http("s-1", S + 3 * MS, "http://127.0.0.1:5555/api/book?symbol=BTC-USDT", 200, body)
        if answer_eth:
            body = b'{"symbol":"ETH-USDT","seq":1}'
            w.http("s-1", S + 4 * MS, "http://127.0.0.1:5555/api/book?symbol=ETH-USDT", 200, body)
        w.recv("s-1", S + 5 * MS, b'{"s":"BTC-USDT","seq":12}', True)


def test_session_http_requests_are_answered_in_recorded_order(
    tmp_path: Path, snap_registry: PluginRegistry
) -> None:
    path = tmp_path / "snap.jsonl"
    snap_capture(path, answer_eth=True)
    output, errors, _ = run_replay([path], snap_registry)
    assert errors == ""
    events = decode_lines(output)
    books = [(e.symbol, e.sequence, e.received_ns) for e in events if isinstance(e, Book)]
    assert len(books) == len(events)
    # The snapshot arrives where it was recorded: after two deltas, which then apply on top.
    assert books == [
        ("BTC/USDT", 10, S + 3 * MS),
        ("BTC/USDT", 11, S + 3 * MS),
        ("ETH/USDT", 1, S + 4 * MS),
        ("BTC/USDT", 12, S + 5 * MS),
    ]


def test_unanswerable_request_is_a_capture_error(
    tmp_path: Path, snap_registry: PluginRegistry
) -> None:
    path = tmp_path / "snap.jsonl"
    snap_capture(path, answer_eth=False)
    with pytest.raises(CaptureError) as info:
        run_replay([path], snap_registry)
    message = str(info.value)
    assert message.startswith(
        f"{path}: no recorded answer to https://snap.example/api/book?symbol=ETH-USDT"
    )
    assert "/api/book?symbol=ETH-USDT" in message
    assert "\n" not in message
