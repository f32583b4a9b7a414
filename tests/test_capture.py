"""The capture file format: writing, reading back, errors, merging."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from arbd.capture import (
    CaptureWriter,
    Connect,
    Disconnect,
    Header,
    Http,
    Recv,
    Send,
    iter_records,
    merge,
    nanoseconds,
    read_header,
    seconds,
)
from arbd.errors import CaptureError

T0 = 1_700_000_000_123_456_789  # ns; captures keep microseconds


def write_sample(path: Path) -> None:
    with CaptureWriter(path, "simplex", recorded=1_700_000_000.5, version="9.9") as writer:
        writer.http("", T0, "http://127.0.0.1:1/api/instruments", 200, b'{"instruments":[]}')
        writer.connect("c1", T0 + 1_000, "ws://127.0.0.1:1/ws", [["book", "BTC/USDT"]])
        writer.send("c1", T0 + 2_000, '{"op":"subscribe"}')
        writer.send("c1", T0 + 2_500, b"\x01\x02")
        writer.recv("c1", T0 + 3_000, '{"op":"subscribed","x":"é"}'.encode(), True)
        writer.recv("c1", T0 + 4_000, b"\x00\xff\xfe binary", False)
        writer.http("c1", T0 + 5_000, "http://127.0.0.1:1/api/book?symbol=BTC-USDT", 503, b"\xff")
        writer.disconnect("c1", T0 + 6_000, "closed by us")


@pytest.mark.parametrize("name", ["cap.jsonl", "cap.jsonl.gz", "cap.jsonl.zst"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_sample(path)
    records = [record for _, record in iter_records(path)]
    us = T0 // 1_000 * 1_000
    assert records == [
        Header(format=1, exchange="simplex", recorded=1_700_000_000.5, arbd="9.9"),
        Http(
            conn="",
            ts=seconds(T0),
            url="http://127.0.0.1:1/api/instruments",
            status=200,
            data='{"instruments":[]}',
        ),
        Connect(
            conn="c1",
            ts=seconds(T0 + 1_000),
            url="ws://127.0.0.1:1/ws",
            subs=[("book", "BTC/USDT")],
        ),
        Send(conn="c1", ts=seconds(T0 + 2_000), data='{"op":"subscribe"}'),
        Send(conn="c1", ts=seconds(T0 + 2_500), b64="AQI="),
        Recv(conn="c1", ts=seconds(T0 + 3_000), data='{"op":"subscribed","x":"é"}'),
        Recv(conn="c1", ts=seconds(T0 + 4_000), b64="AP/+IGJpbmFyeQ=="),
        Http(
            conn="c1",
            ts=seconds(T0 + 5_000),
            url="http://127.0.0.1:1/api/book?symbol=BTC-USDT",
            status=503,
            b64="/w==",
        ),
        Disconnect(conn="c1", ts=seconds(T0 + 6_000), reason="closed by us"),
    ]
    binary = records[6]
    assert isinstance(binary, Recv)
    assert binary.payload() == b"\x00\xff\xfe binary"
    assert not binary.is_text
    text = records[5]
    assert isinstance(text, Recv)
    assert text.is_text
    assert text.payload() == '{"op":"subscribed","x":"é"}'.encode()
    http = records[7]
    assert isinstance(http, Http)
    assert http.body() == b"\xff"
    # Times survive to the microsecond.
    assert nanoseconds(records[2].ts) == us + 1_000  # type: ignore[union-attr]


def test_compressed_files_are_really_compressed(tmp_path: Path) -> None:
    write_sample(tmp_path / "a.jsonl.gz")
    write_sample(tmp_path / "a.jsonl.zst")
    assert gzip.decompress((tmp_path / "a.jsonl.gz").read_bytes()).startswith(b'{"t":"header"')
    assert (tmp_path / "a.jsonl.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd magic


def test_exact_wire_form(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    with CaptureWriter(path, "binance", recorded=1.25, version="0.1.0") as writer:
        writer.connect("b-1", 1_500_000_000, "wss://x/ws", [["book", "BTC/USDT"]])
        writer.recv("b-1", 2_000_000_000, b'{"a":1}', True)
        writer.disconnect("b-1", 3_000_000_000, "peer closed")
    assert path.read_text().splitlines() == [
        '{"t":"header","format":1,"exchange":"binance","recorded":1.25,"arbd":"0.1.0"}',
        '{"t":"connect","conn":"b-1","ts":1.5,"url":"wss://x/ws","subs":[["book","BTC/USDT"]]}',
        '{"t":"recv","conn":"b-1","ts":2.0,"data":"{\\"a\\":1}"}',
        '{"t":"disconnect","conn":"b-1","ts":3.0,"reason":"peer closed"}',
    ]


def test_writer_flushes_and_refuses_after_close(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    writer = CaptureWriter(path, "simplex", recorded=1.0)
    writer.recv("c", T0, b"x", True)
    writer.flush()
    assert len(path.read_text().splitlines()) == 2
    writer.close()
    writer.close()  # idempotent
    assert writer.closed
    with pytest.raises(CaptureError, match="closed"):
        writer.recv("c", T0, b"x", True)


def test_reader_skips_unknown_types_and_optional_subs(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    path.write_text(
        '{"t":"header","format":1,"exchange":"simplex","recorded":1.0}\n'
        '{"t":"future-thing","whatever":[1,2]}\n'
        "\n"
        '{"t":"connect","conn":"c","ts":2.0,"url":"ws://h/ws","extra":true}\n'
    )
    records = list(iter_records(path))
    assert [line for line, _ in records] == [1, 4]
    connect = records[1][1]
    assert isinstance(connect, Connect)
    assert connect.subs is None


def test_bad_line_raises_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    path.write_text(
        '{"t":"header","format":1,"exchange":"simplex","recorded":1.0}\n'
        '{"t":"recv","conn":"c","ts":1.0,"data":"ok"}\n'
        '{"t":"recv","conn":"c","ts":"late"}\n'
    )
    with pytest.raises(CaptureError, match=r"cap\.jsonl:3: bad record"):
        list(iter_records(path))


def test_bad_line_reported_and_skipped_with_handler(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    path.write_text(
        '{"t":"header","format":1,"exchange":"simplex","recorded":1.0}\n'
        "this is {not json\n"
        '{"t":"recv","conn":"c","ts":1.0,"data":"ok"}\n'
    )
    reported: list[tuple[str, int, str]] = []
    records = list(iter_records(path, on_error=lambda *args: reported.append(args)))
    assert [line for line, _ in records] == [1, 3]
    assert [(p, line) for p, line, _ in reported] == [(str(path), 2)]


def test_missing_header_is_an_error_even_with_handler(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    path.write_text('{"t":"recv","conn":"c","ts":1.0,"data":"ok"}\n')
    with pytest.raises(CaptureError, match=r"cap\.jsonl:1: not a capture"):
        list(iter_records(path, on_error=lambda *_: None))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CaptureError, match="empty capture"):
        read_header(empty)


def test_unsupported_format_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    path.write_text('{"t":"header","format":2,"exchange":"simplex","recorded":1.0}\n')
    with pytest.raises(CaptureError, match="format 2 is not supported"):
        read_header(path)
    with pytest.raises(CaptureError, match="cannot open"):
        read_header(tmp_path / "nope.jsonl")


def test_truncated_gzip_reported_and_read_up_to_the_break(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl.gz"
    with CaptureWriter(path, "simplex", recorded=1.0) as writer:
        for i in range(200):
            writer.recv("c", T0 + i * 1_000, f'{{"n":{i},"pad":"{"x" * 50}"}}'.encode(), True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])  # a recording killed before the trailer
    with pytest.raises(CaptureError, match="cannot read past this line"):
        list(iter_records(path))
    reported: list[tuple[str, int, str]] = []
    records = list(iter_records(path, on_error=lambda *args: reported.append(args)))
    assert len(reported) == 1
    assert 1 < len(records) <= 201
    assert reported[0][1] == records[-1][0] + 1


def test_merge_orders_by_ts_stably(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    with CaptureWriter(a, "simplex", recorded=1.0) as writer:
        writer.recv("a", 1_000_000_000, b"a1", True)
        writer.recv("a", 3_000_000_000, b"a3", True)
        writer.recv("a", 3_000_000_000, b"a3bis", True)
    with CaptureWriter(b, "simplex", recorded=1.0) as writer:
        writer.recv("b", 2_000_000_000, b"b2", True)
        writer.recv("b", 3_000_000_000, b"b3", True)
        writer.recv("b", 4_000_000_000, b"b4", True)
    merged = list(merge([a, b]))
    assert [item.record.payload() for item in merged] == [  # type: ignore[union-attr]
        b"a1",
        b"b2",
        b"a3",
        b"a3bis",
        b"b3",
        b"b4",
    ]
    assert [(item.file, item.line) for item in merged] == [
        (0, 2),
        (1, 2),
        (0, 3),
        (0, 4),
        (1, 3),
        (1, 4),
    ]
    # File order breaks ties, so swapping the inputs swaps who goes first at ts 3.
    swapped = [item.record.payload() for item in merge([b, a])]  # type: ignore[union-attr]
    assert swapped == [b"a1", b"b2", b"b3", b"a3", b"a3bis", b"b4"]
