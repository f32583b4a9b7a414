"""OKX ``books`` integrity for one session: sequence, checksum and crossed checks, both snapshot
modes, invalidation and recovery. Used by :class:`arbd_okx.session.OkxSession` only.

Rules (exchange-protocols.md §5.4):

* An update applies only when its ``prevSeqId`` equals the ``seqId`` last applied. That rule also
  covers OKX's two documented exceptions, which chain through ``prevSeqId`` too: the no-change
  keepalive (empty sides, ``prevSeqId == seqId``; the book is published again as a fresh
  confirmation) and the maintenance reset (``seqId < prevSeqId``). Anything else is a gap.
* ``checksum`` is checked only when non-zero (the legacy CRC32 of :mod:`arbd_okx.checksum`; since
  2026-06-23 production always sends 0). A crossed or locked book is invalid.
* A broken book is announced (``FeedStatus`` ``invalid`` then ``resyncing``), never published
  while broken, and recovered: by ``unsubscribe`` + ``subscribe`` (a fresh WS snapshot) in
  snapshot mode, or by a new REST snapshot in no-snapshot mode. ``valid`` is announced with the
  first good book after that.

Two snapshot modes, told apart per book by the first push after the subscribe ack:

* WS snapshot (production as of 2026-09): ``action: "snapshot"`` (``prevSeqId: -1``) replaces
  the book.
* No snapshot (OKX's announced change): the first push is an update, or an empty snapshot (which
  OKX says to ignore). Updates are buffered and ``GET {rest}/api/v5/market/books?instId=X&sz=400``
  is asked for; its answer carries ``seqId``. A snapshot older than the first buffered
  ``prevSeqId`` is asked for again (OKX's REST caches may lag). Otherwise the book is loaded and
  buffered, then live, updates with ``seqId <= snapshot seqId`` are skipped; the first applied
  must have ``prevSeqId <= snapshot seqId < seqId``. At most 5 snapshots are asked for in a row;
  after that, or when a request fails, the book stays invalid until the session's
  ``resubscribe``.

Updates that arrive between a subscribe and its ack are the old subscription's tail and are
dropped, so a resubscribe is never mistaken for the no-snapshot mode.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final, Literal

from arbd.errors import ProtocolError
from arbd.exchange.adapter import HttpRequest, HttpResponse
from arbd.exchange.book import OrderBook, book_status, decode_levels
from arbd.model import Event, FeedStatus
from arbd_okx import wire
from arbd_okx.checksum import CHECKSUM_LEVELS, okx_checksum

if TYPE_CHECKING:
    from arbd_okx.session import OkxSession

BOOK_LEVELS: Final = 400
"""Levels per side the ``books`` channel keeps; the local book is trimmed to the same."""
MAX_BUFFERED: Final = 5000
"""Updates held while a REST snapshot is on its way (~8 min at 100 ms). The oldest go first,
which only makes the snapshot's ``seqId`` requirement later, never wrong."""
MAX_REST_ATTEMPTS: Final = 5

Phase = Literal["subscribing", "pending", "bootstrapping", "valid", "failed"]


def ms(text: str | None) -> int | None:
    """OKX times are strings of milliseconds."""
    return None if text is None else int(text)


class BookState:
    """One symbol's book and where it stands.

    ``subscribing``: waiting for the subscribe ack; updates are the old subscription's, dropped.
    ``pending``: acknowledged; the first push decides the mode (snapshot, or update -> REST).
    ``bootstrapping``: a REST snapshot (tagged ``generation``) is on its way; updates buffered.
    ``valid``: chained, checked, uncrossed; published on every push. ``join_at`` is the REST
    snapshot's ``seqId`` until the first update past it is applied.
    ``failed``: REST gave up; waits for a resubscribe.
    ``announced``: an ``invalid`` status went out, so recovery announces ``valid``.
    """

    __slots__ = (
        "announced",
        "attempts",
        "book",
        "buffer",
        "generation",
        "join_at",
        "native",
        "phase",
        "rest_mode",
        "symbol",
    )

    def __init__(self, native: str, symbol: str, phase: Phase) -> None:
        self.native = native
        self.symbol = symbol
        self.book = OrderBook()
        self.phase: Phase = phase
        self.announced = False
        self.rest_mode = False
        self.buffer: deque[wire.BookData] = deque(maxlen=MAX_BUFFERED)
        self.join_at: int | None = None
        self.generation = 0
        """Tags REST requests; an answer carrying an older tag is stale and dropped."""
        self.attempts = 0

    def reset(self, phase: Phase) -> None:
        self.phase = phase
        self.book.clear()
        self.buffer.clear()
        self.join_at = None


class BookSync:
    """Every ``books`` subscription of one session."""

    def __init__(self, session: OkxSession) -> None:
        self.session = session
        self.stats = session.stats
        self.exchange = session.adapter.spec.id
        self.depth = session.adapter.settings.book_depth
        self.states: dict[str, BookState] = {}

    # -- session-facing ---------------------------------------------------------------------

    def acknowledged(self, native: str) -> None:
        state = self.states.get(native)
        if state is not None and state.phase == "subscribing":
            state.phase = "pending"

    def resubscribing(self, native: str, now_ns: int) -> None:
        """The session is about to unsubscribe + subscribe this book: start it over."""
        state = self.states.get(native)
        if state is not None:
            if state.phase == "valid":  # not served until the new snapshot
                state.announced = True
                self.session.announce_resubscribing(state.symbol, now_ns)
            state.reset("subscribing")
            state.generation += 1  # answers to REST requests in flight are now stale
            state.attempts = 0

    def on_push(
        self,
        native: str,
        symbol: str,
        items: list[wire.BookData],
        received_ns: int,
        out: list[Event],
        *,
        action: str | None,
    ) -> None:
        """A ``books`` push (``action`` snapshot or update) for ``native``."""
        state = self.states.get(native)
        if state is None:  # replay: books appear as their data does
            state = self.states[native] = BookState(native, symbol, "pending")
        for item in items:
            if item.seqId is None:
                raise ProtocolError(f"okx: books push for {native} without seqId")
            if action == "update" and state.phase == "valid" and item.prevSeqId is not None:
                self._apply(state, item, received_ns, out)  # the steady state, one call short
            elif action == "snapshot":
                self._on_snapshot(state, item, received_ns, out)
            elif action == "update":
                self._on_update(state, item, received_ns, out)
            else:
                self.stats.ignored += 1

    def on_http(self, response: HttpResponse, out: list[Event]) -> None:
        """A REST snapshot for the no-snapshot bootstrap (stale or unknown answers dropped)."""
        state = self._target(response.request)
        if state is None:
            return
        received_ns = response.received_ns
        if response.status != 200:
            self._rest_failed(state, f"HTTP {response.status}", received_ns, out)
            return
        document = wire.decode_rest_books(response.body)
        if str(document.code) != "0" or not document.data:
            self._rest_failed(state, f"error {document.code}: {document.msg}", received_ns, out)
            return
        snap = document.data[0]
        if snap.seqId is None:
            raise ProtocolError(f"okx: REST book for {state.native} has no seqId")
        seq = int(snap.seqId)
        buffer = state.buffer
        first_prev = buffer[0].prevSeqId if buffer else None
        if first_prev is not None and seq < first_prev:
            self._ask_snapshot(state, received_ns, out)  # older than the stream we hold
            return
        buffered = list(buffer)
        state.reset("valid")
        state.join_at = seq
        state.book.replace(snap.bids, snap.asks, seq)
        state.book.truncate(BOOK_LEVELS)
        if not self._verify(state, None, " in REST snapshot", received_ns, out):
            return
        self._publish(state, seq, ms(snap.ts), received_ns, out)
        for item in buffered:  # through the phase dispatch: a gap here restarts the bootstrap
            self._on_update(state, item, received_ns, out)

    def on_http_failed(
        self, request: HttpRequest, reason: str, received_ns: int, out: list[Event]
    ) -> None:
        state = self._target(request)
        if state is not None:
            self._rest_failed(state, reason, received_ns, out)

    # -- pushes -----------------------------------------------------------------------------

    def _on_snapshot(
        self, state: BookState, item: wire.BookData, received_ns: int, out: list[Event]
    ) -> None:
        seq = item.seqId
        assert seq is not None
        bids, asks = decode_levels(item.bids), decode_levels(item.asks)
        if not bids and not asks:
            # No-snapshot mode may open with an empty "snapshot" that OKX says to ignore; the
            # first update then starts the REST bootstrap.
            if state.phase == "subscribing":
                state.phase = "pending"
            return
        state.reset("valid")
        # A real snapshot means OKX does send them: leave the no-snapshot (REST) mode, which
        # may have been entered by mistake when a resubscribe's snapshot was lost in a stall
        # and the first push seen was an update. Without this, every later recovery of the
        # book would go through REST for good.
        state.rest_mode = False
        state.generation += 1  # a WS snapshot supersedes any REST answer in flight
        state.book.replace(bids, asks, seq)
        state.book.truncate(BOOK_LEVELS)
        if self._verify(state, item.checksum, " in snapshot", received_ns, out):
            state.attempts = 0
            self._publish(state, seq, item.ts, received_ns, out)

    def _on_update(
        self, state: BookState, item: wire.BookData, received_ns: int, out: list[Event]
    ) -> None:
        if item.prevSeqId is None:
            raise ProtocolError(f"okx: books update for {state.native} without prevSeqId")
        phase = state.phase
        if phase == "valid":
            self._apply(state, item, received_ns, out)
        elif phase == "pending":  # an update first: the no-snapshot mode
            state.rest_mode = True
            self._bootstrap(state, item, received_ns, out)
        elif phase == "bootstrapping":
            buffer = state.buffer
            if buffer and item.prevSeqId != buffer[-1].seqId:
                self.stats.sequence_gaps += 1
                self._bootstrap(state, item, received_ns, out)
            else:
                buffer.append(item)
        # subscribing (the old subscription's tail) and failed: dropped

    def _apply(
        self, state: BookState, item: wire.BookData, received_ns: int, out: list[Event]
    ) -> None:
        seq, prev = item.seqId, item.prevSeqId
        assert seq is not None
        assert prev is not None
        book = state.book
        join_at = state.join_at
        gap: str | None = None
        if join_at is not None:  # just loaded from REST at seqId join_at
            if seq < prev:
                gap = f"seqId reset {prev}->{seq} while joining the stream"
            elif seq <= join_at:
                return  # already in the REST snapshot
            elif prev > join_at:
                gap = f"REST snapshot seqId {join_at} older than update prevSeqId {prev}"
        elif prev != book.sequence:
            gap = f"sequence gap: prevSeqId {prev} after seqId {book.sequence}"
        if gap is not None:
            self.stats.sequence_gaps += 1
            self._invalidate(state, gap, item, received_ns, out)
            return
        if join_at is not None:
            state.join_at = None
            state.attempts = 0
        book.apply_raw(item.bids, item.asks, seq)
        book.truncate(BOOK_LEVELS)
        if self._verify(state, item.checksum, "", received_ns, out):
            self._publish(state, seq, item.ts, received_ns, out)

    def _verify(
        self, state: BookState, checksum: int | None, where: str, received_ns: int, out: list[Event]
    ) -> bool:
        """Checksum (only when non-zero) and crossed checks; invalidates and returns False."""
        book = state.book
        if checksum:
            local = okx_checksum(book.top_bids(CHECKSUM_LEVELS), book.top_asks(CHECKSUM_LEVELS))
            if local != checksum:
                self.stats.checksum_failures += 1
                reason = f"checksum mismatch{where}: got {checksum}, computed {local}"
                self._invalidate(state, reason, None, received_ns, out)
                return False
        if book.is_crossed():
            self.stats.crossed_books += 1
            self._invalidate(state, f"crossed book{where}", None, received_ns, out)
            return False
        return True

    # -- recovery ---------------------------------------------------------------------------

    def _invalidate(
        self,
        state: BookState,
        reason: str,
        item: wire.BookData | None,
        received_ns: int,
        out: list[Event],
    ) -> None:
        """Announce the book invalid, drop it, and start its recovery.

        ``item`` is the update that revealed a gap: in no-snapshot mode it opens the new buffer
        (the REST snapshot must reach its ``prevSeqId``).
        """
        state.reset("subscribing")
        state.announced = True
        out.append(self._status(state, "invalid", reason, received_ns))
        out.append(self._status(state, "resyncing", reason, received_ns))
        self.stats.book_resyncs += 1
        if state.rest_mode:
            self._bootstrap(state, item, received_ns, out)
        else:
            state.generation += 1
            arg = [wire.Arg(channel="books", instId=state.native)]
            self.session.send_request("unsubscribe", arg)
            self.session.send_request("subscribe", arg)

    def _bootstrap(
        self, state: BookState, item: wire.BookData | None, received_ns: int, out: list[Event]
    ) -> None:
        """Start buffering (from ``item``) and ask for a REST snapshot."""
        state.reset("bootstrapping")
        if item is not None:
            state.buffer.append(item)
        self._ask_snapshot(state, received_ns, out)

    def _ask_snapshot(self, state: BookState, received_ns: int, out: list[Event]) -> None:
        state.attempts += 1
        if state.attempts > MAX_REST_ATTEMPTS:
            reason = f"no usable REST snapshot after {MAX_REST_ATTEMPTS} attempts"
            self._rest_failed(state, reason, received_ns, out)
            return
        state.phase = "bootstrapping"
        state.generation += 1
        self.session.request(
            HttpRequest(
                url=self.session.adapter.book_snapshot_url(state.native),
                purpose=f"book:{state.native}:{state.generation}",
            )
        )

    def _target(self, request: HttpRequest) -> BookState | None:
        """The book a REST answer is for, or None when it is not (or no longer) wanted."""
        kind, _, rest = request.purpose.partition(":")
        native, _, generation = rest.rpartition(":")
        state = self.states.get(native) if kind == "book" else None
        if state is None or state.phase != "bootstrapping" or generation != str(state.generation):
            return None
        return state

    def _rest_failed(
        self, state: BookState, reason: str, received_ns: int, out: list[Event]
    ) -> None:
        state.reset("failed")
        self.session.notices.append(f"REST book snapshot for {state.native} failed: {reason}")
        if not state.announced:
            state.announced = True
            out.append(self._status(state, "invalid", f"REST snapshot: {reason}", received_ns))

    # -- events -----------------------------------------------------------------------------

    def _publish(
        self, state: BookState, seq: int, ts: int | None, received_ns: int, out: list[Event]
    ) -> None:
        if state.announced:
            state.announced = False
            out.append(self._status(state, "valid", "book synchronized", received_ns))
        out.append(
            state.book.event(
                self.exchange,
                state.symbol,
                self.depth,
                received_ns=received_ns,
                exchange_time=ts,
                sequence=seq,
            )
        )

    def _status(self, book: BookState, state: str, reason: str, received_ns: int) -> FeedStatus:
        return book_status(self.exchange, book.symbol, state, reason, received_ns)
