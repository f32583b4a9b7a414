"""Random faults from the fake exchanges' own switches, on a seeded schedule (soak and chaos).

Three layers, so each can be tested alone:

``plan_faults(rng, ...)``   pure: a sorted list of :class:`FaultPlan` over a run, from a seeded
                            ``random.Random`` (the same seed gives the same run)
``inject(fake, plan)``      synchronous: flips one fake's switch now; returns the undo for
                            faults that last (stall, garbage), else ``None``
``run_chaos(...)``          trio: sleeps until each planned time, injects, and tells an
                            :class:`~arbd.testing.invariants.InvariantChecker` when each fault
                            starts and ends, so it can time the recovery

Fault kinds (:data:`FAULT_KINDS`) and what they do to a :class:`MarketFake`:

``drop``        every connection closed abruptly (no close frame)
``stall``       data frames discarded for ``duration`` s; pings still answered
``gap``         the next book update of one symbol is lost (``skip_sequence``)
``checksum``    the next book update of one symbol carries a wrong checksum (only fakes whose
                book frames have one: ``MarketFake.checksums``)
``garbage``     a non-JSON text frame before every ``every``-th data frame for ``duration`` s
``rate_limit``  every connection dropped, and the next ``times`` requests (WebSocket
                handshakes, and half the time REST too) refused with 429 and Retry-After
``crossed``     one symbol's book crossed for one round (``send_crossed_book``)
``rotation``    every connection closed the way the exchange ends it at its lifetime limit
                (``force_disconnect``)

Faults come one at a time or several at once (``burst``), kinds dealt from a shuffled deck so
every kind shows up evenly, exchanges at random among those the kind applies to.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from arbd.testing.invariants import Fault, InvariantChecker
from arbd.testing.marketfake import MarketFake

FAULT_KINDS: Final = (
    "drop",
    "stall",
    "gap",
    "checksum",
    "garbage",
    "rate_limit",
    "crossed",
    "rotation",
)
SYMBOL_KINDS: Final = frozenset({"gap", "checksum", "crossed"})
"""Faults of one symbol's book; the others hit every symbol of the exchange."""


@dataclass(frozen=True)
class FaultPlan:
    """One fault to inject ``at`` seconds into the run."""

    at: float
    kind: str
    exchange: str
    symbol: str = ""
    """The symbol of a :data:`SYMBOL_KINDS` fault; empty for exchange-wide ones."""
    duration: float = 0.0
    """How long a stall or garbage lasts; 0 for instantaneous faults."""
    params: dict[str, float | str] = field(default_factory=dict)

    def describe(self) -> str:
        what = f"{self.kind} {self.exchange}"
        if self.symbol:
            what += f" {self.symbol}"
        if self.duration:
            what += f" for {self.duration:.1f} s"
        return what


def plan_faults(
    rng: random.Random,
    *,
    duration: float,
    markets: Mapping[str, Sequence[str]],
    kinds: Mapping[str, Sequence[str]],
    interval: float,
    warmup: float,
    tail: float,
    stall_max: float,
    burst: float = 0.25,
) -> list[FaultPlan]:
    """Faults at exponentially distributed intervals (mean ``interval`` s) between ``warmup``
    and ``duration - tail``; with probability ``burst`` a time gets 2-3 faults at once.

    ``markets``: exchange -> its symbols; ``kinds``: exchange -> the fault kinds it supports.
    ``stall_max``: the longest stall (make it longer than the stale-data deadline, so some
    stalls are noticed and some are not).
    """
    end = duration - tail
    exchanges_for = {
        kind: sorted(ex for ex, supported in kinds.items() if kind in supported)
        for kind in FAULT_KINDS
    }
    deck: list[str] = []
    plans: list[FaultPlan] = []
    at = warmup
    while True:
        at += rng.expovariate(1.0 / interval)
        if at >= end:
            return plans
        count = rng.choice((2, 3)) if rng.random() < burst else 1
        hit: set[str] = set()
        for _ in range(count):
            if not deck:
                deck = [k for k in FAULT_KINDS if exchanges_for[k]]
                rng.shuffle(deck)
            kind = deck.pop()
            # A burst spreads over exchanges when it can: faults on one exchange at once
            # mostly measure the last one's recovery.
            choices = [ex for ex in exchanges_for[kind] if ex not in hit] or exchanges_for[kind]
            exchange = rng.choice(choices)
            hit.add(exchange)
            plans.append(
                _one(
                    rng,
                    at,
                    kind=kind,
                    exchange=exchange,
                    symbols=markets[exchange],
                    stall_max=stall_max,
                )
            )


def _one(
    rng: random.Random,
    at: float,
    *,
    kind: str,
    exchange: str,
    symbols: Sequence[str],
    stall_max: float,
) -> FaultPlan:
    symbol = rng.choice(list(symbols)) if kind in SYMBOL_KINDS else ""
    params: dict[str, float | str] = {}
    duration = 0.0
    if kind == "stall":
        duration = round(rng.uniform(1.0, stall_max), 1)
    elif kind == "garbage":
        duration = round(rng.uniform(2.0, 10.0), 1)
        params["every"] = rng.randint(2, 20)
    elif kind == "rate_limit":
        params["times"] = rng.randint(1, 3)
        params["retry_after"] = round(rng.uniform(0.5, 5.0), 1)
        params["refuse"] = rng.choice(("ws", "both"))
    return FaultPlan(round(at, 3), kind, exchange, symbol, duration, params)


def supported_kinds(fake: MarketFake) -> tuple[str, ...]:
    """The fault kinds that do something on ``fake``."""
    return tuple(k for k in FAULT_KINDS if k != "checksum" or fake.checksums)


Undo = Callable[[], None]


def inject(fake: MarketFake, plan: FaultPlan) -> Undo | None:
    """Flip ``fake``'s switch for ``plan`` now. Returns how to lift a fault that lasts."""
    kind = plan.kind
    faults = fake.faults
    if kind == "drop":
        fake.drop_all()
    elif kind == "stall":
        faults.stall = True
        return lambda: setattr(faults, "stall", False)
    elif kind == "gap":
        fake.skip_sequence(plan.symbol)
    elif kind == "checksum":
        fake.corrupt_checksum(plan.symbol)
    elif kind == "garbage":
        faults.garbage_every = int(plan.params["every"])
        return lambda: setattr(faults, "garbage_every", None)
    elif kind == "rate_limit":
        faults.refuse_status = 429
        faults.retry_after = float(plan.params["retry_after"])
        faults.refuse = "both" if plan.params["refuse"] == "both" else "ws"
        faults.refuse_times = int(plan.params["times"])
        fake.drop_all()
    elif kind == "crossed":
        fake.send_crossed_book(plan.symbol)
    elif kind == "rotation":
        for conn in list(fake.connections):
            fake.force_disconnect(conn)
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    return None


@dataclass
class ChaosLog:
    """What :func:`run_chaos` did: every fault injected, in order."""

    injected: list[FaultPlan] = field(default_factory=list)


async def run_chaos(
    fakes: Mapping[str, MarketFake],
    plans: Sequence[FaultPlan],
    checker: InvariantChecker,
    log: ChaosLog,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Inject ``plans`` (times relative to now) into ``fakes`` and report them to ``checker``.

    Overlapping faults of one kind on one exchange share the switch: it is lifted when the
    last of them ends. Returns once every fault has been injected and lifted.
    """
    start = trio.current_time()
    active: dict[tuple[str, str], int] = {}
    task_status.started()

    async def lift(plan: FaultPlan, undo: Undo, fault: Fault) -> None:
        await trio.sleep(plan.duration)
        key = (plan.exchange, plan.kind)
        active[key] -= 1
        if not active[key]:
            undo()
        checker.fault_ended(fault, trio.current_time())

    async with trio.open_nursery() as nursery:
        for plan in plans:
            await trio.sleep_until(start + plan.at)
            fake = fakes[plan.exchange]
            symbols = (plan.symbol,) if plan.symbol else checker.markets[plan.exchange]
            now = trio.current_time()
            channels = ("book",) if plan.kind in SYMBOL_KINDS else None
            fault = checker.fault_started(plan.kind, plan.exchange, symbols, now, channels)
            undo = inject(fake, plan)
            log.injected.append(plan)
            if undo is None:
                checker.fault_ended(fault, now)
            else:
                key = (plan.exchange, plan.kind)
                active[key] = active.get(key, 0) + 1
                nursery.start_soon(lift, plan, undo, fault)
