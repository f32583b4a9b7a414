"""Supervision of an exchange's connections: state machine, backoff, budget, rotation.

Per exchange, an :class:`arbd.feed.exchange.ExchangeFeed` loads instrument metadata over REST,
plans connections with the adapter (respecting its per-connection stream limit), and runs one
:class:`ConnectionSupervisor` per planned connection, each in its own nursery. A supervisor:

    connecting -> subscribing -> live (<-> stale) -> backoff -> connecting -> ... -> stopped

* each change is published as a ``FeedStatus(scope="connection")`` and logged once;
* failures back off with capped, fully jittered exponential delays; a connection that stayed up
  for ``backoff_reset_after`` resets the backoff; ``max_attempts`` consecutive failures mark the
  exchange failed (the process carries on);
* HTTP 429/418 on the handshake waits at least the server's Retry-After;
* every new connection spends from the exchange's connection budget (no reconnect storms);
* a fresh session restores every subscription of the plan after each reconnect;
* where the exchange closes connections at a fixed age (Binance: 24 h), a replacement is opened
  ``rotation_margin`` before, run until live, handed over without gaps (``handover.Handover``)
  and only then the old one is closed with code 1000;
* a supervisor cancelled with ``removed`` set (runtime removal) says so in its last status.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from arbd.config import FeedConfig
from arbd.errors import FeedError, RateLimited
from arbd.exchange.adapter import ConnectionPlan, ExchangeAdapter
from arbd.feed.backoff import Backoff
from arbd.feed.budget import SlidingBudget
from arbd.feed.carryover import SlotMemory, handover_sink
from arbd.feed.clock import TrioClock
from arbd.feed.connection import Connection, Sink
from arbd.feed.counters import FeedCounters
from arbd.feed.handover import Handover
from arbd.feed.rest import RestClient
from arbd.feed.transport import Opener, WebSocketClient, connect
from arbd.model import SLOT_REMOVED, Event, FeedStatus, ms_from_ns

if TYPE_CHECKING:
    import random

    from arbd.feed.recorder import Recorder

log = logging.getLogger("arbd.feed")

HANDOVER_TIMEOUT = 30.0
"""How long a replacement connection may take to go live before rotation gives up on it."""
HANDOVER_GRACE = 30.0
"""How long sequence de-duplication stays on after the old connection closed."""


class FeedContext:
    """What every supervisor of one exchange shares: I/O, time, limits, counters."""

    def __init__(
        self,
        *,
        adapter: ExchangeAdapter,
        feed: FeedConfig,
        sink: Sink,
        opener: Opener,
        clock: TrioClock,
        rest: RestClient,
        stale_after: float,
        rotate_after: float | None,
        recorder: Recorder | None = None,
        rng: random.Random | None = None,
        counters: FeedCounters | None = None,
    ) -> None:
        """``counters``: pass the previous context's when an exchange's feed is restarted, so
        its totals stay monotonic."""
        self.adapter = adapter
        self.spec = adapter.spec
        self.exchange = adapter.spec.id
        self.feed = feed
        self.sink = sink
        self.opener = opener
        self.clock = clock
        self.rest = rest
        self.stale_after = stale_after
        self.rotate_after = rotate_after
        self.recorder = recorder
        self.rng = rng
        self.budget = SlidingBudget(feed.connection_budget, feed.connection_budget_window)
        self.counters = counters or FeedCounters()
        self.reconnects = self.counters.reconnects
        self._ids = itertools.count(1)

    @property
    def connections_opened(self) -> int:
        return self.counters.connections_opened

    def next_slot(self) -> str:
        """A stable name for one planned connection, kept across reconnects and rotations.

        Status events name the slot, so the hub's status map stays bounded however often a
        connection is replaced; each physical connection is ``<slot>.<n>`` (logs, captures).
        """
        return f"{self.exchange}-{next(self._ids)}"

    def new_backoff(self) -> Backoff:
        f = self.feed
        return Backoff(
            f.backoff_base, f.backoff_cap, f.backoff_reset_after, f.max_attempts, rng=self.rng
        )

    def status(
        self, scope: str, state: str, *, connection: str = "", reason: str = ""
    ) -> FeedStatus:
        return FeedStatus(
            exchange=self.exchange,
            symbol="",
            scope=scope,  # type: ignore[arg-type]
            state=state,
            connection=connection,
            reason=reason,
            timestamp=ms_from_ns(self.clock.wall_ns()),
        )

    async def take_budget(self) -> None:
        while True:
            delay = self.budget.delay(self.clock.now())
            if delay <= 0:
                self.budget.take(self.clock.now())
                return
            log.warning("%s: connection budget spent; waiting %.1f s", self.exchange, delay)
            await trio.sleep(delay)

    async def open(self, url: str) -> WebSocketClient:
        await self.take_budget()
        self.counters.connections_opened += 1
        return await connect(
            url,
            self.opener,
            max_size=self.feed.max_frame_bytes,
            connect_timeout=self.feed.connect_timeout,
        )


class ConnectionSupervisor:
    """Keeps one planned connection alive for as long as it runs. See the module docstring."""

    def __init__(self, ctx: FeedContext, plan: ConnectionPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.state = "stopped"
        self.slot = ctx.next_slot()
        self.conn_id = ""
        self._serial = itertools.count(1)
        self.attempts = 0
        self.current: Connection | None = None
        self.memory = SlotMemory(ctx.exchange)
        """Book validity as this slot's connections announced it (outlives each of them)."""
        self.rotations = 0
        self._handover: Handover | None = None
        self._failure: FeedError | None = None
        self.went_live = False
        self.gave_up = False
        """``feed.max_attempts`` failures in a row: the slot stopped trying."""
        """Some connection of this slot has been live (``starting`` vs ``down`` in status)."""
        self.removed = False
        """Set before cancelling a slot that is removed for good (runtime symbol or exchange
        removal): its last status says ``stopped`` with reason ``removed``, which tells the
        hub and the arbitrage engine to forget the slot instead of counting it as down."""

    def _set_state(self, state: str, reason: str = "") -> None:
        if state == self.state:
            return
        self.state = state
        ctx = self.ctx
        if reason:
            log.info("%s %s: %s (%s)", ctx.exchange, self.conn_id, state, reason)
        else:
            log.info("%s %s: %s", ctx.exchange, self.conn_id, state)
        ctx.sink([ctx.status("connection", state, connection=self.slot, reason=reason)])

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ctx = self.ctx
        backoff = ctx.new_backoff()
        started = False
        try:
            while True:
                if not started:
                    task_status.started()
                    started = True
                self.conn_id = self._next_conn_id()
                self._set_state("connecting")
                live_since: list[float] = []
                retry_after = 0.0
                try:
                    await self._run_once(live_since)
                except RateLimited as exc:
                    retry_after = exc.retry_after or 0.0
                    self._failed(exc)
                except FeedError as exc:
                    self._failed(exc)
                else:  # pragma: no cover - _run_once only returns by raising
                    continue
                if live_since:
                    backoff.connection_ended(ctx.clock.now() - live_since[0])
                delay = max(backoff.next_delay(), retry_after)
                if backoff.exhausted:
                    self.gave_up = True
                    self._set_state("failed", f"gave up after {backoff.failures} attempts")
                    ctx.sink([ctx.status("exchange", "failed", reason="too many failed attempts")])
                    return
                self._set_state("backoff", f"retry in {delay:.2f} s")
                await trio.sleep(delay)
        finally:
            self._set_state("stopped", SLOT_REMOVED if self.removed else "")

    def _failed(self, exc: FeedError) -> None:
        reason = exc.reason
        self.ctx.reconnects[reason] = self.ctx.reconnects.get(reason, 0) + 1
        log.warning("%s %s: %s", self.ctx.exchange, self.conn_id, exc)
        if self.ctx.recorder is not None:
            self.ctx.recorder.disconnect(self.conn_id, self.ctx.clock.wall_ns(), str(exc))

    async def _run_once(self, live_since: list[float]) -> None:
        """One connection's life, including any number of rotations. Raises on failure."""

        def on_live() -> None:
            self.went_live = True
            if not live_since:
                live_since.append(self.ctx.clock.now())
            self._set_state("live")

        connection = await self._open_connection(self.conn_id, on_live)
        self.current = connection
        self._failure = None
        self._set_state("subscribing")
        async with trio.open_nursery() as nursery:
            await nursery.start(self._run_connection, connection, nursery)
            rotate_in = self._rotation_delay()
            if rotate_in is not None:
                nursery.start_soon(self._rotation_loop, nursery, rotate_in)
        if self._failure is not None:
            raise self._failure

    async def _run_connection(
        self,
        connection: Connection,
        nursery: trio.Nursery,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one connection; its failure ends the supervisor's attempt only if it is current."""
        ctx = self.ctx
        reason = "closed"
        ctx.counters.attach(connection)
        try:
            await connection.run(task_status=task_status)
            reason = "rotated"
        except FeedError as exc:
            reason = str(exc)
            if connection is self.current:
                self._failure = exc
                nursery.cancel_scope.cancel()
            else:
                log.info(
                    "%s %s: old connection ended during hand-over: %s",
                    ctx.exchange,
                    connection.conn_id,
                    exc,
                )
        finally:
            ctx.counters.detach(connection)
            with trio.CancelScope(shield=True):
                await connection.client.close(1000, "bye")
                if ctx.recorder is not None:
                    ctx.recorder.disconnect(connection.conn_id, ctx.clock.wall_ns(), reason)

    def _rotation_delay(self) -> float | None:
        rotate_after = self.ctx.rotate_after
        if not rotate_after:
            return None
        return max(1.0, rotate_after - self.ctx.feed.rotation_margin)

    async def _rotation_loop(self, nursery: trio.Nursery, rotate_in: float) -> None:
        ctx = self.ctx
        while True:
            await trio.sleep(rotate_in)
            old = self.current
            assert old is not None
            if not await self._rotate(old, nursery):
                # The old connection still works; try again soon, before the exchange's cut-off.
                rotate_in = min(rotate_in, max(1.0, ctx.feed.rotation_margin / 4))

    async def _rotate(self, old: Connection, nursery: trio.Nursery) -> bool:
        """Open a replacement, wait until it is live, hand over, close the old connection."""
        ctx = self.ctx
        new_id = self._next_conn_id()
        live = trio.Event()
        try:
            new = await self._open_connection(new_id, live.set)
        except FeedError as exc:
            log.warning("%s %s: rotation failed to connect: %s", ctx.exchange, new_id, exc)
            return False
        handover = Handover(primary=old)
        self._handover = handover
        old.settles = new.settles = False
        old.sink = handover_sink(ctx.sink, self.memory, handover, old)
        new.sink = handover_sink(ctx.sink, self.memory, handover, new)
        await nursery.start(self._run_connection, new, nursery)
        with trio.move_on_after(HANDOVER_TIMEOUT):
            await live.wait()
            await _wait_until(lambda: _covers_continuous(new))
        if not live.is_set():
            log.warning(
                "%s %s: replacement not live after %.0f s; keeping %s",
                ctx.exchange,
                new_id,
                HANDOVER_TIMEOUT,
                old.conn_id,
            )
            old.sink = ctx.sink
            old.settles = True
            new.stop()
            return False
        handover.primary = new
        new.take_over(old.not_live)
        self.current = new
        self.rotations += 1
        log.info("%s: rotated %s -> %s", ctx.exchange, old.conn_id, new_id)
        old.stop()
        self.conn_id = new_id
        ctx.sink([ctx.status("connection", "live", connection=self.slot, reason="rotated")])
        await trio.sleep(HANDOVER_GRACE)
        new.sink = ctx.sink
        new.settles = True
        self._handover = None
        return True

    def _next_conn_id(self) -> str:
        return f"{self.slot}.{next(self._serial)}"

    async def _open_connection(self, conn_id: str, on_live: Callable[[], None]) -> Connection:
        ctx = self.ctx
        client = await ctx.open(self.plan.url)
        if ctx.recorder is not None:
            subs = [[s.channel, s.symbol] for s in self.plan.subscriptions]
            ctx.recorder.connect(conn_id, ctx.clock.wall_ns(), self.plan.url, subs)
        return Connection(
            conn_id=conn_id,
            slot=self.slot,
            spec=ctx.spec,
            session=ctx.adapter.new_session(self.plan),
            client=client,
            sink=ctx.sink,
            clock=ctx.clock,
            stale_after=ctx.stale_after,
            rest=ctx.rest,
            recorder=ctx.recorder,
            on_live=on_live,
            on_health=self._health_changed,
            counters=ctx.counters,
            memory=self.memory,
            # What the previous connection left stale is stale until this one's data says not.
            not_live=self.current.not_live if self.current is not None else (),
        )

    def _health_changed(self, connection: Connection, healthy: bool) -> None:
        if connection is self.current:
            self._set_state("live" if healthy else "stale")


def _covers_continuous(connection: Connection) -> bool:
    """True once the connection has delivered data on every continuous subscription."""
    return all(connection.has_data(sub) for sub in connection.continuous_subscriptions())


async def _wait_until(predicate: Callable[[], bool], poll: float = 0.05) -> None:
    # Rotation happens once a day; polling here keeps the hot path free of notifications.
    while not predicate():  # noqa: ASYNC110 - see above
        await trio.sleep(poll)


__all__ = ["ConnectionSupervisor", "Event", "FeedContext"]
