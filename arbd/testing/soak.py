"""A soak and chaos run of the whole daemon: five fakes, random faults, random local clients.

:func:`run_soak` (trio) runs, in one process and one trio run: every fake exchange of the
registry that serves a simulated market (``arbd demo``'s :func:`create_fakes`, the same
``--symbols`` synthetic symbols on each), the real :class:`~arbd.daemon.Daemon` against them
(feeds, hub, arbitrage engine, local WebSocket server; short feed timers), an
:class:`~arbd.testing.invariants.InvariantChecker` as the hub's last processor, the fault
schedule of :mod:`arbd.testing.chaos` and the clients of :mod:`arbd.testing.localclients`.
It returns a :class:`~arbd.testing.soakreport.SoakResult` for :func:`soakreport.render`.

Time: run it under ``trio.testing.MockClock(rate=R)`` (``benchmarks/soak.py`` does): every
timer of the daemon, the fakes and the schedule runs R times faster than real time while the
sockets stay real (no autojump: a clock that jumps while a loopback read is pending is what
made virtual time flaky with real I/O). "Minutes" are minutes on that clock. The cost is CPU:
the fakes emit ``rounds`` rounds per virtual second, so R x rounds rounds per real second;
when the process cannot keep up, virtual time still runs and data looks late to the daemon,
which is why the rate is modest and the machine's load matters.
"""

from __future__ import annotations

import os
import random
import resource
import time
import traceback
from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from arbd.cli.demo import create_fakes, demo_config
from arbd.config import Config
from arbd.daemon import Daemon
from arbd.plugins import PluginRegistry
from arbd.testing.chaos import ChaosLog, plan_faults, run_chaos, supported_kinds
from arbd.testing.fake import run_fakes
from arbd.testing.invariants import InvariantChecker, Violation
from arbd.testing.localclients import ClientLog, run_clients
from arbd.testing.marketfake import MarketFake, synthetic_symbols
from arbd.testing.soakreport import SoakResult


@dataclass(frozen=True)
class SoakSettings:
    minutes: float = 30.0
    """Length of the run, in minutes of the run's clock."""
    seed: int = 1
    symbols: int = 12
    """Synthetic symbols per exchange."""
    rounds: float = 2.0
    """Market rounds per second each fake emits."""
    fault_interval: float = 6.0
    """Mean seconds between fault injections."""
    client_interval: float = 5.0
    stale_after: float = 5.0
    rotate_after: float = 120.0
    """The daemon's own connection rotation age for every exchange (0: off)."""
    settle: float = 15.0
    deadline: float = 60.0
    rate: float = 1.0
    """The MockClock rate the caller runs under (only reported)."""


def soak_config(settings: SoakSettings) -> Config:
    """The daemon's config for a soak: no control socket or metrics port, a local WebSocket
    server on a free port, short feed timers (a fault is noticed in seconds, not minutes)."""
    return msgspec.convert(
        {
            "control": {"enabled": False},
            "metrics": {"enabled": False},
            "server": {"port": 0},
            "logging": {"level": "error"},
            "feed": {
                "stale_after": settings.stale_after,
                "connect_timeout": 3.0,
                "backoff_base": 0.2,
                "backoff_cap": 5.0,
                "backoff_reset_after": 20.0,
                "connection_budget": 60,
                "connection_budget_window": 60.0,
                "rotation_margin": 15.0,
                "rest_timeout": 3.0,
                "rest_retries": 2,
            },
        },
        Config,
    )


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (pages)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def run_soak(registry: PluginRegistry, settings: SoakSettings) -> SoakResult:
    duration = settings.minutes * 60.0
    rng = random.Random(settings.seed)
    symbols = synthetic_symbols(settings.symbols)
    exchanges = [
        ex
        for ex in sorted(registry.fakes)
        if ex in registry.exchanges and registry.exchanges[ex].spec.enabled_by_default
    ]
    built = create_fakes(registry, exchanges, seed=settings.seed, symbols=symbols)
    fakes = {ex: fake for ex, fake in built.items() if isinstance(fake, MarketFake)}
    for fake in fakes.values():
        # Nothing reads the fakes' request and message logs here; at their default length
        # (10,000 each) they are megabytes of RSS growing for the first half hour, which
        # says nothing about the daemon's memory.
        fake.max_history = 100
    real_start, cpu_start = time.perf_counter(), time.process_time()
    notes: list[str] = []
    exit_reason: list[str] = []
    rss: list[tuple[float, int]] = []
    fds: list[int] = []
    clients = ClientLog()
    chaos = ChaosLog()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_fakes, list(fakes.values()))
        for fake in fakes.values():
            nursery.start_soon(fake.run_feed, settings.rounds)
        config = demo_config(soak_config(settings), registry, dict(fakes), symbols)
        config.exchanges.update(
            (ex, msgspec.structs.replace(c, rotate_after=settings.rotate_after))
            for ex, c in config.exchanges.items()
        )
        daemon = Daemon(config, registry, rng=random.Random(settings.seed))
        markets = daemon.markets()
        channels = [
            c
            for c in ("price", "book")
            if all(
                c in daemon.adapters[ex].settings.channels
                and c in daemon.adapters[ex].spec.continuous_channels
                for ex in markets
            )
        ]
        start = trio.current_time()
        checker = InvariantChecker(
            markets,
            channels=channels,
            max_quote_age=config.arbitrage.max_quote_age,
            settle=settings.settle,
            deadline=settings.deadline,
            silence_limit=settings.deadline,
            start=start,
        )
        daemon.hub.add_processor(lambda batch: checker.observe(batch, trio.current_time()))

        async def run_daemon(task_status: trio.TaskStatus[None]) -> None:
            try:
                await daemon.run(task_status=task_status)
            except Exception as exc:  # noqa: BLE001 - invariant 1 reports it; the run goes on
                exit_reason.append(f"raised {exc!r} at {trio.current_time() - start:.1f} s")
                traceback.print_exception(exc)
            else:
                exit_reason.append("returned")

        await nursery.start(run_daemon)
        assert daemon.server is not None
        url = daemon.server.url
        faults = plan_faults(
            rng,
            duration=duration,
            markets=markets,
            kinds={ex: supported_kinds(fake) for ex, fake in fakes.items()},
            interval=settings.fault_interval,
            warmup=min(60.0, duration / 10),
            tail=settings.deadline + settings.settle,
            stall_max=3 * settings.stale_after,
        )
        nursery.start_soon(run_chaos, fakes, faults, checker, chaos)
        await nursery.start(
            run_clients,
            url,
            markets,
            random.Random(settings.seed + 1),
            checker.published_at,
            clients,
        )
        deadline = start + duration
        next_rss = start
        while trio.current_time() < deadline:
            await trio.sleep(1.0)
            now = trio.current_time()
            checker.sweep(now)
            if now >= next_rss:
                rss.append((now - start, rss_bytes()))
                fds.append(len(os.listdir("/proc/self/fd")))
                next_rss += 5.0
        checker.finish(trio.current_time())
        status = daemon.status()
        published = daemon.hub.published
        nursery.cancel_scope.cancel()
    violations = list(checker.violations)
    counts = dict(checker.violation_counts)
    if exit_reason:
        violations.append(Violation(1, duration, f"the daemon's task {exit_reason[0]}"))
        counts[1] = 1
    real = time.perf_counter() - real_start
    cpu = time.process_time() - cpu_start
    reconnects = ", ".join(f"{e.exchange} {e.reconnects}" for e in status.exchanges)
    params: dict[str, Any] = {
        "command": "",
        "seed": settings.seed,
        "run time": f"{settings.minutes:g} min on a MockClock at rate {settings.rate:g} "
        f"({real:.0f} s real, {cpu:.0f} s CPU)",
        "exchanges": ", ".join(markets),
        "symbols": f"{settings.symbols} per exchange, {sum(map(len, markets.values()))} "
        f"markets; channels checked: {', '.join(channels)}",
        "market data": f"{settings.rounds:g} rounds/s per fake; {published} events published",
        "faults": f"{len(chaos.injected)} injected, mean interval {settings.fault_interval:g} s, "
        f"settle {settings.settle:g} s, deadline {settings.deadline:g} s",
        "reconnects": reconnects,
        "feed timers": f"stale_after {settings.stale_after:g} s, rotate_after "
        f"{settings.rotate_after:g} s (margin 15 s), backoff 0.2-5 s",
        "local clients": ", ".join(f"{n} {b}" for b, n in clients.started.items())
        + f" (+1 healthy); {clients.stallers_closed_by_server} stallers closed by the server, "
        f"{clients.refused} handshakes refused, {len(clients.connect_failures)} connections "
        "not accepted",
        "peak RSS": f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
        "RSS by tenth of the run": " ".join(
            f"{rss[min(len(rss) - 1, len(rss) * k // 10)][1] / 2**20:.0f}" for k in range(1, 11)
        )
        + " MB"
        if rss
        else "-",
        "open files by tenth of the run": " ".join(
            str(fds[min(len(fds) - 1, len(fds) * k // 10)]) for k in range(1, 11)
        )
        if fds
        else "-",
    }
    return SoakResult(
        params={k: str(v) for k, v in params.items()},
        daemon_exit=exit_reason[0] if exit_reason else None,
        violations=violations,
        violation_counts=counts,
        checked=dict(checker.checked),
        faults=list(checker.faults),
        rss=rss,
        clients=clients,
        rate=settings.rate,
        notes=notes,
    )
