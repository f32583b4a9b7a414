"""Ingest per exchange, one core: captured frames through adapter + books + hub + arbitrage
engine, and cryptofeed's parsers on the same frames.

For each exchange a capture is generated first (``_captures.py``): arbd's real feed runs against
the exchange's fake over loopback for ``--rounds`` rounds of market data (all four channels, the
adapter's default symbols), recorded as ``arbd record`` does. Then, without sockets:

* **arbd, full pipeline**: every recorded frame goes through the adapter session's ``receive``
  (book snapshots it asks for over REST are answered from the capture at once), and each
  frame's events are published at once with ``Daemon.publish``: a real :class:`arbd.hub.Hub`
  with the daemon's arbitrage processor, on a :class:`arbd.daemon.Daemon` built for every
  recorded exchange (instruments loaded from the captures). The other exchanges' captures are
  fed in between, untimed, so each quote and book update is judged against a full quote group,
  as in a daemon running all five (see :class:`Pipeline`). No local client is connected (the
  fan-out is measured by ``fanout.py`` and ``end_to_end.py``).
* **arbd, adapter only**: the same, events dropped instead of published (the earlier figure).
* **cryptofeed** (``pip install cryptofeed``, the ``bench`` extra; ``_cryptofeed.py``): the
  frames its parser for that exchange accepts go through the feed's ``message_handler`` with
  no-op callbacks. arbd is timed on exactly that subset too, so the ratio compares like with
  like: cryptofeed's complete normalization (its order books included) against arbd's.
  cryptofeed is timed alone (against arbd's adapter alone) and amid the same schedules as
  arbd's full pipeline, the other exchanges' reads going through arbd untimed in between
  (against arbd's full pipeline): that other work evicts each one's code and data from the
  CPU caches between reads, ~2 µs per book frame at 64 KiB reads here, and both pay it.
* **quotes**: the frames that make only ``price`` events (Binance ``bookTicker``, Bybit
  ``orderbook.1``, OKX ``bbo-tbt``, ...), through the full pipeline: the quote rate.

All are interleaved run by run and the median of ``--runs`` is shown.

Run:  python benchmarks/adapters.py [--rounds 2000] [--runs 5] [--exchanges binance okx]
      [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import trio

from arbd.config import Config, ControlConfig, ExchangeConfig, MetricsConfig, ServerConfig
from arbd.daemon import Daemon
from arbd.exchange.adapter import (
    AdapterSettings,
    ConnectionPlan,
    ExchangeAdapter,
    ExchangeSession,
    HttpResponse,
)
from arbd.model import CHANNELS, Event, Quote, Subscription
from arbd.plugins import PluginRegistry, load_plugins

sys.path.insert(0, os.path.dirname(__file__))
from _captures import Workload, load, record
from _cryptofeed import SHIMS, CryptofeedShim, Step, time_cryptofeed
from _results import emit, report, table

MIN_QUOTES = 50
"""Fewer quote-only frames than this make no row: too few to time."""
READ_BYTES = 64 * 1024
"""One socket read of a saturated daemon (the feed asks for up to 256 KiB; this is cautious)."""
Frame = tuple[str, bytes, bool]
Frames = list[Frame]
Schedule = list[tuple[bool, str, Frames]]
Sink = Callable[[Sequence[Event]], None]

# -- arbd ---------------------------------------------------------------------------------------


def symbols_of(work: Workload) -> list[str]:
    return sorted({symbol for c in work.connects for _, symbol in (c.subs or ())})


def load_instruments(adapter: ExchangeAdapter, work: Workload) -> None:
    responses = [
        HttpResponse(request=r, status=200, body=work.answer(r.url).body(), received_ns=1)
        for r in adapter.instrument_requests()
    ]
    adapter.load_instruments(responses)


def arbd_sessions(
    registry: PluginRegistry, work: Workload
) -> tuple[ExchangeAdapter, dict[str, ExchangeSession]]:
    cls = registry.exchanges[work.exchange]
    adapter = cls(
        AdapterSettings(
            ws_url=work.connects[0].url,
            rest_url=cls.spec.rest_url,
            symbols=tuple(symbols_of(work)),
            channels=tuple(c for c in CHANNELS if c in cls.spec.channels),
            book_depth=20,
        )
    )
    load_instruments(adapter, work)
    sessions = {}
    for c in work.connects:
        subs = tuple(Subscription(ch, sym) for ch, sym in c.subs or ())
        session = adapter.new_session(ConnectionPlan(url=c.url, subscriptions=subs))
        session.start(1)
        session.take_frames()
        sessions[c.conn] = session
    return adapter, sessions


def receive(
    session: ExchangeSession, work: Workload, payload: bytes, is_text: bool, out: list[Event]
) -> None:
    """One frame through its session as a read of its own."""
    session.receive(payload, is_text, 1, out)
    if session.has_output:
        collect(session, work, out)


def collect(session: ExchangeSession, work: Workload, out: list[Event]) -> None:
    """What the driver does after a read when the session has output: the REST requests it
    made are answered, here at once from the capture; frames to send are dropped."""
    for request in session.take_http_requests():
        body = work.answer(request.url).body()
        session.on_http(HttpResponse(request=request, status=200, body=body, received_ns=1), out)
    session.take_frames()


def feed(
    sessions: dict[str, ExchangeSession], work: Workload, frames: Frames, sink: Sink | None
) -> int:
    """Every frame through its session, each frame's events handed to ``sink`` at once (as
    cryptofeed hands each object to its callback); returns the events made."""
    out: list[Event] = []
    events = 0
    for conn, payload, is_text in frames:
        receive(sessions[conn], work, payload, is_text, out)
        if out:
            if sink is not None:
                sink(out)  # Hub.publish copies the batch
            events += len(out)
            out.clear()
    return events


def time_adapter(registry: PluginRegistry, work: Workload, frames: Frames, warm: Frames) -> float:
    """Seconds for ``frames`` through fresh sessions, events dropped (``warm`` first, untimed)."""
    _, sessions = arbd_sessions(registry, work)
    feed(sessions, work, warm, None)
    gc.collect()
    started = time.perf_counter()
    events = feed(sessions, work, frames, None)
    elapsed = time.perf_counter() - started
    if not events:
        raise RuntimeError(f"{work.exchange}: {len(frames)} frames made no events")
    return elapsed


def reads(picked: list[tuple[int, Frame, bool]], read_bytes: int) -> list[tuple[int, bool, Frames]]:
    """``(index, frame, timed)`` of one capture grouped into socket reads ``(index of the
    last frame, timed, frames)``: consecutive frames of one connection until their payloads
    reach ``read_bytes`` (0: one frame each), never mixing timed and untimed frames."""
    done: list[tuple[int, bool, Frames]] = []
    building: dict[str, tuple[int, bool, Frames, int]] = {}
    for i, item, is_timed in picked:
        conn = item[0]
        current = building.get(conn)
        if current is not None and current[1] != is_timed:
            done.append(current[:3])
            current = None
        read, size = (current[2], current[3]) if current is not None else ([], 0)
        read.append(item)
        size += len(item[1])
        if size >= read_bytes:
            building.pop(conn, None)
            done.append((i, is_timed, read))
        else:
            building[conn] = (i, is_timed, read, size)
    done += [current[:3] for current in building.values()]
    return done


class Pipeline:
    """The full pipeline as a daemon running every recorded exchange sees it.

    A run builds a fresh :class:`~arbd.daemon.Daemon` configured for every recorded exchange
    (instruments loaded from the captures, no I/O started) and fresh sessions, then feeds it
    the frames of all the captures merged: the fakes share one seeded market simulator and
    step it once per round, so a frame's position in its capture says where the market was,
    and merging by that position keeps the exchanges' prices together as live. Only the
    measured exchange's chosen frames are timed, each from its ``receive`` to the end of its
    ``Daemon.publish`` (two ``perf_counter`` calls per frame, ~0.1 µs, are included); the other
    exchanges' frames keep every market of the quote groups moving, untimed.
    """

    def __init__(self, registry: PluginRegistry, works: dict[str, Workload]) -> None:
        self.registry = registry
        self.works = works
        self.config = Config(
            server=ServerConfig(enabled=False),
            control=ControlConfig(enabled=False),
            metrics=MetricsConfig(enabled=False),
            exchanges={
                ex: ExchangeConfig(symbols=symbols_of(work), book_depth=20)
                for ex, work in works.items()
            },
        )

    def schedule(
        self, exchange: str, frames: Frames, untimed: Frames, read_bytes: int = 0
    ) -> Schedule:
        """The reads of every capture merged by position, as ``(timed, exchange, frames)``: of
        ``exchange`` only ``frames`` (timed) and ``untimed``, of the others every frame
        (untimed). ``read_bytes`` 0: one frame per read. Else consecutive frames of one
        connection make one read until their payloads reach ``read_bytes``, as a socket read
        returns them when the daemon is the bottleneck (the kernel has queued more than a
        read takes); a read is all timed or all untimed."""
        timed = {id(item) for item in frames}
        chosen = timed | {id(item) for item in untimed}
        merged: list[tuple[float, bool, str, Frames]] = []
        for ex, work in self.works.items():
            n = len(work.frames)
            picked = [
                (i, item, id(item) in timed)
                for i, item in enumerate(work.frames)
                if ex != exchange or id(item) in chosen
            ]
            merged += [(last / n, t, ex, read) for last, t, read in reads(picked, read_bytes)]
        merged.sort(key=lambda m: m[0])
        return [(is_timed, ex, read) for _, is_timed, ex, read in merged]

    def fresh(self) -> _Fed:
        """A fresh daemon and fresh sessions, as a run starts with."""
        return _Fed(self)

    def time(self, schedule: Schedule) -> float:
        """Seconds spent on the timed reads of ``schedule``, in a fresh daemon: each read's
        frames through their sessions, then one ``Daemon.publish`` of the read's events, as
        the live reader does per socket read."""
        fed = self.fresh()
        read_one = fed.read
        clock = time.perf_counter
        spent = 0.0
        events = 0
        gc.collect()
        for timed, ex, read in schedule:
            if timed:
                started = clock()
                events += read_one(ex, read)
                spent += clock() - started
            else:
                read_one(ex, read)
        if not events:
            raise RuntimeError("the timed frames made no events")
        return spent

    def time_cryptofeed(self, schedule: Schedule, shim: CryptofeedShim) -> float:
        """Seconds cryptofeed spends on the timed reads of ``schedule`` (all of one exchange),
        with the untimed reads going through a fresh arbd daemon in between: cryptofeed amid
        the same other work as arbd in :meth:`time`."""
        fed = self.fresh()
        steps: list[Step] = [
            read if timed else partial(fed.read, ex, read) for timed, ex, read in schedule
        ]
        return time_cryptofeed(shim, self.works[shim.exchange], steps)


class _Fed:
    """A :class:`~arbd.daemon.Daemon` for every exchange of a :class:`Pipeline` (instruments
    loaded from the captures, no I/O started) and fresh sessions, fed read by read."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.works = pipeline.works
        self.daemon = Daemon(pipeline.config, pipeline.registry)
        self.sessions: dict[str, dict[str, ExchangeSession]] = {}
        for ex, adapter in self.daemon.adapters.items():
            load_instruments(adapter, self.works[ex])
            self.sessions[ex] = arbd_sessions(pipeline.registry, self.works[ex])[1]
        self.out: list[Event] = []

    def read(self, exchange: str, frames: Frames) -> int:
        """One read of ``exchange`` (its frames are of one connection): the frames through
        their session, the session's output collected once, as the driver does per read, then
        one publish of the read's events. Returns how many there were."""
        session, out = self.sessions[exchange][frames[0][0]], self.out
        receive = session.receive
        for _, payload, is_text in frames:
            receive(payload, is_text, 1, out)
        if session.has_output:
            collect(session, self.works[exchange], out)
        events = len(out)
        if events:
            self.daemon.publish(out)
            out.clear()
        return events


def quote_frames(registry: PluginRegistry, work: Workload) -> tuple[Frames, Frames]:
    """(frames that make only ``price`` events, frames that make none: acks, heartbeats),
    from one pass over the capture."""
    _, sessions = arbd_sessions(registry, work)
    quotes: Frames = []
    quiet: Frames = []
    for item in work.frames:
        made: list[Event] = []
        feed(sessions, work, [item], made.extend)
        if not made:
            quiet.append(item)
        elif all(isinstance(e, Quote) for e in made):
            quotes.append(item)
    return quotes, quiet


def quotes_stand_alone(
    registry: PluginRegistry, work: Workload, quotes: Frames, quiet: Frames
) -> bool:
    """Whether the quote frames, taken out of their capture, still make quotes in a fresh
    session. Not on Coinbase: its ``sequence_num`` counts every channel of the connection, so
    the quote frames alone are one sequence gap after another (and rightly ignored)."""
    _, sessions = arbd_sessions(registry, work)
    feed(sessions, work, quiet, None)
    return feed(sessions, work, quotes, None) >= len(quotes) // 2


# -- main ---------------------------------------------------------------------------------------


def subset(work: Workload, keep: Callable[[dict[str, Any]], bool]) -> Frames:
    chosen = []
    for item in work.frames:
        try:
            frame = json.loads(item[1])
        except ValueError:
            continue
        if isinstance(frame, dict) and keep(frame):
            chosen.append(item)
    return chosen


class Rates(NamedTuple):
    """Median frames/s of one row: arbd three ways, and cryptofeed (``None`` without it)
    alone and amid the same schedules as arbd's full pipeline; ``versus``: arbd over
    cryptofeed, like with like (full per read, full per frame, adapter only against
    cryptofeed alone), each the median of the runs' own ratios."""

    alone: float
    per_frame: float
    per_read: float
    cryptofeed: float | None
    cryptofeed_per_frame: float | None
    cryptofeed_per_read: float | None
    versus: tuple[float, float, float] | None


def measure(
    registry: PluginRegistry,
    pipeline: Pipeline,
    work: Workload,
    frames: Frames,
    runs: int,
    cryptofeed: bool,
    read_bytes: int,
    warm: Frames | None = None,
) -> Rates:
    """Median frames/s of arbd adapter only, the full pipeline publishing per frame and per
    ``read_bytes`` read, and cryptofeed alone and on the same two schedules (``None``
    without it). ``warm``: frames of the exchange that make no events (acks), untimed before
    the adapter-only run and untimed in the full pipeline's schedules.

    Each arbd measurement is paired with cryptofeed's on the same work, timed right after it
    or right before (alternating run by run), and the ratio is the median of the pairs'
    ratios: on this shared machine a burst of load that lasts a few runs then hits both sides
    of a pair alike, where a ratio of medians would take it for a difference between them."""
    shim = SHIMS.get(work.exchange) if cryptofeed else None
    frame_schedule = pipeline.schedule(work.exchange, frames, warm or [])
    read_schedule = pipeline.schedule(work.exchange, frames, warm or [], read_bytes)
    pairs: list[tuple[Callable[[], float], Callable[[], float] | None]] = [
        (
            lambda: time_adapter(registry, work, frames, warm or []),
            None if shim is None else lambda: time_cryptofeed(shim, work, [frames]),
        ),
        (
            lambda: pipeline.time(frame_schedule),
            None if shim is None else lambda: pipeline.time_cryptofeed(frame_schedule, shim),
        ),
        (
            lambda: pipeline.time(read_schedule),
            None if shim is None else lambda: pipeline.time_cryptofeed(read_schedule, shim),
        ),
    ]
    ours: list[list[float]] = [[] for _ in pairs]
    theirs: list[list[float]] = [[] for _ in pairs]
    for run in range(runs):
        for (time_ours, time_theirs), mine, other in zip(pairs, ours, theirs, strict=True):
            if time_theirs is not None and run % 2:
                other.append(time_theirs())
            mine.append(time_ours())
            if time_theirs is not None and not run % 2:
                other.append(time_theirs())
    n = len(frames)
    medians = [n / statistics.median(seconds) for seconds in ours]
    if shim is None:
        return Rates(*medians, None, None, None, None)
    versus = [
        statistics.median(t / o for o, t in zip(mine, other, strict=True))
        for mine, other in zip(ours, theirs, strict=True)
    ]
    return Rates(
        *medians,
        *(n / statistics.median(seconds) for seconds in theirs),
        (versus[2], versus[1], versus[0]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--exchanges", nargs="*", default=["binance", "coinbase", "kraken", "bybit", "okx"]
    )
    parser.add_argument(
        "--read-bytes",
        type=int,
        default=READ_BYTES,
        help="full pipeline per read: the payload bytes of one socket read (default 64 KiB)",
    )
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()
    registry = load_plugins()
    try:
        cryptofeed_version = metadata.version("cryptofeed")
        have_cryptofeed = True
    except metadata.PackageNotFoundError:
        have_cryptofeed = False
        cryptofeed_version = ""
        print("cryptofeed is not installed (pip install -e '.[bench]'): arbd rows only")
    works: dict[str, Workload] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for exchange in args.exchanges:
            path = Path(tmp) / f"{exchange}.capture.jsonl"
            trio.run(record, registry, exchange, args.rounds, path)
            works[exchange] = load(path)
    pipeline = Pipeline(registry, works)
    rows: list[list[Any]] = []
    ratios: list[tuple[str, Rates]] = []

    def add(
        exchange: str, name: str, frames: Frames, cf: bool, warm: Frames | None = None
    ) -> Rates | None:
        if not frames:
            return None
        rates = measure(
            registry, pipeline, works[exchange], frames, args.runs, cf, args.read_bytes, warm
        )
        row = [exchange, name, len(frames), *rates[:-1]]
        row += list(reversed(rates.versus)) if rates.versus else [None, None, None]
        rows.append(row)
        print(" ".join(f"{v:>10,.0f}" if isinstance(v, float) else str(v) for v in row[:9]))
        return rates

    for exchange, work in works.items():
        add(exchange, "all recorded frames", work.frames, False)
        shim = SHIMS.get(exchange)
        if shim is not None and have_cryptofeed:
            frames = subset(work, shim.accepts)
            rates = add(exchange, "cryptofeed's frames", frames, True)
            if rates is not None:
                ratios.append((exchange, rates))
            for kind in ("price", "trades", "book", "candles"):
                chosen = [f for f in frames if shim.kind(json.loads(f[1])) == kind]
                add(exchange, f"  {kind}", chosen, True)
        quotes, quiet = quote_frames(registry, work)
        # Coinbase's ticker frames mostly carry a trade too, and its quotes do not stand alone.
        if len(quotes) >= MIN_QUOTES and quotes_stand_alone(registry, work, quotes, quiet):
            add(exchange, "quotes only", quotes, False, quiet)
    quote_rows = [r for r in rows if r[1] == "quotes only"]
    best_quotes = max(quote_rows, key=lambda r: r[5], default=None)
    command = "python benchmarks/adapters.py " + " ".join(sys.argv[1:])
    kib = f"{args.read_bytes / 1024:g} KiB"
    per_exchange = table(
        "Frames/s per exchange, one core: arbd (adapter only; full pipeline publishing per "
        f"frame and per {kib} read) and cryptofeed "
        + (cryptofeed_version if have_cryptofeed else "(not installed)"),
        [
            ("exchange", ""),
            ("frames", ""),
            ("n", ",d"),
            ("arbd adapter only f/s", ",.0f"),
            ("arbd full, per frame f/s", ",.0f"),
            (f"arbd full, per {kib} read f/s", ",.0f"),
            ("cryptofeed alone f/s", ",.0f"),
            ("cryptofeed amid, per frame f/s", ",.0f"),
            (f"cryptofeed amid, per {kib} read f/s", ",.0f"),
            ("adapter only x cryptofeed alone", ".1f"),
            ("full per frame x cryptofeed per frame", ".1f"),
            ("full per read x cryptofeed per read", ".1f"),
        ],
        rows,
        key=2,
    )
    target_rows = [
        [
            f"≥ 5x cryptofeed ({ex}, its frames): full pipeline per read; per frame; adapter",
            "; ".join(f"{r:.1f}x" for r in versus) if versus else "no cryptofeed",
        ]
        for ex, versus in ((ex, rates.versus) for ex, rates in ratios)
    ]
    if best_quotes:
        target_rows.append(
            [
                "≥ 250k quote frames/s (full pipeline, per read; per frame)",
                f"{best_quotes[5]:,.0f}; {best_quotes[4]:,.0f} f/s ({best_quotes[0]} quotes only)",
            ]
        )
    targets = table("Against the targets", [("target", ""), ("result", "")], target_rows)
    notes = [
        f"{args.rounds} rounds of the fakes' market data per exchange, median of {args.runs} "
        "interleaved runs; receive times fixed, so no opportunity goes stale mid-run.",
        "full pipeline: adapter + book + Daemon.publish (hub state, the arbitrage engine as "
        "processor over five exchanges' markets) of each read's events; no local client "
        "connected.",
        f"per frame: every frame is its own read (a daemon with time to spare); per {kib} "
        "read: consecutive frames of a connection up to that many payload bytes (a daemon at "
        "capacity, where each socket read finds more queued than it takes). Throughput is "
        "the per-read figure.",
        "cryptofeed amid: timed on the same schedule as arbd's full pipeline, the other "
        "exchanges' reads going through arbd (untimed) in between; ratios compare like with "
        "like (adapter only with cryptofeed alone), each the median of the runs' own ratios "
        "(every arbd run is paired with a cryptofeed run on the same work, timed next to it).",
    ]
    title = "Ingest per exchange, and cryptofeed"
    emit(report("adapters", title, command, [per_exchange, targets], notes), args.json)


if __name__ == "__main__":
    main()
