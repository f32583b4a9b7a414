"""Hostile exchange frames: feed one frame to an adapter's session and check the outcome.

The target is a recorded session (a capture, e.g. ``tests/fuzz/seeds/<exchange>.capture.jsonl.gz``
made by ``fuzz/make_seeds.py``): its frames are replayed through fresh sessions of the exchange's
adapter, driven as ``arbd.feed.connection`` drives them (frames in, snapshot requests answered
from the capture's recorded answers at once, a frame error counted and skipped), with one
hostile frame inserted before frame ``at``. :meth:`SessionTarget.check` then requires:

1. ``receive`` raises nothing, or only what the driver counts and skips (``FRAME_ERRORS``);
   the same for ``on_http`` with the recorded answers.
2. No published book is crossed, locked, unsorted, or published while its book is ``invalid``
   or ``resyncing`` (``arbd.testing.conformance.EventChecker``'s book rules).
3. Nothing bad gets in: when the hostile frame was rejected (it raised), every book a later
   frame publishes is one that frame publishes without it, except for a symbol whose book was
   announced (``invalid``, ``resyncing``) in between. A rejected frame leaves no trace in a
   book, in particular no half-applied update (``OrderBook`` empties itself instead, so the
   adapter's next sequence or checksum check resyncs it). Fewer books may come: a frame whose
   envelope carried a sequence number can rightly make the genuine frame with that number a
   duplicate (Coinbase's connection-wide ``sequence_num``).

A broken rule raises :class:`HostileFrameFailure` with a one-line reason. Used by the hypothesis
tests in ``tests/fuzz/`` and the atheris harnesses in ``fuzz/``; usable by plugin authors on a
capture of their own exchange.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from arbd.capture import Connect, Http, Recv, iter_records, nanoseconds, read_header
from arbd.exchange.adapter import (
    FRAME_ERRORS,
    AdapterSettings,
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSession,
    HttpRequest,
    HttpResponse,
)
from arbd.model import CHANNELS, Book, Event, FeedStatus, Subscription
from arbd.plugins import PluginRegistry
from arbd.testing.conformance import EventChecker


class HostileFrameFailure(AssertionError):
    """An adapter broke one of the rules in the module docstring."""


@dataclass(frozen=True)
class SeedFrame:
    conn: str
    data: bytes
    is_text: bool
    received_ns: int


@dataclass
class FrameOutcome:
    """What one frame did: its events (as the driver publishes them) and how it ended."""

    events: list[Event] = field(default_factory=list)
    error: BaseException | None = None
    ignored: bool = False


def _path_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


class _BookRules(EventChecker):
    """``EventChecker`` restricted to books and their statuses: what a hostile frame must never
    break. (Quotes and trades carry the exchange's text as given; the engine tolerates any.)"""

    def check(self, event: Event) -> None:
        if isinstance(event, FeedStatus | Book):
            # Not the sequence rule: a snapshot may restart it, and OKX documents updates
            # whose seqId goes back (maintenance resets).
            self._book_seq.clear()
            super().check(event)


class _Run:
    """Fresh sessions for every connection of the capture, driven frame by frame."""

    def __init__(self, target: SessionTarget) -> None:
        self.target = target
        self.sessions: dict[str, ExchangeSession] = {}
        self.used: set[int] = set()
        self.rules = _BookRules()
        # A fresh adapter too: adapters may keep state across their sessions (Coinbase skips
        # trade ids any of its sessions already published).
        adapter = target.new_adapter()
        for connect in target.connects:
            subs = tuple(Subscription(channel, symbol) for channel, symbol in connect.subs or ())
            session = adapter.new_session(ConnectionPlan(url=connect.url, subscriptions=subs))
            session.start(nanoseconds(connect.ts))
            session.take_frames()
            self.sessions[connect.conn] = session

    def feed(self, frame: SeedFrame) -> FrameOutcome:
        session = self.sessions[frame.conn]
        outcome = FrameOutcome()
        ignored = session.stats.ignored
        try:
            session.receive(frame.data, frame.is_text, frame.received_ns, outcome.events)
        except FRAME_ERRORS as exc:
            outcome.error = exc
        except Exception as exc:
            raise HostileFrameFailure(
                f"{self.target.exchange}: receive raised {type(exc).__name__}: {exc}"
            ) from exc
        outcome.ignored = session.stats.ignored > ignored
        self._collect(session, frame.received_ns, outcome.events)
        self.rules(outcome.events)
        if self.rules.problems:
            raise HostileFrameFailure(f"{self.target.exchange}: {self.rules.problems[0]}")
        return outcome

    def _collect(self, session: ExchangeSession, now_ns: int, out: list[Event]) -> None:
        """What the driver does after each message: send the frames, carry out the requests
        (answered here from the capture at once) and publish the session's own events."""
        for _ in range(100):  # an answer may ask again (a snapshot too old): bounded
            out.extend(session.take_events())
            session.take_frames()
            requests = session.take_http_requests()
            if not requests:
                return
            for request in requests:
                self._answer(session, request, now_ns, out)
        raise HostileFrameFailure(f"{self.target.exchange}: HTTP requests never stop")

    def _answer(
        self, session: ExchangeSession, request: HttpRequest, now_ns: int, out: list[Event]
    ) -> None:
        record = self.target.answer(request, self.used)
        if record is None:
            session.on_http_failed(request, "no recorded answer", out)
            return
        response = HttpResponse(
            request=request, status=record.status, body=record.body(), received_ns=now_ns
        )
        try:
            session.on_http(response, out)
        except FRAME_ERRORS as exc:
            session.on_http_failed(request, f"unparseable response: {exc}", out)
        except Exception as exc:
            raise HostileFrameFailure(
                f"{self.target.exchange}: on_http raised {type(exc).__name__}: {exc}"
            ) from exc


class SessionTarget:
    """One capture's frames and adapter, ready to take hostile frames (see the module doc)."""

    def __init__(self, capture: str | Path, registry: PluginRegistry) -> None:
        self.exchange = read_header(capture).exchange
        self.connects: list[Connect] = []
        self.frames: list[SeedFrame] = []
        self.http: list[Http] = []
        for _, record in iter_records(capture):
            if isinstance(record, Connect):
                self.connects.append(record)
            elif isinstance(record, Recv):
                frame = SeedFrame(
                    record.conn, record.payload(), record.is_text, nanoseconds(record.ts)
                )
                self.frames.append(frame)
            elif isinstance(record, Http):
                self.http.append(record)
        self.adapter_cls = registry.exchanges[self.exchange]
        self.adapter = self.new_adapter()
        self.symbols = sorted(self.adapter.settings.symbols)
        self.natives = sorted(i.native for i in self.adapter.instruments.values())
        reference = _Run(self)
        self.reference = [reference.feed(frame).events for frame in self.frames]
        """Events of every frame when no hostile frame is inserted."""

    def new_adapter(self) -> ExchangeAdapter:
        """The exchange's adapter for the capture's symbols, instruments loaded."""
        cls = self.adapter_cls
        symbols = sorted({symbol for c in self.connects for _, symbol in (c.subs or ())})
        adapter = cls(
            AdapterSettings(
                ws_url=self.connects[0].url,
                rest_url=cls.spec.rest_url,
                symbols=tuple(symbols),
                channels=tuple(c for c in CHANNELS if c in cls.spec.channels),
                book_depth=20,
            )
        )
        used: set[int] = set()
        responses = []
        for request in adapter.instrument_requests():
            record = self.answer(request, used)
            assert record is not None, f"capture has no answer to {request.url}"
            responses.append(
                HttpResponse(
                    request=request, status=record.status, body=record.body(), received_ns=1
                )
            )
        adapter.load_instruments(responses)
        return adapter

    def answer(self, request: HttpRequest, used: set[int]) -> Http | None:
        """The first recorded answer to ``request`` not used yet, else the last one."""
        key = _path_key(request.url)
        last = None
        for index, record in enumerate(self.http):
            if _path_key(record.url) == key:
                last = record
                if index not in used:
                    used.add(index)
                    return record
        return last

    def check(self, hostile: bytes, at: int, *, is_text: bool = True) -> FrameOutcome:
        """Replay the capture with ``hostile`` inserted before frame ``at`` (clamped; on that
        frame's connection, at its time) and check the rules. Returns the hostile frame's
        outcome; raises :class:`HostileFrameFailure`."""
        frames: Sequence[SeedFrame] = self.frames
        at = max(0, min(at, len(frames) - 1))
        run = _Run(self)
        for frame in frames[:at]:
            run.feed(frame)
        place = frames[at]
        outcome = run.feed(SeedFrame(place.conn, hostile, is_text, place.received_ns))
        # Symbols whose book was announced (invalid, resyncing) since the hostile frame: from
        # then on their books may rightly differ from the reference.
        announced = _announced(outcome.events)
        for index in range(at, len(frames)):
            events = run.feed(frames[index]).events
            announced |= _announced(events)
            if outcome.error is None:
                continue
            want = _books(self.reference[index], announced)
            for book in _books(events, announced):
                if book not in want:
                    raise HostileFrameFailure(
                        f"{self.exchange}: after a rejected frame ({_describe(outcome)}) frame "
                        f"{index} published a book it does not publish without it: "
                        f"{str(book)[:300]} (without it: {str(want)[:300]})"
                    )
        return outcome


def _announced(events: list[Event]) -> set[str]:
    return {e.symbol for e in events if isinstance(e, FeedStatus) and e.scope == "book"}


def _books(events: list[Event], skip: set[str]) -> list[Event]:
    return [e for e in events if isinstance(e, Book) and e.symbol not in skip]


def _describe(outcome: FrameOutcome) -> str:
    if outcome.error is not None:
        return f"{type(outcome.error).__name__}: {str(outcome.error)[:120]}"
    return "ignored"
