"""A conformance check for exchange adapters: run one against a capture or a fake, then verify
what every adapter owes its users.

Checked on the published events (:class:`EventChecker`, usable on any event stream):

* no crossed or locked book (best bid < best ask), levels sorted best-first, no zero sizes;
* no book published while its symbol's book status is ``invalid`` or ``resyncing``;
* book sequence numbers never go backwards for a symbol (a resync may restart them);
* no crossed quote; symbols are ``BASE/QUOTE``; prices and sizes are decimal text.

Checked on the frames: every frame was handled or explicitly ignored (none failed to parse);
against a fake without faults also no sequence gap, checksum failure or crossed book.

From a test::

    report = await check_fake(MyFake(), MyAdapter, symbols=["BTC/USDT"], rounds=100)
    assert report.ok, report.summary()

    report = check_capture(["mine.capture.jsonl.gz"], load_plugins())
    assert report.ok, report.summary()
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

import trio

from arbd.exchange.adapter import ExchangeAdapter, SessionStats
from arbd.hub import Hub
from arbd.model import Arbitrage, Book, Candle, Event, FeedStatus, Quote, Trade
from arbd.plugins import PluginRegistry
from arbd.replay import replay, sum_stats
from arbd.testing.fake import FakeExchangeServer, open_fake
from arbd.testing.harness import Harness, run_feed

MAX_PROBLEMS: Final = 50
"""Problems listed in full; more are counted."""


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


class EventChecker:
    """Feeds on events (call it with a batch, as a hub processor) and records every broken
    invariant as one line naming the event."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.problem_count = 0
        self.counts: Counter[str] = Counter()
        self._book_state: dict[tuple[str, str], str] = {}
        self._book_seq: dict[tuple[str, str], int] = {}

    def __call__(self, batch: Sequence[Event]) -> list[Event]:
        for event in batch:
            self.check(event)
        return []

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def check(self, event: Event) -> None:
        self.counts[type(event).__name__] += 1
        if isinstance(event, Arbitrage):
            return  # derived by the engine, not an adapter's output
        where = f"{event.exchange} {event.symbol or '-'}"
        if isinstance(event, FeedStatus):
            if event.scope == "book":
                key = (event.exchange, event.symbol)
                self._book_state[key] = event.state
                if event.state != "valid":
                    self._book_seq.pop(key, None)
            return
        base, slash, quote = event.symbol.partition("/")
        if not (slash and base and quote and event.symbol == event.symbol.upper()):
            self.problem(f"{where}: symbol {event.symbol!r} is not BASE/QUOTE")
        if isinstance(event, Book):
            self._check_book(event, where)
        elif isinstance(event, Quote):
            self._check_numbers(
                where, "price", event.bid, event.ask, event.bid_size, event.ask_size
            )
            bid, ask = _decimal(event.bid), _decimal(event.ask)
            if bid is not None and ask is not None and bid >= ask:
                self.problem(f"{where}: crossed or locked quote {event.bid} / {event.ask}")
        elif isinstance(event, Trade):
            self._check_numbers(where, "trade", event.price, event.size)
        elif isinstance(event, Candle):
            self._check_numbers(
                where, "candle", event.open, event.high, event.low, event.close, event.volume
            )

    def _check_numbers(self, where: str, kind: str, *texts: str) -> None:
        for text in texts:
            if text and _decimal(text) is None:
                self.problem(f"{where}: {kind} field {text!r} is not a decimal number")

    def _check_book(self, book: Book, where: str) -> None:
        key = (book.exchange, book.symbol)
        state = self._book_state.get(key)
        if state in ("invalid", "resyncing"):
            self.problem(f"{where}: book published while its status is {state}")
        bids = [(_decimal(p), _decimal(s)) for p, s in book.bids]
        asks = [(_decimal(p), _decimal(s)) for p, s in book.asks]
        levels = bids + asks
        if any(p is None or s is None for p, s in levels):
            self.problem(f"{where}: book level that is not a decimal number")
            return
        if any(s is not None and s <= 0 for _, s in levels):
            self.problem(f"{where}: book level with size <= 0")
        bid_prices = [p for p, _ in bids]
        ask_prices = [p for p, _ in asks]
        if any(a <= b for a, b in itertools.pairwise(bid_prices) if a and b):
            self.problem(f"{where}: bids not strictly descending")
        if any(a >= b for a, b in itertools.pairwise(ask_prices) if a and b):
            self.problem(f"{where}: asks not strictly ascending")
        best_bid = bid_prices[0] if bid_prices else None
        best_ask = ask_prices[0] if ask_prices else None
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            self.problem(
                f"{where}: crossed or locked book published "
                f"(bid {book.bids[0][0]} >= ask {book.asks[0][0]})"
            )
        if book.sequence is not None:
            last = self._book_seq.get(key)
            if last is not None and book.sequence < last:
                self.problem(f"{where}: book sequence went back from {last} to {book.sequence}")
            self._book_seq[key] = book.sequence


@dataclass
class ConformanceReport:
    """What a conformance run saw; ``ok`` when nothing is wrong."""

    source: str
    frames: int
    unparsed: int
    """Frames that failed to parse (garbage the adapter rejected): must be 0 on clean input."""
    sessions: SessionStats
    events: Counter[str]
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    strict: bool = True
    """Clean input (a fake without faults): gaps, checksum failures and crossed books count
    as problems too."""

    @property
    def integrity_failures(self) -> int:
        s = self.sessions
        return s.sequence_gaps + s.checksum_failures + s.crossed_books

    @property
    def ok(self) -> bool:
        if self.problem_count or self.unparsed or not self.frames:
            return False
        return not (self.strict and self.integrity_failures)

    def summary(self) -> str:
        s = self.sessions
        lines = [
            f"{self.source}: {'OK' if self.ok else 'FAILED'}: {self.frames} frames "
            f"({s.ignored} ignored, {self.unparsed} unparsed), events "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())),
            f"  gaps {s.sequence_gaps}, checksum failures {s.checksum_failures}, "
            f"crossed books {s.crossed_books}, resyncs {s.book_resyncs}, "
            f"exchange errors {s.errors_reported}",
        ]
        if not self.frames:
            lines.append("  no frames were handled")
        lines.extend(f"  {p}" for p in self.problems)
        if self.problem_count > len(self.problems):
            lines.append(f"  ... and {self.problem_count - len(self.problems)} more problems")
        return "\n".join(lines)


def check_events(events: Iterable[Event]) -> list[str]:
    """The invariant violations in an event stream (empty when it conforms)."""
    checker = EventChecker()
    checker(list(events))
    return checker.problems


def check_capture(
    paths: Sequence[str | Path], registry: PluginRegistry, *, strict: bool = False
) -> ConformanceReport:
    """Replay captures through their adapters (as ``arbd replay`` does) and check the result.

    Real captures may hold real gaps, so ``strict`` is off by default: integrity failures are
    reported, and the adapter's handling of them is what the event checks verify.
    """
    checker = EventChecker()
    hub = Hub()
    hub.add_processor(checker)
    errors = io.StringIO()
    stats = replay(paths, registry, io.BytesIO(), hub=hub, err=errors)
    problems = list(checker.problems)
    problems.extend(line for line in errors.getvalue().splitlines()[:MAX_PROBLEMS])
    return ConformanceReport(
        source=", ".join(str(p) for p in paths),
        frames=stats.frames,
        unparsed=stats.skipped_frames,
        sessions=stats.sessions,
        events=checker.counts,
        problems=problems,
        problem_count=checker.problem_count + stats.bad_records,
        strict=strict,
    )


async def check_fake(
    fake: FakeExchangeServer,
    adapter_cls: type[ExchangeAdapter],
    *,
    symbols: Sequence[str] | None = None,
    rounds: int = 100,
    timeout: float = 30.0,  # noqa: ASYNC109 - bounds the whole run, fake serving included
) -> ConformanceReport:
    """Run ``adapter_cls`` through arbd's real feed against ``fake`` (served here on loopback),
    make data until every subscription has delivered, then pump ``rounds`` more rounds, and
    check.

    ``fake`` must make market data (implement ``emit_round``, as ``MarketFake`` does); every
    channel the adapter offers is subscribed for ``symbols`` (default: its default symbols).
    """
    pump = fake.pump
    wanted = tuple(symbols or adapter_cls.spec.default_symbols)
    checker = EventChecker()
    with trio.fail_after(timeout):
        async with open_fake(fake), run_feed(fake, adapter_cls, symbols=wanted) as harness:
            # Subscriptions are acknowledged at the exchange's pace: make data until every
            # subscribed (channel, symbol) has delivered, then the counted rounds.
            while not _all_delivered(harness, wanted, adapter_cls.spec.channels):
                await pump(1)
                await trio.sleep(0.02)
            for _ in range(rounds):
                await pump(1)
            await _settle(harness)
            checker(list(harness.events))
            sessions = [c.session.stats for c in harness.connections]
            frames = sum(c.stats.frames for c in harness.connections)
            decode_errors = sum(c.stats.decode_errors for c in harness.connections)
    return ConformanceReport(
        source=f"{adapter_cls.spec.id} against {type(fake).__name__}",
        frames=frames,
        unparsed=decode_errors,
        sessions=sum_stats(sessions),
        events=checker.counts,
        problems=checker.problems,
        problem_count=checker.problem_count,
        strict=True,
    )


_EVENT_OF: Final = {"price": Quote, "trades": Trade, "book": Book, "candles": Candle}


def _all_delivered(harness: Harness, symbols: Sequence[str], channels: Sequence[str]) -> bool:
    seen = {(type(e), e.symbol) for e in harness.events}
    return all((_EVENT_OF[c], s) in seen for c in channels if c in _EVENT_OF for s in symbols)


async def _settle(harness: Harness) -> None:
    """Wait until no new event arrived for 50 ms (the last frames are through the client)."""
    seen = -1
    while seen != len(harness.events):
        seen = len(harness.events)
        await trio.sleep(0.05)
