"""One exchange's feed (instruments, planning, its connection supervisors) and the set of feeds.

:class:`ExchangeFeed` loads instrument metadata, plans connections with the adapter and runs one
:class:`arbd.feed.supervisor.ConnectionSupervisor` per plan, each in its own cancel scope, so
subscriptions can change while it runs:

``add(symbols)``     plans connections for just the new subscriptions and starts supervisors for
                     them. Existing connections are not touched: adapters' sessions subscribe
                     once, at ``start``, so a new connection is the one way that works for every
                     exchange (and each spends from the exchange's connection budget).
``remove(symbols)``  a connection carrying only removed symbols is closed (code 1000); one
                     carrying removed and kept symbols is closed and replaced by one carrying the
                     kept ones (a gap of one reconnect for those, as after any reconnect); every
                     other connection is left alone.

Removed slots end with a ``stopped`` status whose reason is ``removed`` (see
``arbd.model.SLOT_REMOVED``), so the hub and the arbitrage engine forget them.

:class:`FeedSet` runs every exchange's feed in one nursery, each in its own cancel scope, so
exchanges can be added and removed at runtime (config reload).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence

import httpx
import msgspec
import trio

from arbd.config import Config
from arbd.errors import ConfigError, FeedError, RateLimited, RequestWeightError
from arbd.exchange.adapter import ConnectionPlan, ExchangeAdapter, HttpResponse
from arbd.exchange.symbols import check_symbols
from arbd.feed.budget import SlidingBudget
from arbd.feed.clock import TrioClock
from arbd.feed.connection import Sink
from arbd.feed.counters import FeedCounters
from arbd.feed.recorder import Recorder
from arbd.feed.rest import RestClient, rest_budget
from arbd.feed.supervisor import ConnectionSupervisor, FeedContext
from arbd.feed.transport import Opener
from arbd.model import Subscription
from arbd.status import ExchangeState, ExchangeStatus

log = logging.getLogger("arbd.feed")


async def fetch_instruments(ctx: FeedContext) -> None:
    """One attempt at loading the adapter's instruments. Raises ``FeedError`` (try again
    later) or ``ConfigError`` (a configured symbol the exchange does not list)."""
    adapter = ctx.adapter
    responses = []
    for request in adapter.instrument_requests():
        status, body = await ctx.rest.get(request.url, request.weight)
        now = ctx.clock.wall_ns()
        if ctx.recorder is not None:
            ctx.recorder.http("", now, request.url, status, body)
        responses.append(HttpResponse(request=request, status=status, body=body, received_ns=now))
    adapter.load_instruments(responses)


class ExchangeFeed:
    """All connections of one exchange. ``await nursery.start(feed.run)``; see the module
    docstring for :meth:`add` and :meth:`remove` (call them only while it runs)."""

    def __init__(self, ctx: FeedContext) -> None:
        self.ctx = ctx
        self.supervisors: list[ConnectionSupervisor] = []
        self.state = "starting"
        """``starting`` (loading instruments), ``running``, ``failed`` or ``stopped``."""
        self.error = ""
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[ConnectionSupervisor, trio.CancelScope] = {}
        self._ended: dict[ConnectionSupervisor, trio.Event] = {}

    @property
    def symbols(self) -> list[str]:
        """The normalized symbols this feed subscribes now (the adapter's settings, kept in
        step with :meth:`add` and :meth:`remove`)."""
        return list(self.ctx.adapter.settings.symbols)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load instruments (unless already loaded), then supervise every planned connection
        until cancelled.

        Signals ``started`` once the supervisors are started (or the exchange failed), so the
        daemon's start-up never waits on a slow or unreachable exchange's data.
        """
        ctx = self.ctx
        try:
            if not ctx.adapter.instruments:
                try:
                    await self._load_instruments()
                except ConfigError as exc:
                    self._fail(exc.one_line())
                    task_status.started()
                    return
            adapter = ctx.adapter
            plans = adapter.plan_connections(adapter.subscriptions())
            log.info(
                "%s: %d subscriptions on %d connection(s)",
                ctx.exchange,
                sum(len(p.subscriptions) for p in plans),
                len(plans),
            )
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.state = "running"
                for plan in plans:
                    await self._start(plan)
                task_status.started()
                # Stay open for supervisors added at runtime, even when every one has ended.
                await trio.sleep_forever()
        finally:
            self._nursery = None
            if self.state != "failed":
                self.state = "stopped"

    def _fail(self, reason: str) -> None:
        self.state = "failed"
        self.error = reason
        log.error("%s: %s", self.ctx.exchange, reason)
        self.ctx.sink([self.ctx.status("exchange", "failed", reason=reason)])

    async def _load_instruments(self) -> None:
        """Fetch metadata with backoff until it succeeds; ConfigError (bad symbols) is final."""
        ctx = self.ctx
        backoff = ctx.new_backoff()
        while True:
            try:
                await fetch_instruments(ctx)
            except RequestWeightError as exc:
                raise ConfigError(f"{ctx.exchange}: {exc}") from None  # retrying cannot help
            except FeedError as exc:
                delay = backoff.next_delay()
                if isinstance(exc, RateLimited) and exc.retry_after:
                    delay = max(delay, exc.retry_after)
                log.warning(
                    "%s: loading instruments failed (%s); retry in %.1f s", ctx.exchange, exc, delay
                )
                await trio.sleep(delay)
                continue
            return

    # -- runtime changes ----------------------------------------------------------------------

    async def _start(self, plan: ConnectionPlan) -> None:
        nursery = self._nursery
        assert nursery is not None, "the feed is not running"
        supervisor = ConnectionSupervisor(self.ctx, plan)
        scope = trio.CancelScope()
        ended = trio.Event()
        self.supervisors.append(supervisor)
        self._scopes[supervisor] = scope
        self._ended[supervisor] = ended

        async def supervise(task_status: trio.TaskStatus[None]) -> None:
            try:
                with scope:
                    await supervisor.run(task_status=task_status)
            finally:
                ended.set()

        await nursery.start(supervise)

    async def _retire(self, supervisor: ConnectionSupervisor) -> None:
        """Stop one supervisor for good and wait until its connection is closed."""
        supervisor.removed = True
        self._scopes.pop(supervisor).cancel()
        await self._ended.pop(supervisor).wait()
        self.supervisors.remove(supervisor)

    def retire_all(self) -> None:
        """Mark every supervisor removed: cancelling the feed then ends each slot with reason
        ``removed`` (the exchange is removed or its feed restarted)."""
        for supervisor in self.supervisors:
            supervisor.removed = True

    def _require_running(self) -> None:
        if self.state == "running":
            return
        exchange = self.ctx.exchange
        if self.state == "starting":
            raise ConfigError(f"{exchange} is still loading its instruments; try again shortly")
        detail = f": {self.error}" if self.error else ""
        raise ConfigError(f"{exchange} is {self.state}{detail}", key=f"exchanges.{exchange}")

    def _set_symbols(self, symbols: Sequence[str]) -> None:
        adapter = self.ctx.adapter
        adapter.settings = msgspec.structs.replace(adapter.settings, symbols=tuple(symbols))

    def check_add(self, symbols: Sequence[str]) -> list[str]:
        """The symbols of ``symbols`` not subscribed yet, in order, without duplicates.
        Raises ``ConfigError`` (nothing changes) for one the exchange does not list, with
        close matches suggested as at start-up."""
        self._require_running()
        current = set(self.symbols)
        new = [s for s in dict.fromkeys(symbols) if s not in current]
        check_symbols(self.ctx.exchange, new, self.ctx.adapter.instruments)
        return new

    async def add(self, symbols: Sequence[str]) -> list[str]:
        """Subscribe ``symbols`` on new connections; returns those newly subscribed."""
        new = self.check_add(symbols)
        if not new:
            return []
        adapter = self.ctx.adapter
        self._set_symbols([*self.symbols, *new])
        subscriptions = [Subscription(ch, s) for s in new for ch in adapter.settings.channels]
        for plan in adapter.plan_connections(subscriptions):
            await self._start(plan)
        log.info("%s: subscribed %s", self.ctx.exchange, ", ".join(new))
        return new

    def check_remove(self, symbols: Sequence[str]) -> list[str]:
        """``symbols`` without duplicates; ``ConfigError`` for one not subscribed."""
        self._require_running()
        current = self.symbols
        wanted = list(dict.fromkeys(symbols))
        for symbol in wanted:
            if symbol not in current:
                listed = ", ".join(current) or "none"
                raise ConfigError(
                    f"{symbol!r} is not subscribed on {self.ctx.exchange} (subscribed: {listed})"
                )
        return wanted

    async def remove(self, symbols: Sequence[str]) -> list[str]:
        """Unsubscribe ``symbols`` (see the module docstring); returns those removed."""
        gone = set(self.check_remove(symbols))
        if not gone:
            return []
        self._set_symbols([s for s in self.symbols if s not in gone])
        for supervisor in list(self.supervisors):
            plan = supervisor.plan
            if not any(sub.symbol in gone for sub in plan.subscriptions):
                continue
            kept = tuple(sub for sub in plan.subscriptions if sub.symbol not in gone)
            await self._retire(supervisor)
            if kept:
                # A subset of a plan fits where the plan did: same URL, within the limit.
                await self._start(ConnectionPlan(url=plan.url, subscriptions=kept))
        removed = [s for s in symbols if s in gone]
        log.info("%s: unsubscribed %s", self.ctx.exchange, ", ".join(removed))
        return removed

    # -- status -------------------------------------------------------------------------------

    def status(
        self, book_state: Mapping[tuple[str, str], str], now: float, now_ns: int
    ) -> ExchangeStatus:
        """This feed for ``arbctl status``. ``book_state``: the hub's (exchange, symbol) ->
        book validity; ``now``/``now_ns``: the feed clock's monotonic and wall time."""
        exchange = self.ctx.exchange
        counters = self.ctx.counters
        symbols = self.symbols
        books = [book_state.get((exchange, s)) for s in symbols]
        valid = books.count("valid")
        invalid = sum(1 for b in books if b is not None and b != "valid")
        last = counters.last_frame_ns
        state, error = self._state(trouble=invalid > 0 or self._refused())
        return ExchangeStatus(
            exchange=exchange,
            state=state,
            connections=len(self.supervisors),
            connections_live=sum(1 for s in self.supervisors if s.state == "live"),
            symbols=symbols,
            messages=counters.frames,
            messages_per_s=round(counters.rate(now), 1),
            last_message_age=round((now_ns - last) / 1e9, 3) if last else None,
            reconnects=counters.reconnects_total,
            books_valid=valid,
            books_invalid=invalid,
            error=error,
        )

    def _refused(self) -> bool:
        return any(s.current is not None and s.current.session.refused for s in self.supervisors)

    def _state(self, trouble: bool) -> tuple[ExchangeState, str]:
        if self.state == "failed":
            return "failed", self.error
        if self.state in ("starting", "stopped"):
            return ("starting" if self.state == "starting" else "stopped"), ""
        supervisors = self.supervisors
        if not supervisors:
            return "stopped", ""  # every symbol removed at runtime
        if all(s.gave_up for s in supervisors):
            return "failed", "every connection gave up (feed.max_attempts)"
        live = sum(1 for s in supervisors if s.state == "live")
        # ``stale``: connected, but some subscription gets no data.
        connected = live + sum(1 for s in supervisors if s.state == "stale")
        if live == len(supervisors):
            return ("degraded" if trouble else "live"), ""
        if connected:
            return "degraded", ""
        if not any(s.went_live for s in supervisors):
            return "starting", ""
        return "down", ""


class FeedSet:
    """Every exchange's feed in one nursery, each in its own cancel scope.

    ``await nursery.start(feeds.run)``, then :meth:`start` / :meth:`stop` feeds at any time
    while it runs; :meth:`create` builds a feed from the config with the I/O given here. A
    feed's REST client is closed when its feed ends.
    """

    def __init__(
        self,
        *,
        sink: Sink,
        opener: Opener,
        rest_transport: httpx.AsyncBaseTransport | None = None,
        recorders: Callable[[str], Recorder | None] = lambda exchange: None,
        rng: random.Random | None = None,
    ) -> None:
        self.feeds: dict[str, ExchangeFeed] = {}
        self._runs: dict[str, tuple[trio.CancelScope, trio.Event]] = {}
        self._nursery: trio.Nursery | None = None
        self._sink = sink
        self._opener = opener
        self._rest_transport = rest_transport
        self._recorders = recorders
        self._rng = rng
        self._rest_budgets: dict[str, SlidingBudget] = {}
        """Per exchange, kept across feed restarts (reload): the allowance is per IP, and a
        replacement feed loads instruments while the old one still runs."""

    def create(
        self,
        adapter: ExchangeAdapter,
        config: Config,
        clock: TrioClock,
        counters: FeedCounters | None = None,
    ) -> ExchangeFeed:
        """A feed (not started) for ``adapter`` under ``config``'s feed and exchange settings.
        ``counters``: the previous feed's, when an exchange's feed is replaced."""
        exchange = adapter.spec.id
        ex = config.exchanges[exchange]
        rotate_after = adapter.spec.rotate_after if ex.rotate_after is None else ex.rotate_after
        ctx = FeedContext(
            adapter=adapter,
            feed=config.feed,
            sink=self._sink,
            opener=self._opener,
            clock=clock,
            rest=RestClient(
                timeout=config.feed.rest_timeout,
                retries=config.feed.rest_retries,
                transport=self._rest_transport,
                budget=rest_budget(adapter.spec, self._rest_budgets),
                now=clock.now,
                name=exchange,
            ),
            stale_after=ex.stale_after or config.feed.stale_after,
            rotate_after=rotate_after or None,
            recorder=self._recorders(exchange),
            rng=self._rng,
            counters=counters,
        )
        return ExchangeFeed(ctx)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def start(self, feed: ExchangeFeed, *, wait: bool = True) -> None:
        """Run ``feed``. With ``wait``, return once it has started (instruments loaded, its
        supervisors running, or failed); else at once (a reload must not hang on an
        unreachable exchange)."""
        nursery = self._nursery
        assert nursery is not None, "the feed set is not running"
        exchange = feed.ctx.exchange
        scope = trio.CancelScope()
        ended = trio.Event()
        self.feeds[exchange] = feed
        self._runs[exchange] = (scope, ended)

        async def run_feed(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await feed.run(task_status=task_status)
            finally:
                ended.set()
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await feed.ctx.rest.aclose()

        if wait:
            await nursery.start(run_feed)
        else:
            nursery.start_soon(run_feed)

    async def stop(self, exchange: str) -> ExchangeFeed:
        """Stop one exchange's feed for good (connections closed with code 1000, slots
        announced as removed) and wait until it has ended."""
        feed = self.feeds.pop(exchange)
        scope, ended = self._runs.pop(exchange)
        feed.retire_all()
        scope.cancel()
        await ended.wait()
        return feed
