"""Replay captures through the same adapters and hub the daemon runs, writing events as JSON lines.

``replay(paths, registry, out)`` is pure and synchronous: no trio, no clock, no network. Time
inside a replay is the captures' ``ts``, so the same captures always give byte-identical output.

Per capture (the header's ``exchange`` picks the adapter class from the plugin registry):

1. The adapter is built with settings taken from the capture: the symbols are the union of the
   ``subs`` of its ``connect`` records, or, when no record has ``subs``, every instrument the
   recorded instrument answers list; channels are every channel the adapter offers; the WebSocket
   URL is the first ``connect`` URL; the REST URL is the configured one or the adapter's default.
2. ``adapter.instrument_requests()`` are answered from the capture's ``http`` records, matched by
   URL path and query (never host: a fake on 127.0.0.1 and the real exchange differ only there),
   first matching record in file order.

Then every capture's records are merged by ``ts`` (``arbd.capture.merge``) and replayed:

- ``connect``: a new session, ``adapter.new_session(ConnectionPlan(url, subs or ()))``, then
  ``session.start(ts)``; frames a session queues are dropped (the capture shows what was sent).
- ``recv``: ``session.receive(...)``; the events go through one ``arbd.hub.Hub`` (so processors
  such as the arbitrage engine run as live) and every published event is one output line.
- HTTP requests a session makes (book snapshots) are matched, when made, to the first unused
  ``http`` record of the same capture with the same path and query that comes later in the
  replay order, and delivered with ``session.on_http`` when the replay reaches that record, as the
  live driver delivered it. No such record: :class:`arbd.errors.CaptureError` naming the URL.
- ``disconnect``: the session is dropped. ``send`` records are not replayed.

Unless ``[arbitrage] enabled = false``, the arbitrage engine runs on the hub as in the daemon
(fees from the configuration or the adapters, lot sizes from the recorded instrument lists).
Its clock is the capture's: each record's ``ts`` first drives ``engine.tick`` (at most once per
``arbitrage.tick_interval`` of capture time, like the daemon's tick task), and after the last
record every opportunity still open is closed with reason ``shutdown``.

A frame the adapter cannot parse (the errors the live driver counts and skips) is reported as one
line ``file:line: cannot parse frame: <reason>`` and skipped, as is a damaged capture line
(``file:line: bad record: ...``); both are counted in the returned :class:`ReplayStats`.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, cast
from urllib.parse import urlsplit

import msgspec

from arbd.arbitrage.engine import ArbitrageEngine
from arbd.arbitrage.fees import taker_fees
from arbd.capture import (
    Connect,
    Disconnect,
    Http,
    Located,
    Recv,
    iter_records,
    merge,
    nanoseconds,
    read_header,
)
from arbd.config import Config
from arbd.errors import ArbdError, CaptureError, ConfigError
from arbd.exchange.adapter import (
    FRAME_ERRORS,
    AdapterSettings,
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSession,
    HttpRequest,
    HttpResponse,
    SessionStats,
)
from arbd.hub import Hub
from arbd.model import CHANNELS, Event, Subscription
from arbd.plugins import PluginRegistry


class ReplayStats(msgspec.Struct, kw_only=True):
    records: int = 0
    """Timed records read (headers not counted)."""
    frames: int = 0
    """``recv`` records handed to a session."""
    events: int = 0
    """Lines written."""
    skipped_frames: int = 0
    """Frames (and HTTP answers) the adapter could not parse."""
    bad_records: int = 0
    """Capture lines that could not be read, or refer to a connection never opened."""
    sessions: SessionStats = msgspec.field(default_factory=SessionStats)
    """The adapter sessions' counters, summed over every replayed connection."""


def _path_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"


class _HttpRecord(msgspec.Struct):
    line: int
    record: Http
    used: bool = False


class _Capture:
    """One capture file's adapter, its recorded HTTP answers and its open sessions."""

    def __init__(
        self, index: int, path: str, adapter: ExchangeAdapter, http: list[_HttpRecord]
    ) -> None:
        self.index = index
        self.path = path
        self.adapter = adapter
        self.http = http
        self.sessions: dict[str, ExchangeSession] = {}
        # line of an http record -> the (conn, session, request) it answers, once matched.
        self.pending: dict[int, tuple[str, ExchangeSession, HttpRequest]] = {}

    def match(self, request: HttpRequest, after: tuple[float, int]) -> _HttpRecord:
        """The first unused recorded answer to ``request`` that comes after ``after``."""
        key = _path_key(request.url)
        for item in self.http:
            if (
                not item.used
                and (item.record.ts, item.line) > after
                and _path_key(item.record.url) == key
            ):
                item.used = True
                return item
        raise CaptureError(
            f"{self.path}: no recorded answer to {request.url} (purpose {request.purpose!r}) "
            f"after line {after[1]}; the capture has no unused http record for {key}"
        )


def _scan(path: str) -> tuple[list[_HttpRecord], list[Connect]]:
    """The http and connect records of a capture (a first, silent pass: replay reports)."""
    http: list[_HttpRecord] = []
    connects: list[Connect] = []
    wanted = frozenset({"http", "connect"})
    for line, record in iter_records(path, on_error=lambda *_: None, only=wanted):
        if isinstance(record, Http):
            http.append(_HttpRecord(line, record))
        elif isinstance(record, Connect):
            connects.append(record)
    return http, connects


def _load_instruments(adapter: ExchangeAdapter, capture: str, http: list[_HttpRecord]) -> None:
    responses = []
    for request in adapter.instrument_requests():
        key = _path_key(request.url)
        found = next((h for h in http if not h.used and _path_key(h.record.url) == key), None)
        if found is None:
            raise CaptureError(
                f"{capture}: no recorded answer to instrument request {request.url} "
                f"(the capture has no http record for {key})"
            )
        found.used = True
        try:
            body = found.record.body()
        except ValueError as exc:  # bad base64
            raise CaptureError(f"{capture}:{found.line}: bad record: {exc}") from None
        responses.append(
            HttpResponse(
                request=request,
                status=found.record.status,
                body=body,
                received_ns=nanoseconds(found.record.ts),
            )
        )
    try:
        adapter.load_instruments(responses)
    except ConfigError as exc:
        raise CaptureError(f"{capture}: {exc.problem}") from None
    except ArbdError as exc:  # RestError for a recorded failure, ProtocolError for garbage
        raise CaptureError(f"{capture}: cannot load instruments: {_reason(exc)}") from None
    except FRAME_ERRORS as exc:
        raise CaptureError(f"{capture}: cannot load instruments: {_reason(exc)}") from None


def _build_adapter(
    index: int, path: str, registry: PluginRegistry, config: Config | None
) -> _Capture:
    header = read_header(path)
    cls = registry.exchanges.get(header.exchange)
    if cls is None:
        installed = ", ".join(sorted(registry.exchanges)) or "none"
        raise CaptureError(
            f"{path}: recorded from exchange {header.exchange!r}, which no installed plugin "
            f"provides (installed: {installed})"
        )
    spec = cls.spec
    http, connects = _scan(path)
    configured = config.exchanges.get(spec.id) if config is not None else None
    symbols = sorted({symbol for c in connects for _, symbol in (c.subs or ())})
    settings = AdapterSettings(
        ws_url=connects[0].url if connects else spec.ws_url,
        rest_url=(configured.rest_url if configured and configured.rest_url else spec.rest_url),
        symbols=tuple(symbols),
        channels=tuple(c for c in CHANNELS if c in spec.channels),
        book_depth=configured.book_depth if configured else 20,
    )
    adapter = cls(settings)
    _load_instruments(adapter, path, http)
    if not symbols and adapter.instruments:
        # No subscriptions recorded: replay as if every listed instrument was configured.
        settings = msgspec.structs.replace(settings, symbols=tuple(sorted(adapter.instruments)))
        for item in http:
            item.used = False
        adapter = cls(settings)
        _load_instruments(adapter, path, http)
    return _Capture(index, path, adapter, http)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ArbdError):
        return text or "protocol error"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Writer:
    """Writes published events, one JSON line each, to a binary or text stream."""

    def __init__(self, out: IO[bytes] | IO[str]) -> None:
        self.text: IO[str] | None = None
        self.binary: IO[bytes] | None = None
        if isinstance(out, io.TextIOBase):
            self.text = cast("IO[str]", out)
        else:
            self.binary = cast("IO[bytes]", out)
        self.lines = 0

    def write(self, encoded: bytes) -> None:
        if self.binary is not None:
            self.binary.write(encoded + b"\n")
        elif self.text is not None:
            self.text.write(encoded.decode() + "\n")
        self.lines += 1


def replay(
    paths: Sequence[str | Path],
    registry: PluginRegistry,
    out: IO[bytes] | IO[str],
    config: Config | None = None,
    *,
    hub: Hub | None = None,
    err: IO[str] | None = None,
) -> ReplayStats:
    """Replay ``paths`` (merged by time) and write every published event to ``out``.

    ``hub`` lets the caller add processors first (they run before the arbitrage engine, which
    is added to it); ``err`` receives the one-line reports of skipped frames and records
    (default ``sys.stderr``). Raises :class:`CaptureError` for an unreadable capture or an
    unanswerable request.
    """
    errors = sys.stderr if err is None else err
    hub = Hub() if hub is None else hub
    # Drained after every publish, so the buffer only ever holds one batch.
    sink = hub.subscribe(capacity=1 << 20, policy="disconnect", encoded=True)
    writer = _Writer(out)
    stats = ReplayStats()
    captures = [_build_adapter(i, str(p), registry, config) for i, p in enumerate(paths)]
    opened: list[ExchangeSession] = []
    engine = _arbitrage_engine(captures, config)
    if engine is not None:
        hub.add_processor(engine)
    tick_ns = round((config or Config()).arbitrage.tick_interval * 1e9)
    next_tick = 0

    def report(path: str, line: int, problem: str) -> None:
        stats.bad_records += 1
        errors.write(f"{path}:{line}: {problem}\n")

    def publish(events: list[Event]) -> None:
        if not events:
            return
        hub.publish(events)
        if sink.overflowed:  # pragma: no cover - one batch cannot exceed the capacity
            raise CaptureError("replay: event buffer overflowed")
        for item in sink.drain():
            assert isinstance(item, bytes)
            writer.write(item)

    def after(capture: _Capture, conn: str, session: ExchangeSession, here: Located) -> None:
        # Frames a session queues are what the live driver would send: the capture already
        # shows what was sent, and nothing answers them here.
        session.take_frames()
        for request in session.take_http_requests():
            match = capture.match(request, (here.record.ts, here.line))
            capture.pending[match.line] = (conn, session, request)

    for item in merge([c.path for c in captures], on_error=report):
        stats.records += 1
        capture = captures[item.file]
        record = item.record
        ts_ns = nanoseconds(record.ts)
        if engine is not None and ts_ns >= next_tick:
            publish(engine.tick(ts_ns))
            next_tick = ts_ns + tick_ns
        if isinstance(record, Connect):
            offered = capture.adapter.spec.channels
            unknown = next((c for c, _ in record.subs or () if c not in offered), None)
            if unknown is not None:  # a damaged line: no session can carry it
                report(item.path, item.line, f"bad record: unknown channel {unknown!r} in subs")
                continue
            subs = tuple(Subscription(channel, symbol) for channel, symbol in record.subs or ())
            plan = ConnectionPlan(url=record.url, subscriptions=subs)
            session = capture.adapter.new_session(plan)
            capture.sessions[record.conn] = session
            opened.append(session)
            session.start(ts_ns)
            after(capture, record.conn, session, item)
        elif isinstance(record, Recv):
            found = capture.sessions.get(record.conn)
            if found is None:
                problem = f"recv on connection {record.conn!r}, which is not open"
                report(item.path, item.line, problem)
                continue
            events: list[Event] = []
            stats.frames += 1
            try:
                found.receive(record.payload(), record.is_text, ts_ns, events)
            except FRAME_ERRORS as exc:
                # Events of a frame that failed half-way are dropped with it.
                stats.skipped_frames += 1
                errors.write(f"{item.path}:{item.line}: cannot parse frame: {_reason(exc)}\n")
            else:
                publish(events)
            after(capture, record.conn, found, item)
        elif isinstance(record, Http):
            pending = capture.pending.pop(item.line, None)
            if pending is None:
                continue
            conn, target, request = pending
            if capture.sessions.get(conn) is not target:
                continue  # the connection closed before its answer arrived: live drops it too
            events = []
            try:
                response = HttpResponse(
                    request=request, status=record.status, body=record.body(), received_ns=ts_ns
                )
                target.on_http(response, events)
            except FRAME_ERRORS as exc:
                stats.skipped_frames += 1
                errors.write(f"{item.path}:{item.line}: cannot parse http answer: {_reason(exc)}\n")
            else:
                publish(events)
            after(capture, conn, target, item)
        elif isinstance(record, Disconnect):
            capture.sessions.pop(record.conn, None)
    if engine is not None:
        publish(engine.close_all("shutdown"))
    hub.unsubscribe(sink)
    stats.events = writer.lines
    stats.sessions = sum_stats(s.stats for s in opened)
    return stats


def _arbitrage_engine(captures: list[_Capture], config: Config | None) -> ArbitrageEngine | None:
    """The engine as the daemon would build it for these captures' exchanges."""
    config = config or Config()
    if not config.arbitrage.enabled:
        return None
    adapters = {c.adapter.spec.id: c.adapter for c in captures}
    fees = taker_fees((a.spec for a in adapters.values()), config.exchanges)

    def lot_size(exchange: str, symbol: str) -> str | None:
        adapter = adapters.get(exchange)
        instrument = adapter.instruments.get(symbol) if adapter is not None else None
        return instrument.lot_size if instrument is not None else None

    return ArbitrageEngine(config.arbitrage, fees, lot_size)


def sum_stats(items: Iterable[SessionStats]) -> SessionStats:
    """Field-wise sum of session counters."""
    total = SessionStats()
    for item in items:
        for name in SessionStats.__struct_fields__:
            setattr(total, name, getattr(total, name) + getattr(item, name))
    return total
