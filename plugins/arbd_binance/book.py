"""Binance spot L2 books: the documented diff-stream + REST-snapshot procedure, pure.

The procedure, as Binance documents it (web-socket-streams.md, "How to manage a local order book
correctly"), and how this module carries it out per symbol:

1. Subscribe ``<symbol>@depth@100ms``; **buffer** the diff events (``U`` first, ``u`` last update
   id of each event). The first buffered event queues the snapshot request, so the snapshot is
   always taken after the stream started.
2. ``GET /api/v3/depth?symbol=X&limit=N``; the answer's ``lastUpdateId`` is the book's update id.
3. Discard buffered events with ``u <= lastUpdateId``. The first remaining event must straddle
   ``lastUpdateId + 1`` (``U <= lastUpdateId + 1 <= u``); if it starts later, the snapshot is
   older than what the stream can continue (Binance: "go back to step 3"): fetch another one,
   at most ``MAX_SYNC_ATTEMPTS`` times in a row.
4. Apply the remaining events, then the live ones: an event with ``u <=`` the book's id is old and
   dropped; otherwise it must chain, ``U == previous u + 1`` (the first one after the snapshot
   only has to straddle). Quantities are absolute, ``"0"`` removes a level.

A gap, a crossed or locked book, or a book that moved so far that the snapshot's levels no longer
cover the published depth makes the book invalid: one ``FeedStatus`` ``invalid`` and one
``resyncing`` (never repeated while it stays invalid), the book is dropped, buffering starts again
and a new snapshot is fetched. ``valid`` is announced when a snapshot applies cleanly again. A book
is published (``Book``, top ``depth`` levels, ``sequence`` = the book's update id, ``exchange_time``
= the last applied event's ``E``) after every applied event, and never while invalid.

Snapshot depth: ``limit`` is 1000 (REST weight 50) for published depths up to 100 and 5000
(weight 250) beyond. Levels deeper than the snapshot stay unknown until they change, so when a
side of the snapshot was cut at ``limit`` levels only levels within its price range are published,
and the book is resynced once fewer than ``min(depth, limit // 2)`` such levels remain.

A snapshot request that fails (HTTP error, or ``on_http_failed``) leaves the book invalid and stops
requests for it until the session's ``resubscribe`` (the stale-data watchdog) re-arms it: no
request storms against a REST endpoint that keeps refusing.

Each snapshot costs REST weight (``arbd_binance.limits.depth_weight``), paced by arbd under
Binance's 6000 per minute, so with hundreds of books the last snapshots wait a minute or more.
While a book's request is queued or in flight (``BookState.in_flight``) the session reports the
book subscription as ``waiting``, and the stale-data watchdog leaves it alone; a failed request
clears ``in_flight``, so a refusing endpoint still ends in the watchdog's resubscribe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, Literal

from arbd.exchange.adapter import HttpRequest, HttpResponse, SessionStats
from arbd.exchange.book import BookSide, OrderBook, book_status, decode_side
from arbd.model import Book, Event, FeedStatus
from arbd_binance.limits import depth_weight
from arbd_binance.wire import DepthSnapshot, DepthUpdate, decode_snapshot, rest_error_text

PURPOSE_PREFIX: Final = "depth:"
MAX_BUFFERED: Final = 1000
"""Diff events held per symbol while a snapshot is on its way (100 s at 10 events/s); the oldest
are dropped beyond it (the snapshot check then asks for a newer snapshot if it must)."""
MAX_SYNC_ATTEMPTS: Final = 5
"""Snapshots in a row that fail to line up with the stream before giving up until resubscribe."""


def snapshot_limit(depth: int) -> int:
    """REST ``limit`` for a published ``depth``: fixed values, so replays match recorded URLs."""
    return 1000 if depth <= 100 else 5000


class BookState:
    """One symbol's book and where its synchronization stands.

    ``phase``: ``waiting`` (no usable snapshot; diff events are buffered) or ``valid``.
    ``announced``: an ``invalid`` status went out and ``valid`` has not yet followed it.
    ``straddle``: the next event is the first after the snapshot (straddle rule, not chaining).
    ``bid_limit`` / ``ask_limit``: the snapshot's last level as a book key, when that side was cut
    at ``limit`` levels (levels beyond it are of unknown completeness).
    """

    __slots__ = (
        "announced",
        "ask_limit",
        "attempts",
        "bid_limit",
        "book",
        "buffer",
        "can_request",
        "in_flight",
        "native",
        "phase",
        "straddle",
        "symbol",
    )

    def __init__(self, native: str, symbol: str) -> None:
        self.native = native
        self.symbol = symbol
        self.book = OrderBook()
        self.phase: Literal["waiting", "valid"] = "waiting"
        self.buffer: deque[DepthUpdate] = deque(maxlen=MAX_BUFFERED)
        self.in_flight = False
        self.can_request = True
        self.announced = False
        self.straddle = False
        self.attempts = 0
        self.bid_limit: float | None = None
        self.ask_limit: float | None = None


def _chains(state: BookState, event: DepthUpdate) -> bool:
    expected = (state.book.sequence or 0) + 1
    if state.straddle:
        return event.first_id <= expected
    return event.first_id == expected


class DepthBooks:
    """Every book of one session. The session routes diff events and snapshot answers here."""

    def __init__(
        self,
        *,
        exchange: str,
        rest_url: str,
        depth: int,
        stats: SessionStats,
        notices: list[str],
        request: Callable[[HttpRequest], None],
    ) -> None:
        self.exchange = exchange
        self.rest_url = rest_url.rstrip("/")
        self.depth = depth
        self.limit = snapshot_limit(depth)
        self.weight = depth_weight(self.limit)
        self.min_known = min(depth, self.limit // 2)
        self.stats = stats
        self.notices = notices
        self._request = request
        self.books: dict[str, BookState] = {}
        """Native symbol (``BTCUSDT``) -> state."""

    def state(self, native: str, symbol: str) -> BookState:
        state = self.books.get(native)
        if state is None:
            state = self.books[native] = BookState(native, symbol)
        return state

    def snapshot_request(self, native: str) -> HttpRequest:
        url = f"{self.rest_url}/api/v3/depth?symbol={native}&limit={self.limit}"
        return HttpRequest(url=url, purpose=PURPOSE_PREFIX + native, weight=self.weight)

    # -- inputs -------------------------------------------------------------------------------

    def on_diff(
        self, state: BookState, event: DepthUpdate, received_ns: int, out: list[Event]
    ) -> None:
        """One ``depthUpdate`` event for ``state``'s symbol."""
        if state.phase != "valid":
            self._buffer(state, event)
            return
        book = state.book
        last = book.sequence or 0
        if event.last_id <= last:
            return  # already part of the book
        if not _chains(state, event):
            self.stats.sequence_gaps += 1
            reason = f"sequence gap: expected {last + 1}, got {event.first_id}"
            self._restart(state, reason, received_ns, out, keep=[event])
            return
        book.apply_raw(event.bids, event.asks, event.last_id)
        state.straddle = False
        self._publish_checked(state, event.event_time, received_ns, out)

    def on_response(self, response: HttpResponse, out: list[Event]) -> bool:
        """A snapshot answer; False if ``response`` is not a snapshot request of these books.

        Raises (``msgspec`` errors) for a body that does not parse; the book then waits for a
        resubscribe, like after any failed request.
        """
        purpose = response.request.purpose
        if not purpose.startswith(PURPOSE_PREFIX):
            return False
        state = self.books.get(purpose[len(PURPOSE_PREFIX) :])
        if state is None or not state.in_flight:
            return True  # not asked for by this session (or already answered)
        state.in_flight = False
        if state.phase == "valid":
            return True
        if response.status != 200:
            self.stats.errors_reported += 1
            reason = f"depth snapshot {rest_error_text(response.status, response.body)}"
            self._failed(state, reason, response.received_ns, out)
            return True
        state.can_request = False  # stays so if the body does not parse (we raise below)
        snapshot = decode_snapshot(response.body)
        state.can_request = True
        self._apply_snapshot(state, snapshot, response.received_ns, out)
        return True

    def on_failed(
        self, request: HttpRequest, reason: str, received_ns: int, out: list[Event]
    ) -> None:
        purpose = request.purpose
        if not purpose.startswith(PURPOSE_PREFIX):
            return
        state = self.books.get(purpose[len(PURPOSE_PREFIX) :])
        if state is None:
            return
        state.in_flight = False
        if state.phase == "valid":
            return
        self._failed(state, f"depth snapshot failed: {reason}", received_ns, out)

    def rearm(self, state: BookState) -> None:
        """The subscription is being renewed (stale data): let a waiting book sync again.

        A valid book stays valid; if the renewal loses events, the chaining rule catches it.
        """
        if state.phase == "valid":
            return
        # The buffer stays: it still precedes any snapshot fetched from now on, and a gap the
        # renewal causes after it is caught when the snapshot is applied.
        state.can_request = True
        state.attempts = 0

    # -- the procedure ------------------------------------------------------------------------

    def _buffer(self, state: BookState, event: DepthUpdate) -> None:
        # Checked now, while it is the frame at hand (a malformed one is that frame's error,
        # counted and skipped), not when the snapshot replays it. Only books syncing pay this.
        decode_side(event.bids)
        decode_side(event.asks)
        state.buffer.append(event)
        if state.can_request and not state.in_flight:
            state.in_flight = True
            self._request(self.snapshot_request(state.native))

    def _apply_snapshot(
        self, state: BookState, snapshot: DepthSnapshot, received_ns: int, out: list[Event]
    ) -> None:
        last = snapshot.last_update_id
        buffer = state.buffer
        while buffer and buffer[0].last_id <= last:
            buffer.popleft()
        if buffer and buffer[0].first_id > last + 1:
            # Binance: "go back to step 3". Routine (REST lags the stream), so not announced,
            # unless it keeps happening.
            state.attempts += 1
            reason = f"snapshot {last} is older than the buffered update {buffer[0].first_id}"
            if state.attempts >= MAX_SYNC_ATTEMPTS:
                reason += f" ({state.attempts} snapshots in a row)"
                self._failed(state, reason, received_ns, out)
            else:
                state.in_flight = True
                self._request(self.snapshot_request(state.native))
            return
        book = state.book
        book.replace(snapshot.bids, snapshot.asks, last)
        limit = self.limit
        bids, asks = book.bids, book.asks
        state.bid_limit = bids.key(-1) if len(bids) and len(snapshot.bids) >= limit else None
        state.ask_limit = asks.key(-1) if len(asks) and len(snapshot.asks) >= limit else None
        state.phase = "valid"
        state.straddle = True
        events = list(buffer)
        buffer.clear()
        exchange_time: int | None = None
        for index, event in enumerate(events):
            if not _chains(state, event):
                self.stats.sequence_gaps += 1
                expected = (book.sequence or 0) + 1
                reason = (
                    f"sequence gap in buffered updates: expected {expected}, got {event.first_id}"
                )
                self._restart(state, reason, received_ns, out, keep=events[index:], attempt=True)
                return
            book.apply_raw(event.bids, event.asks, event.last_id)
            state.straddle = False
            exchange_time = event.event_time
        self._publish_checked(state, exchange_time, received_ns, out, syncing=True)

    def _publish_checked(
        self,
        state: BookState,
        exchange_time: int | None,
        received_ns: int,
        out: list[Event],
        *,
        syncing: bool = False,
    ) -> None:
        """Publish ``state``'s book, or restart it if it is crossed or no longer covered."""
        book = state.book
        if book.is_crossed():
            self.stats.crossed_books += 1
            reason = "crossed book after snapshot" if syncing else "crossed book"
            self._restart(state, reason, received_ns, out, attempt=syncing)
            return
        depth = self.depth
        bids = _known(book.bids, state.bid_limit, depth)
        asks = _known(book.asks, state.ask_limit, depth)
        min_known = self.min_known
        if (state.bid_limit is not None and bids < min_known) or (
            state.ask_limit is not None and asks < min_known
        ):
            reason = f"book moved beyond the {self.limit}-level snapshot"
            self._restart(state, reason, received_ns, out, attempt=syncing)
            return
        if syncing:
            state.attempts = 0
            if state.announced:
                state.announced = False
                out.append(self._status(state, "valid", "snapshot applied", received_ns))
        received_ms = received_ns // 1_000_000
        out.append(
            Book(
                exchange=self.exchange,
                symbol=state.symbol,
                bids=book.top_bids(bids),
                asks=book.top_asks(asks),
                depth=depth,
                timestamp=received_ms if exchange_time is None else exchange_time,
                exchange_time=exchange_time,
                received_ns=received_ns,
                sequence=book.sequence,
            )
        )

    def _restart(
        self,
        state: BookState,
        reason: str,
        received_ns: int,
        out: list[Event],
        *,
        keep: list[DepthUpdate] | None = None,
        attempt: bool = False,
    ) -> None:
        """Drop the book, announce it invalid (once) and sync again from ``keep``'s events."""
        state.book.clear()
        state.phase = "waiting"
        state.straddle = False
        state.bid_limit = state.ask_limit = None
        state.buffer.clear()
        self.stats.book_resyncs += 1
        if not state.announced:
            state.announced = True
            out.append(self._status(state, "invalid", reason, received_ns))
            out.append(self._status(state, "resyncing", reason, received_ns))
        if attempt:
            state.attempts += 1
            if state.attempts >= MAX_SYNC_ATTEMPTS:
                state.can_request = False
                self.notices.append(
                    f"{state.native} book: {reason}; {state.attempts} snapshots in a "
                    "row did not line up, waiting for a resubscribe"
                )
        for event in keep or ():
            self._buffer(state, event)

    def _failed(self, state: BookState, reason: str, received_ns: int, out: list[Event]) -> None:
        state.can_request = False
        self.notices.append(f"{state.native} book: {reason}; waiting for a resubscribe")
        if not state.announced:
            state.announced = True
            out.append(self._status(state, "invalid", reason, received_ns))

    def _status(self, state: BookState, value: str, reason: str, received_ns: int) -> FeedStatus:
        return book_status(self.exchange, state.symbol, value, reason, received_ns)


def _known(side: BookSide, limit: float | None, depth: int) -> int:
    """How many of a side's best levels may be published: those within the snapshot's range."""
    if limit is None:
        return min(depth, len(side))
    return min(depth, side.rank(limit))


__all__ = ["BookState", "DepthBooks", "snapshot_limit"]
