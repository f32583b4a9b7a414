"""Invariants of a running daemon, checked from its hub stream (for soak and chaos runs).

:class:`InvariantChecker` is pure and synchronous. Install it as the **last** hub processor, so
that it sees every published batch with the arbitrage engine's events appended, before any
subscriber does; it never adds events::

    checker = InvariantChecker(markets, channels=("price", "book"), max_quote_age=2.0)
    daemon.hub.add_processor(lambda batch: checker.observe(batch, trio.current_time()))
    fault = checker.fault_started("drop", "binance", symbols, now)   # when a fault is injected
    checker.fault_ended(fault, now)                                  # when it is lifted
    checker.sweep(now)                                               # about once a second

Times passed in (``now``) are seconds on one monotonic clock (the run's trio clock); times
inside events (``receivedNs``, ``timestamp``) are only compared with each other.

What is checked (the numbers are the soak report's rows):

2. No invalid or crossed book is published: a ``book`` event while the book's last ``status``
   says ``invalid`` or ``resyncing``, or whose best bid is at or above its best ask.
3. No opportunity uses a stale or invalid leg: every ``open``/``update`` arbitrage event must
   have had, at some point of its batch (the engine appends its events after the batch, so it
   may have decided at any point of it), both legs usable: exchange up (no connection slot
   connecting/subscribing/backoff/stopped/failed), book not invalid/resyncing, no stale or
   refused price/book subscription, top of book received at most ``max_quote_age`` before the
   event's timestamp, and the event's price equal to that leg's top (ask to buy, bid to sell).
4. Every fault recovers: after the fault ends, the affected symbols' exchange and
   subscriptions must be healthy and every affected (symbol, channel) must have data that
   arrived while healthy, within ``deadline`` seconds. A fault is only closed ``settle``
   seconds after it ended (a sequence gap or a stall shows up a little later); an unhealthy
   status meanwhile restarts the recovery of the latest fault covering it (the likeliest
   cause). Time to recover = when the last affected subscription had healthy data, minus the
   end of the fault.
5. No subscription is silently lost: a fault whose statuses all say healthy but whose
   subscriptions have no data by the deadline, and any subscribed (exchange, symbol, channel)
   silent for ``silence_limit`` seconds while no fault is open on its exchange.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from arbd.model import Arbitrage, Book, Event, FeedStatus, Quote
from arbd.testing.health import FeedHealth

_CHANNEL: Final = {Quote: "price", Book: "book"}
PUBLISHED_KEEP: Final = 20_000
KEEP_VIOLATIONS: Final = 100


@dataclass
class Violation:
    invariant: int
    at: float
    detail: str


@dataclass
class Fault:
    """One injected fault as the checker tracks it."""

    id: int
    kind: str
    exchange: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    """The channels it can disturb: a book fault only the ``book`` subscription."""
    started: float
    ended: float | None = None
    detected: bool = False
    """Some status in its scope said unhealthy while it was tracked."""
    pending: set[tuple[str, str]] = field(default_factory=set)
    """(symbol, channel) still waiting for data that arrived while healthy."""
    cleared_at: float | None = None
    last_trouble: float | None = None
    """The last time a status in its scope said unhealthy."""
    last_key: tuple[str, str] | None = None
    """The (symbol, channel) whose data completed the recovery."""
    trouble: list[str] = field(default_factory=list)
    """The first few unhealthy statuses seen in its scope (for the report's fault list)."""
    recovery: float | None = None
    """Seconds from the end of the fault to full recovery, once closed as recovered."""
    failed: bool = False
    overlapped: bool = False
    """A later fault covering its whole scope started before it was closed: its recovery is
    measured with that later fault's (and not counted for its own kind)."""


@dataclass
class _Top:
    received_ns: int = -(1 << 62)
    bid: str = ""
    ask: str = ""


_LegState = tuple["str | None", "_Top | None"]
"""(why the leg is unusable or None, its top of book) at one point of a batch"""


class InvariantChecker:
    """See the module docstring. ``markets``: exchange -> subscribed symbols; ``channels``: the
    continuous channels every one of them must keep delivering (``price``, ``book``)."""

    def __init__(
        self,
        markets: Mapping[str, Sequence[str]],
        *,
        channels: Sequence[str] = ("price", "book"),
        max_quote_age: float = 2.0,
        settle: float = 10.0,
        deadline: float = 60.0,
        silence_limit: float = 30.0,
        start: float = 0.0,
    ) -> None:
        self.markets = {ex: tuple(symbols) for ex, symbols in markets.items()}
        self.channels = tuple(channels)
        self.max_age_ns = round(max_quote_age * 1e9)
        self.settle = settle
        self.deadline = deadline
        self.silence_limit = silence_limit
        self.violations: list[Violation] = []
        """The first ``KEEP_VIOLATIONS`` of each invariant (a bug may repeat per event)."""
        self.violation_counts: dict[int, int] = {}
        self.checked: dict[int, int] = {2: 0, 3: 0, 4: 0, 5: 0}
        """How many things each invariant looked at (books, opportunities, faults, sweeps)."""
        self.faults: list[Fault] = []
        """Every fault, open or closed, in injection order."""
        self._open: list[Fault] = []
        self.health = FeedHealth()
        self._tops: dict[tuple[str, str], _Top] = {}
        self._last: dict[tuple[str, str, str], float] = {
            (ex, s, c): start
            for ex, symbols in self.markets.items()
            for s in symbols
            for c in self.channels
        }
        self._silent: set[tuple[str, str, str]] = set()
        # When each recent price/book was published, for clients measuring the server's delay:
        # two generations of at most PUBLISHED_KEEP entries, so memory stays bounded.
        self._published: dict[tuple[str, str, str, int], float] = {}
        self._published_old: dict[tuple[str, str, str, int], float] = {}

    # -- observing ----------------------------------------------------------------------------

    def __call__(self, batch: Sequence[Event], now: float) -> list[Event]:
        return self.observe(batch, now)

    def observe(self, batch: Sequence[Event], now: float) -> list[Event]:
        """Check and record one published batch; returns no events (a hub processor)."""
        arbs = [e for e in batch if isinstance(e, Arbitrage) and e.event != "close"]
        if not arbs:
            for event in batch:
                self._apply(event, now)
            return []
        # The engine appended its events after the batch: it may have decided after any of
        # the batch's events, so keep every state a leg went through in this batch.
        legs = {leg for e in arbs for leg in _legs(e)}
        exchanges = {ex for ex, _ in legs}
        seen = [self._leg_states(legs)]
        for event in batch:
            if not isinstance(event, Arbitrage):
                self._apply(event, now)
                if event.exchange in exchanges:
                    seen.append(self._leg_states(legs))
        for e in arbs:
            self.checked[3] += 1
            reasons = [self._unusable(e, states) for states in seen]
            if all(reasons):
                self._violate(3, now, f"{e.event} {e.id} {e.symbol}: {reasons[-1]}")
        return []

    def _apply(self, event: Event, now: float) -> None:
        kind = type(event)
        if kind is Book or kind is Quote:
            self._data(event, now)  # type: ignore[arg-type]
        elif kind is FeedStatus:
            self._status(event, now)  # type: ignore[arg-type]

    def _data(self, event: Quote | Book, now: float) -> None:
        key = (event.exchange, event.symbol)
        if isinstance(event, Book):
            self.checked[2] += 1
            state = self.health.book_published(*key)
            if state is not None:
                self._violate(2, now, f"{key[0]} {key[1]}: book published while {state}")
            bid = event.bids[0][0] if event.bids else ""
            ask = event.asks[0][0] if event.asks else ""
            if bid and ask and float(bid) >= float(ask):
                self._violate(2, now, f"{key[0]} {key[1]}: crossed book published {bid}/{ask}")
        else:
            bid, ask = event.bid, event.ask
        top = self._tops.get(key)
        if top is None:
            top = self._tops[key] = _Top()
        top.received_ns, top.bid, top.ask = event.received_ns, bid, ask
        channel = _CHANNEL[type(event)]
        published = self._published
        published[channel, key[0], key[1], event.received_ns] = now
        if len(published) >= PUBLISHED_KEEP:
            self._published_old, self._published = published, {}
        data_key = (key[0], key[1], channel)
        self._last[data_key] = now
        self._silent.discard(data_key)
        for fault in self._open:
            if (
                fault.exchange == key[0]
                and (key[1], channel) in fault.pending
                and fault.ended is not None
                and self.channel_problem(key[0], key[1], channel) is None
            ):
                fault.pending.discard((key[1], channel))
                if not fault.pending:
                    fault.cleared_at = now
                    fault.last_key = (key[1], channel)

    def _status(self, event: FeedStatus, now: float) -> None:
        trouble = self.health.apply(event)
        if trouble is not None:
            exchange, symbol, channels, why = trouble
            self._unhealthy(exchange, symbol, channels, now, why)

    def _unhealthy(
        self,
        exchange: str,
        symbol: str | None,
        channels: Sequence[str],
        now: float,
        why: str = "",
    ) -> None:
        """Something in this scope stopped being healthy: the latest fault covering it (the
        likeliest cause, so earlier faults' recovery times are not stretched by later faults
        on a part of their scope) starts its recovery over."""
        fault = None
        for candidate in self._open:
            if (
                candidate.exchange == exchange
                and (symbol is None or symbol in candidate.symbols)
                and any(c in candidate.channels for c in channels)
            ):
                fault = candidate  # _open is in injection order: the last match is the latest
        if fault is None:
            return
        mine = [c for c in channels if c in fault.channels]
        fault.detected = True
        fault.last_trouble = now
        if len(fault.trouble) < 8:
            fault.trouble.append(f"{now:.1f} {why}")
        symbols = fault.symbols if symbol is None else (symbol,)
        fault.pending.update((s, c) for s in symbols for c in mine)
        fault.cleared_at = None

    def published_at(
        self, channel: str, exchange: str, symbol: str, received_ns: int
    ) -> float | None:
        """When the hub published the ``channel`` event of (exchange, symbol) with this
        ``receivedNs``, if it was one of the last ~``PUBLISHED_KEEP`` prices and books."""
        key = (channel, exchange, symbol, received_ns)
        at = self._published.get(key)
        return at if at is not None else self._published_old.get(key)

    # -- health -------------------------------------------------------------------------------

    def symbol_problem(self, exchange: str, symbol: str) -> str | None:
        return self.health.symbol_problem(exchange, symbol)

    def channel_problem(self, exchange: str, symbol: str, channel: str) -> str | None:
        return self.health.channel_problem(exchange, symbol, channel)

    def _leg_states(self, legs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], _LegState]:
        states: dict[tuple[str, str], _LegState] = {}
        for leg in legs:
            top = self._tops.get(leg)
            states[leg] = (self.symbol_problem(*leg), None if top is None else _copy(top))
        return states

    def _unusable(self, e: Arbitrage, states: Mapping[tuple[str, str], _LegState]) -> str | None:
        """Why ``e`` could not have been built from these leg states (None: it could)."""
        horizon = e.timestamp * 1_000_000 - self.max_age_ns
        for side, leg, price in (
            ("buy", (e.buy_exchange, e.buy_symbol), e.buy_price),
            ("sell", (e.sell_exchange, e.sell_symbol), e.sell_price),
        ):
            problem, top = states[leg]
            name = f"{side} leg {leg[0]} {leg[1]}"
            if problem is not None:
                return f"{name}: {problem}"
            if top is None:
                return f"{name}: no data"
            if top.received_ns < horizon:
                age = (e.timestamp * 1_000_000 - top.received_ns) / 1e6
                return f"{name}: top of book {age:.0f} ms old"
            if price != (top.ask if side == "buy" else top.bid):
                return f"{name}: price {price} is not the top of book"
        return None

    # -- faults -------------------------------------------------------------------------------

    def fault_started(
        self,
        kind: str,
        exchange: str,
        symbols: Sequence[str],
        now: float,
        channels: Sequence[str] | None = None,
    ) -> Fault:
        """A fault hit ``symbols`` of ``exchange`` (its ``channels``; default: all checked)."""
        mine = tuple(c for c in (channels or self.channels) if c in self.channels)
        fault = Fault(len(self.faults) + 1, kind, exchange, tuple(symbols), mine, started=now)
        for old in list(self._open):
            if (
                old.exchange == exchange
                and set(old.symbols) <= set(fault.symbols)
                and set(old.channels) <= set(mine)
            ):
                # What happens from now on in its scope is the new fault's doing.
                if old.cleared_at is not None and old.ended is not None:
                    old.recovery = old.cleared_at - old.ended
                else:
                    old.overlapped = True
                self._close(old)
        self.faults.append(fault)
        self._open.append(fault)
        return fault

    def fault_ended(self, fault: Fault, now: float) -> None:
        """The fault's switch is off again (at once for instantaneous faults): recovery from
        here on counts."""
        fault.ended = now
        fault.cleared_at = None
        fault.pending = {(s, c) for s in fault.symbols for c in fault.channels}

    def sweep(self, now: float) -> None:
        """Close faults that recovered or ran out of time; find silent subscriptions."""
        for fault in list(self._open):
            if fault.ended is None:
                continue
            if fault.cleared_at is not None and now >= fault.ended + self.settle:
                fault.recovery = fault.cleared_at - fault.ended
                self._close(fault)
            elif now >= fault.ended + self.deadline:
                self._unrecovered(fault, now)
        self.checked[5] += 1
        busy = {fault.exchange for fault in self._open}
        for key, last in self._last.items():
            if now - last > self.silence_limit and key[0] not in busy and key not in self._silent:
                self._silent.add(key)
                self._violate(5, now, f"{' '.join(key)}: no data for {now - last:.0f} s, no fault")

    def _unrecovered(self, fault: Fault, now: float) -> None:
        fault.failed = True
        self._close(fault)
        sick: dict[str, str] = {}
        for s, c in sorted(fault.pending):
            why = self.channel_problem(fault.exchange, s, c)
            if why is not None:
                sick.setdefault(s, why)
        name = f"fault {fault.id} {fault.kind} on {fault.exchange}"
        if sick:
            first = next(iter(sick.items()))
            self._violate(
                4,
                now,
                f"{name}: not recovered after {self.deadline:.0f} s ({first[0]}: "
                f"{first[1]}; {len(sick)} symbol(s))",
            )
        else:
            missing = ", ".join(f"{s} {c}" for s, c in sorted(fault.pending)[:3])
            self._violate(
                5,
                now,
                f"{name}: healthy but no data for {len(fault.pending)} subscription(s) ({missing})",
            )

    def _close(self, fault: Fault) -> None:
        self._open.remove(fault)
        self.checked[4] += 1

    def finish(self, now: float) -> None:
        """End of the run: every fault still open is judged now (ended or not)."""
        for fault in list(self._open):
            if fault.ended is None:
                self.fault_ended(fault, now)
            if fault.cleared_at is not None:
                fault.recovery = fault.cleared_at - (fault.ended or now)
                self._close(fault)
            else:
                self._unrecovered(fault, now)
        self.sweep(now)

    @property
    def open_faults(self) -> list[Fault]:
        return list(self._open)

    def _violate(self, invariant: int, now: float, detail: str) -> None:
        n = self.violation_counts[invariant] = self.violation_counts.get(invariant, 0) + 1
        if n <= KEEP_VIOLATIONS:
            self.violations.append(Violation(invariant, now, detail))

    def count(self, invariant: int) -> int:
        return self.violation_counts.get(invariant, 0)


def _legs(e: Arbitrage) -> tuple[tuple[str, str], tuple[str, str]]:
    return (e.buy_exchange, e.buy_symbol), (e.sell_exchange, e.sell_symbol)


def _copy(top: _Top) -> _Top:
    return _Top(top.received_ns, top.bid, top.ask)
