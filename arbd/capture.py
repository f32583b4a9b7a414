"""Capture files: what an exchange connection sent and received, one JSON object per line.

A capture is written live by :class:`CaptureWriter` (the ``arbd.feed.recorder.Recorder`` the
connection driver reports to) and read back by ``arbd replay`` (:mod:`arbd.replay`). The format is
documented in ``docs/protocol.md``; in short::

    {"t":"header","format":1,"exchange":"binance","recorded":1700000000.5,"arbd":"0.1.0"}
    {"t":"connect","conn":"binance-1","ts":1700000000.6,"url":"wss://...","subs":[["book","BTC/USDT"]]}
    {"t":"send","conn":"binance-1","ts":1700000000.61,"data":"{...}"}
    {"t":"recv","conn":"binance-1","ts":1700000000.7,"data":"{...}"}
    {"t":"http","conn":"","ts":1700000000.4,"url":"https://.../exchangeInfo","status":200,"data":"{...}"}
    {"t":"disconnect","conn":"binance-1","ts":1700000099.0,"reason":"closed by us"}

- The first line is the header; it names the exchange whose adapter replays the file.
- ``ts`` is the local receive (or send) time in unix seconds, rounded to the microsecond.
- Binary frames and bodies that are not UTF-8 carry ``"b64"`` (base64) instead of ``"data"``; a
  reader treats a ``b64`` recv as a binary WebSocket message.
- ``subs`` on ``connect`` is optional: readers must not require it.
- Record types a reader does not know are skipped, so newer writers can add records.
- ``.gz`` paths are gzip, ``.zst`` paths zstandard, anything else plain text.

Error rule: :func:`iter_records` raises :class:`arbd.errors.CaptureError` naming the file and
line of the first bad line, unless the caller passes ``on_error``; then each bad line (not JSON,
or a known record type with wrong fields) is reported through it and skipped, and a compressed
stream that ends early (a recording killed mid-write) is reported once and ends the file. A
missing or bad header is always an error: without it no adapter can read the file.
"""

from __future__ import annotations

import base64
import gzip
import heapq
import io
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Annotated, Final, cast

import msgspec
import zstandard

import arbd
from arbd.errors import CaptureError

FORMAT_VERSION: Final = 1


Timestamp = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
"""A record's ``ts``: unix seconds, bounded (year 5138) so that its nanoseconds are an int."""


class _Record(msgspec.Struct, tag_field="t", omit_defaults=True, forbid_unknown_fields=False):
    pass


class Header(_Record, tag="header", kw_only=True):
    format: int
    exchange: str
    recorded: float
    arbd: str = ""


class Connect(_Record, tag="connect", kw_only=True):
    conn: str
    ts: Timestamp
    url: str
    subs: list[tuple[str, str]] | None = None
    """``[[channel, symbol], ...]`` the connection carried; optional (older or other writers)."""


class _Frame(_Record, kw_only=True):
    conn: str
    ts: Timestamp
    data: str | None = None
    b64: str | None = None

    @property
    def is_text(self) -> bool:
        return self.b64 is None

    def payload(self) -> bytes:
        """The frame's bytes: UTF-8 of ``data``, or the decoded ``b64``."""
        if self.b64 is not None:
            return base64.b64decode(self.b64, validate=True)
        return (self.data or "").encode()


class Send(_Frame, tag="send", kw_only=True):
    pass


class Recv(_Frame, tag="recv", kw_only=True):
    pass


class Http(_Record, tag="http", kw_only=True):
    conn: str
    ts: Timestamp
    url: str
    status: int
    data: str | None = None
    b64: str | None = None

    def body(self) -> bytes:
        if self.b64 is not None:
            return base64.b64decode(self.b64, validate=True)
        return (self.data or "").encode()


class Disconnect(_Record, tag="disconnect", kw_only=True):
    conn: str
    ts: Timestamp
    reason: str = ""


Record = Header | Connect | Send | Recv | Http | Disconnect
TimedRecord = Connect | Send | Recv | Http | Disconnect
KNOWN_TYPES: Final = frozenset({"header", "connect", "send", "recv", "http", "disconnect"})

ErrorHandler = Callable[[str, int, str], None]
"""``on_error(path, line, problem)`` for a bad line that is reported and skipped."""

_decoder: msgspec.json.Decoder[Record] = msgspec.json.Decoder(Record)
_WRITE_CHUNK: Final = 64 * 1024


def seconds(ts_ns: int) -> float:
    """Capture time (unix seconds, µs precision) of a ns timestamp."""
    return (ts_ns // 1_000) / 1_000_000


def nanoseconds(ts: float) -> int:
    """The ns timestamp a capture time stands for (exact to the microsecond it was written at)."""
    return round(ts * 1_000_000) * 1_000


def _open(path: Path, mode: str) -> IO[bytes]:
    """Open ``path`` in binary ``mode`` ("rb"/"wb"), compressed by its suffix."""
    suffix = path.suffix
    if suffix == ".gz":
        return cast("IO[bytes]", gzip.GzipFile(path, mode))
    if suffix == ".zst":
        # zstandard.open returns a stream reader/writer wrapping a file it closes itself.
        stream: IO[bytes] = zstandard.open(path, mode)
        return stream
    return cast("IO[bytes]", open(path, mode))  # the caller closes it


def _text_or_b64(data: bytes) -> tuple[str | None, str | None]:
    try:
        return data.decode(), None
    except UnicodeDecodeError:
        return None, base64.b64encode(data).decode("ascii")


class CaptureWriter:
    """Writes one exchange's capture. Implements ``arbd.feed.recorder.Recorder``.

    Use as a context manager (or call :meth:`close`); the header is written on construction.
    Writes are buffered by the underlying file: call :meth:`flush` to push them to the OS (the
    daemon does on its flush interval, so a crash loses at most that much). A gzip or zstandard
    file that is not closed lacks its trailer; readers report that and keep what came before.
    """

    def __init__(
        self,
        path: str | Path,
        exchange: str,
        *,
        recorded: float | None = None,
        version: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._encoder = msgspec.json.Encoder()
        self.records = 0
        self._file: IO[bytes] | None = _open(self.path, "wb")
        # Records are small and arrive one per frame; batching them into one write per ~64 KiB
        # keeps the per-frame cost to an append (a gzip write compresses on every call).
        self._buffer = bytearray()
        header = Header(
            format=FORMAT_VERSION,
            exchange=exchange,
            recorded=time.time() if recorded is None else recorded,
            arbd=arbd.__version__ if version is None else version,
        )
        self._write(header)

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._file is None

    def _write(self, record: _Record) -> None:
        if self._file is None:
            raise CaptureError(f"{self.path}: capture writer is closed")
        self._encoder.encode_into(record, self._buffer, -1)
        self._buffer += b"\n"
        self.records += 1
        if len(self._buffer) >= _WRITE_CHUNK:
            self._file.write(self._buffer)
            self._buffer.clear()

    # -- Recorder ---------------------------------------------------------------------------

    def connect(self, conn: str, ts_ns: int, url: str, subscriptions: list[list[str]]) -> None:
        subs = [(channel, symbol) for channel, symbol in subscriptions]
        self._write(Connect(conn=conn, ts=seconds(ts_ns), url=url, subs=subs))

    def send(self, conn: str, ts_ns: int, data: str | bytes) -> None:
        if isinstance(data, str):
            self._write(Send(conn=conn, ts=seconds(ts_ns), data=data))
        else:
            self._write(Send(conn=conn, ts=seconds(ts_ns), b64=base64.b64encode(data).decode()))

    def recv(self, conn: str, ts_ns: int, data: bytes, is_text: bool) -> None:
        # A text frame is valid UTF-8 (the WebSocket layer checks); a binary one is stored as
        # base64 even when it happens to decode, so replay hands the adapter the same frame type.
        if is_text:
            text, b64 = _text_or_b64(data)
        else:
            text, b64 = None, base64.b64encode(data).decode("ascii")
        self._write(Recv(conn=conn, ts=seconds(ts_ns), data=text, b64=b64))

    def http(self, conn: str, ts_ns: int, url: str, status: int, body: bytes) -> None:
        text, b64 = _text_or_b64(body)
        self._write(Http(conn=conn, ts=seconds(ts_ns), url=url, status=status, data=text, b64=b64))

    def disconnect(self, conn: str, ts_ns: int, reason: str) -> None:
        self._write(Disconnect(conn=conn, ts=seconds(ts_ns), reason=reason))

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand everything written so far to the OS (a compressed stream flushes a block)."""
        if self._file is not None:
            if self._buffer:
                self._file.write(self._buffer)
                self._buffer.clear()
            self._file.flush()

    def close(self) -> None:
        """Flush and close; writes the compression trailer. Safe to call twice."""
        if self._file is not None:
            file, self._file = self._file, None
            try:
                if self._buffer:
                    file.write(self._buffer)
                    self._buffer.clear()
            finally:
                file.close()


# -- reading ---------------------------------------------------------------------------------


def _decode_line(line: bytes) -> Record | None:
    """The record on ``line``; ``None`` for a well-formed record of an unknown type.

    Raises ``msgspec.DecodeError`` (not JSON, or a known type with bad fields).
    """
    try:
        return _decoder.decode(line)
    except msgspec.ValidationError:
        # Only now look closer: is it a record type from a newer writer (skip) or a bad one?
        raw = msgspec.json.decode(line)
        if isinstance(raw, dict) and isinstance(raw.get("t"), str) and raw["t"] not in KNOWN_TYPES:
            return None
        raise


_STREAM_ERRORS = (EOFError, OSError, zlib.error, zstandard.ZstdError)
# A line msgspec cannot read: not JSON or wrong fields (DecodeError), not UTF-8 (msgspec raises
# UnicodeDecodeError for that), or nested past the recursion limit (RecursionError).
_LINE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


_TYPE_PREFIX: Final = b'{"t":"'


def record_type(record: Record) -> str:
    """The ``t`` of a record (``"recv"``, ...)."""
    tag: str = record.__struct_config__.tag  # type: ignore[assignment]
    return tag


def iter_records(
    path: str | Path,
    on_error: ErrorHandler | None = None,
    *,
    only: frozenset[str] | None = None,
) -> Iterator[tuple[int, Record]]:
    """``(line number, record)`` for every record of one capture, header included, in file order.

    Blank lines and records of unknown type are skipped. See the module docstring for errors.
    ``only``: yield just these record types (and the header); lines written the way
    :class:`CaptureWriter` writes them are then skipped without being decoded.
    """
    name = str(path)
    try:
        file = _open(Path(path), "rb")
    except OSError as exc:
        raise CaptureError(f"{name}: cannot open: {exc.strerror or exc}") from None
    lineno = 0
    header_seen = False
    with file:
        # gzip and plain files iterate by line; zstandard's reader needs a buffer on top. (Not
        # one over gzip too: a truncated gzip stream would then lose the lines of its last
        # buffer-full instead of only the line that was cut.)
        lines: Iterator[bytes] = (
            iter(file)
            if isinstance(file, io.BufferedIOBase)
            else iter(io.BufferedReader(cast(io.RawIOBase, file)))
        )
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except _STREAM_ERRORS as exc:
                problem = f"cannot read past this line: {type(exc).__name__}: {exc}"
                if on_error is None:
                    raise CaptureError(f"{name}:{lineno + 1}: {problem}") from None
                on_error(name, lineno + 1, problem)
                return
            lineno += 1
            if not line.strip():
                continue
            if only is not None and header_seen and line.startswith(_TYPE_PREFIX):
                end = line.find(b'"', len(_TYPE_PREFIX))
                kind = line[len(_TYPE_PREFIX) : end].decode("ascii", "replace")
                if kind in KNOWN_TYPES and kind not in only:
                    continue
            try:
                record = _decode_line(line)
            except _LINE_ERRORS as exc:
                if on_error is None or not header_seen:
                    raise CaptureError(f"{name}:{lineno}: bad record: {exc}") from None
                on_error(name, lineno, f"bad record: {exc}")
                continue
            if not header_seen:
                if not isinstance(record, Header):
                    raise CaptureError(
                        f"{name}:{lineno}: not a capture (the first record must be a header)"
                    )
                header_seen = True
            if record is not None and (
                only is None or isinstance(record, Header) or record_type(record) in only
            ):
                yield lineno, record


def read_header(path: str | Path) -> Header:
    """The header of a capture; ``CaptureError`` if it has none or an unsupported format."""
    for _, record in iter_records(path):
        if not isinstance(record, Header):  # pragma: no cover - iter_records checks line 1
            break
        if record.format != FORMAT_VERSION:
            raise CaptureError(
                f"{path}:1: capture format {record.format} is not supported "
                f"(this arbd reads format {FORMAT_VERSION})"
            )
        return record
    raise CaptureError(f"{path}: empty capture (no header)")


class Located(msgspec.Struct, frozen=True):
    """A record with where it came from: index of its file in the merge, path and line."""

    file: int
    path: str
    line: int
    record: TimedRecord


def _timed(index: int, path: str | Path, on_error: ErrorHandler | None) -> Iterator[Located]:
    name = str(path)
    for line, record in iter_records(path, on_error):
        if not isinstance(record, Header):
            yield Located(index, name, line, record)


def merge(paths: Sequence[str | Path], on_error: ErrorHandler | None = None) -> Iterator[Located]:
    """Every timed record of ``paths`` in ``ts`` order (headers are not included).

    Stable: equal ``ts`` keep file order (as given), then line order. Each file is assumed to be
    in ``ts`` order already, as a recording is; this streams, it does not sort whole files.
    """
    streams: Iterable[Iterator[Located]] = [
        _timed(i, path, on_error) for i, path in enumerate(paths)
    ]
    return heapq.merge(*streams, key=lambda item: (item.record.ts, item.file, item.line))
