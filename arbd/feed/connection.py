"""Drives one exchange session over one open WebSocket connection.

Tasks, all in the connection's own nursery:

``reader``     the hot loop: one ``receive_some`` per iteration, every message of that read handed
               to ``session.receive`` synchronously, the resulting events published to the sink
               in one call. No per-message await.
``sender``     the only task that writes to the socket: protocol output (pongs) immediately,
               session frames paced to the exchange's outgoing message limit.
``heartbeat``  protocol pings with a pong deadline, the adapter's app-level pings, idle deadline.
``watchdog``   per-subscription stale-data detection on the channels the adapter declares
               continuous; recovers a stale subscription by resubscribing (or reconnecting, if the
               adapter says so) and reports it as a ``subscription`` status event. A subscription
               the session says it is ``waiting`` for (a requested snapshot) counts as fresh.
``http``       carries out the session's REST requests (book snapshots) one at a time, through
               the exchange's REST client (which paces them under its weight budget).

``run`` returns when the caller cancels it (rotation, shutdown) and raises a ``FeedError`` when
the connection fails; the supervisor decides what comes next.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import trio

from arbd.errors import (
    FeedError,
    HeartbeatTimeout,
    PeerClosed,
    RateLimited,
    ReconnectRequested,
    RestError,
    StaleFeed,
)
from arbd.exchange.adapter import (
    FRAME_ERRORS,
    ExchangeSession,
    ExchangeSpec,
    HttpRequest,
    HttpResponse,
)
from arbd.feed.carryover import SlotMemory
from arbd.feed.counters import FeedCounters
from arbd.feed.transport import RECEIVE_SIZE, WebSocketClient, describe
from arbd.model import Book, Candle, Event, FeedStatus, Quote, Subscription, Trade, ms_from_ns

if TYPE_CHECKING:
    from arbd.feed.clock import TrioClock
    from arbd.feed.recorder import Recorder
    from arbd.feed.rest import RestClient

log = logging.getLogger("arbd.feed")

Sink = Callable[[Sequence[Event]], None]


_EVENT_TYPES: tuple[tuple[type, str], ...] = (
    (Quote, "price"),
    (Trade, "trades"),
    (Book, "book"),
    (Candle, "candles"),
)


class ConnectionStats:
    """Plain counters (read by the metrics collector at scrape time)."""

    __slots__ = ("bytes", "decode_errors", "frames", "last_frame_ns", "resubscribes")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.decode_errors = 0
        self.resubscribes = 0
        self.last_frame_ns = 0


class Connection:
    def __init__(
        self,
        *,
        conn_id: str,
        slot: str = "",
        spec: ExchangeSpec,
        session: ExchangeSession,
        client: WebSocketClient,
        sink: Sink,
        clock: TrioClock,
        stale_after: float,
        rest: RestClient | None = None,
        recorder: Recorder | None = None,
        on_live: Callable[[], None] | None = None,
        on_health: Callable[[Connection, bool], None] | None = None,
        counters: FeedCounters | None = None,
        memory: SlotMemory | None = None,
        not_live: Iterable[Subscription] = (),
    ) -> None:
        """``counters``: the exchange's cumulative counters, which this connection adds its
        events per channel and per-read latencies to (a fresh set when not given).
        ``memory`` and ``not_live``: what the slot's previous connection announced
        (:mod:`arbd.feed.carryover`): book validity, and the subscriptions it left stale or
        refused, which this connection announces ``live`` once their data arrives."""
        self.conn_id = conn_id
        self.slot = slot or conn_id
        """The supervisor's stable name for this connection, used in status events."""
        self.spec = spec
        self.exchange = spec.id
        self.session = session
        self.client = client
        self.sink = sink
        """Where events go. The supervisor swaps it during rotation hand-over."""
        self.clock = clock
        self.stale_after = stale_after
        self.rest = rest
        self.recorder = recorder
        self.on_live = on_live
        self.on_health = on_health
        self.stats = ConnectionStats()
        self.counters = counters or FeedCounters()
        self.live = False
        # Last wall-clock ns an event arrived, per event type, per symbol. Written once per
        # event; read by the watchdog a few times per deadline.
        self.last_data: dict[type, dict[str, int]] = {t: {} for t, _ in _EVENT_TYPES}
        self.memory = memory or SlotMemory(spec.id)
        self.settles = True
        """Whether this connection settles its own output with ``memory``; off while a
        rotation's hand-over filter sits between it and the hub (see
        :func:`arbd.feed.carryover.handover_sink`)."""
        self.stale: set[Subscription] = set(not_live) & set(self.continuous_subscriptions())
        self._refused_reported: set[Subscription] = set()
        self._outbox: deque[str | bytes] = deque()
        self._wake_sender = trio.Event()
        self._http_send, self._http_receive = trio.open_memory_channel[HttpRequest](math.inf)
        self._failure: FeedError | None = None
        self._started_at = 0.0
        self._healthy = True

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and serve until cancelled (returns) or failed (raises ``FeedError``)."""
        self._started_at = self.clock.now()
        now_ns = self.clock.wall_ns()
        self.session.start(now_ns)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._collect_session_output()
                nursery.start_soon(self._sender)
                nursery.start_soon(self._reader)
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._watchdog)
                nursery.start_soon(self._http_worker)
                task_status.started()
        finally:
            self._http_send.close()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """End this connection without error (rotation, shutdown): ``run`` returns."""
        self._nursery.cancel_scope.cancel()

    @property
    def not_live(self) -> set[Subscription]:
        """Subscriptions last announced ``stale`` or ``refused`` on this connection."""
        return self.stale | self._refused_reported

    def take_over(self, previous_not_live: set[Subscription]) -> None:
        """This connection just became its slot's primary (rotation). What it announced
        before was dropped by the hand-over filter, so announce where it differs from the
        previous primary: ``live`` for what that one left stale or refused and this one
        receives, ``stale``/``refused`` for the reverse (found by the soak: a subscription
        stayed ``stale`` for good after a rotation)."""
        mine = self.not_live
        for sub in sorted(previous_not_live - mine):
            self._sub_status(sub, "live", "rotated to a new connection")
        for sub in sorted(mine - previous_not_live):
            state = "refused" if sub in self._refused_reported else "stale"
            self._sub_status(sub, state, "rotated to a new connection")

    def _publish(self, events: Sequence[Event]) -> None:
        """Publish events off the hot path (session effects, REST answers)."""
        self.sink(self.memory.settle(events) if self.settles else events)

    def has_data(self, sub: Subscription) -> bool:
        for event_type, channel in _EVENT_TYPES:
            if channel == sub.channel:
                return sub.symbol in self.last_data[event_type]
        return False

    def _fail(self, error: FeedError) -> None:
        """Record the first failure and stop every task of this connection."""
        if self._failure is None:
            self._failure = error
        self._nursery.cancel_scope.cancel()

    # -- reading (the hot path) ---------------------------------------------------------------

    async def _reader(self) -> None:
        client = self.client
        receive_some = client.stream.receive_some
        session_receive = self.session.receive
        stats = self.stats
        recorder = self.recorder
        conn_id = self.conn_id
        wall_ns = self.clock.wall_ns
        last_data = self.last_data
        quotes, trades, books, candles = (last_data[t] for t, _ in _EVENT_TYPES)
        by_type = {Quote: quotes, Trade: trades, Book: books, Candle: candles}
        counters = self.counters
        events_by_type = counters.events_by_type
        ingest, publish = counters.ingest_latency, counters.publish_latency
        memory = self.memory
        while True:
            try:
                data = await receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(_peer_closed(client.url, exc))
                return
            now = wall_ns()
            stats.bytes += len(data)
            stats.last_frame_ns = now
            try:
                messages = client.feed(data)
            except FeedError as exc:
                self._fail(exc)
                return
            events: list[Event] = []
            for payload, is_text in messages:
                if recorder is not None:
                    recorder.recv(conn_id, now, bytes(payload), is_text)
                try:
                    session_receive(payload, is_text, now, events)
                except FRAME_ERRORS as exc:
                    stats.decode_errors += 1
                    _log_frame_error(self.exchange, exc, payload)
            stats.frames += len(messages)
            if client.pongs:
                self._pong_received(now)
            if events:
                # Latency per socket read, not per message: one clock read each.
                ingest.observe_ns(wall_ns() - now)
                statuses = False
                for event in events:
                    event_type = type(event)
                    seen = by_type.get(event_type)
                    if seen is not None:
                        seen[event.symbol] = now
                    elif event_type is FeedStatus:
                        statuses = True
                    events_by_type[event_type] = events_by_type.get(event_type, 0) + 1
                if not self.live:
                    self._became_live()
                # Rare: a book status in this read, or a book still announced not valid.
                if self.settles and (statuses or memory.unsettled):
                    self.sink(memory.settle(events))
                else:
                    self.sink(events)
                publish.observe_ns(wall_ns() - now)
            self._collect_session_output()

    def _became_live(self) -> None:
        self.live = True
        if self.on_live is not None:
            self.on_live()

    def _collect_session_output(self) -> None:
        """Move the session's queued effects to the sender and the HTTP worker."""
        session = self.session
        wake = self.client.needs_flush
        if session.has_output:
            frames = session.take_frames()
            if frames:
                self._outbox.extend(frames)
                wake = True
            for request in session.take_http_requests():
                self._http_send.send_nowait(request)
            emitted = session.take_events()
            if emitted:
                self._publish(emitted)
            if session.reconnect_reason is not None:
                self._fail(ReconnectRequested(f"{self.exchange}: {session.reconnect_reason}"))
        if session.refused and len(session.refused) > len(self._refused_reported):
            for sub, reason in session.refused.items():
                if sub not in self._refused_reported:
                    self._refused_reported.add(sub)
                    self.stale.discard(sub)
                    self._sub_status(sub, "refused", reason, level=logging.WARNING)
        if session.notices:
            for notice in session.notices:
                log.warning("%s %s: %s", self.exchange, self.conn_id, notice)
            session.notices.clear()
        if wake:
            self._wake_sender.set()

    # -- writing ------------------------------------------------------------------------------

    async def _sender(self) -> None:
        client = self.client
        outbox = self._outbox
        recorder = self.recorder
        # A sliding window: at most `limit` frames in any `window` seconds, which is what an
        # exchange's "N messages per second" means (a token bucket with a burst of N would let
        # 2N - 1 frames through in the first second).
        rate = self.spec.max_outgoing_per_second
        limit = max(1, math.floor(rate)) if rate > 0 else 0
        window = limit / rate if rate > 0 else 0.0
        sent: deque[float] = deque(maxlen=limit or 1)
        while True:
            await self._wake_sender.wait()
            self._wake_sender = trio.Event()
            client.needs_flush = False
            while outbox:
                if limit and len(sent) == limit:
                    free_at = sent[0] + window
                    if self.clock.now() < free_at:
                        await self._flush()
                        await trio.sleep_until(free_at)
                        continue
                frame = outbox.popleft()
                if limit:
                    sent.append(self.clock.now())
                try:
                    client.send_text(frame)
                except FeedError as exc:  # closing: the reader reports the close too
                    self._fail(exc)
                    return
                if recorder is not None:
                    recorder.send(self.conn_id, self.clock.wall_ns(), frame)
            await self._flush()

    async def _flush(self) -> None:
        try:
            await self.client.flush()
        except FeedError as exc:
            self._fail(exc)

    def wake_sender(self) -> None:
        self._wake_sender.set()

    # -- keepalive ----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        keepalive = self.spec.keepalive
        clock = self.clock
        ping_every = keepalive.protocol_ping_interval
        app_every = keepalive.app_ping_interval
        now = clock.now()
        next_ping = now + ping_every if ping_every else math.inf
        next_app = now + app_every if app_every else math.inf
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        counter = 0
        while True:
            now = clock.now()
            idle_deadline = self._last_frame_time() + keepalive.idle_timeout
            pong_deadline = (
                self._ping_sent_at + keepalive.pong_timeout if self._ping_payload else math.inf
            )
            wake_at = min(next_ping, next_app, idle_deadline, pong_deadline)
            if wake_at > now:
                await trio.sleep_until(wake_at)
                continue
            if now >= pong_deadline:
                self._fail(
                    HeartbeatTimeout(
                        f"{self.exchange}: no pong within {keepalive.pong_timeout:g} s"
                    )
                )
                return
            if now >= idle_deadline:
                self._fail(
                    HeartbeatTimeout(
                        f"{self.exchange}: nothing received for {keepalive.idle_timeout:g} s"
                    )
                )
                return
            if now >= next_ping:
                counter += 1
                payload = str(counter).encode()
                if self._ping_payload is None:
                    self._ping_payload = payload
                    self._ping_sent_at = now
                try:
                    self.client.send_ping(payload)
                except FeedError as exc:
                    self._fail(exc)
                    return
                self._wake_sender.set()
                next_ping = now + (ping_every or math.inf)
            if now >= next_app:
                self.session.keepalive(clock.wall_ns())
                self._collect_session_output()
                next_app = now + (app_every or math.inf)

    def _last_frame_time(self) -> float:
        """Monotonic time of the last received frame (connection start if none yet)."""
        if not self.stats.last_frame_ns:
            return self._started_at
        age = (self.clock.wall_ns() - self.stats.last_frame_ns) / 1e9
        return self.clock.now() - age

    def _pong_received(self, now_ns: int) -> None:
        # Any pong after our ping counts: servers answer pings in order, and an unsolicited pong
        # still proves the connection carries traffic.
        self.client.pongs.clear()
        self._ping_payload = None

    # -- stale-data watchdog --------------------------------------------------------------

    def continuous_subscriptions(self) -> list[Subscription]:
        continuous = self.spec.continuous_channels
        return [s for s in self.session.plan.subscriptions if s.channel in continuous]

    async def _watchdog(self) -> None:
        subs = self.continuous_subscriptions()
        if not subs:
            return
        channel_types = {channel: t for t, channel in _EVENT_TYPES}
        deadline_ns = int(self.stale_after * 1e9)
        # A subscription's clock starts when the connection starts; each recovery restarts it.
        armed_at: dict[Subscription, int] = dict.fromkeys(subs, self.clock.wall_ns())
        strikes: dict[Subscription, int] = dict.fromkeys(subs, 0)
        tick = max(0.05, self.stale_after / 4)
        waiting = self.session.waiting
        while True:
            await trio.sleep(tick)
            now = self.clock.wall_ns()
            newly_stale: list[Subscription] = []
            for sub in subs:
                if sub in self._refused_reported:
                    continue
                if waiting(sub):
                    # Held back by the session until an answer it asked for comes (a REST
                    # snapshot waiting its turn under the weight budget): not stale. Its clock
                    # restarts, so it gets a whole deadline once the wait ends.
                    armed_at[sub] = now
                    continue
                last = self.last_data[channel_types[sub.channel]].get(sub.symbol, 0)
                since = max(last, armed_at[sub])
                if sub in self.stale:
                    if last > armed_at[sub]:
                        self.stale.discard(sub)
                        strikes[sub] = 0
                        self._sub_status(sub, "live", "data resumed")
                    elif now - since >= deadline_ns:
                        newly_stale.append(sub)
                elif now - since >= deadline_ns:
                    self.stale.add(sub)
                    newly_stale.append(sub)
                    self._sub_status(sub, "stale", f"no data for {(now - since) / 1e9:.1f} s")
            healthy = not self.stale
            # Before its first data a connection is "subscribing", not "stale" (subscriptions
            # inherited stale from the previous connection must not make it look up).
            if healthy != self._healthy and self.live:
                self._healthy = healthy
                if self.on_health is not None:
                    self.on_health(self, healthy)
            if not newly_stale:
                continue
            for sub in newly_stale:
                armed_at[sub] = now
                strikes[sub] += 1
            worst = max(strikes[s] for s in newly_stale)
            if self.spec.stale_action == "reconnect" or worst >= 3:
                names = ", ".join(str(s) for s in newly_stale)
                self._fail(StaleFeed(f"{self.exchange}: stale subscriptions: {names}"))
                return
            self.stats.resubscribes += len(newly_stale)
            self.session.resubscribe(newly_stale, now)
            self._collect_session_output()

    def _sub_status(
        self, sub: Subscription, state: str, reason: str, level: int = logging.INFO
    ) -> None:
        log.log(level, "%s %s %s: %s (%s)", self.exchange, self.conn_id, sub, state, reason)
        self.sink(
            [
                FeedStatus(
                    exchange=self.exchange,
                    symbol=sub.symbol,
                    scope="subscription",
                    state=state,
                    connection=self.slot,
                    channel=sub.channel,
                    reason=reason,
                    timestamp=ms_from_ns(self.clock.wall_ns()),
                )
            ]
        )

    # -- REST on behalf of the session ----------------------------------------------------

    async def _http_worker(self) -> None:
        async for request in self._http_receive:
            events: list[Event] = []
            if self.rest is None:
                self.session.on_http_failed(request, "no REST client configured", events)
            else:
                try:
                    status, body = await self.rest.get(request.url, request.weight)
                except (RestError, RateLimited) as exc:
                    log.warning("%s: %s", self.exchange, exc)
                    self.session.on_http_failed(request, str(exc), events)
                else:
                    now = self.clock.wall_ns()
                    if self.recorder is not None:
                        self.recorder.http(self.conn_id, now, request.url, status, body)
                    response = HttpResponse(
                        request=request, status=status, body=body, received_ns=now
                    )
                    try:
                        self.session.on_http(response, events)
                    except FRAME_ERRORS as exc:
                        self.stats.decode_errors += 1
                        _log_frame_error(self.exchange, exc, body)
                        self.session.on_http_failed(request, f"unparseable response: {exc}", events)
            if events:
                self._publish(events)
            self._collect_session_output()


def _peer_closed(url: str, exc: BaseException) -> FeedError:
    return PeerClosed(f"{url}: connection lost: {describe(exc)}")


_last_frame_log: dict[str, float] = {}


def _log_frame_error(
    exchange: str, exc: BaseException, payload: bytes | bytearray | memoryview
) -> None:
    # One line per exchange per 10 s at most: a feed spewing garbage must not flood the log.
    now = time.monotonic()
    if now - _last_frame_log.get(exchange, -math.inf) < 10.0:
        return
    _last_frame_log[exchange] = now
    sample = bytes(payload[:120])
    log.warning("%s: skipped unparseable frame (%s): %r", exchange, exc, sample)
