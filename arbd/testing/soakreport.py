"""The soak report: verdicts on what a run recorded, and the tables (pure; no I/O).

:func:`build_rows` turns a :class:`SoakResult` into one :class:`Row` per invariant (held or
violated, what was checked, how many violations, a detail); :func:`render` prints them, the
recovery times per fault kind and the run's parameters as Markdown (also readable as text).

Memory (invariant 6): RSS is sampled over the run; after ``warmup`` seconds, the median of the
last tenth of the samples minus the median of the first tenth after warm-up must stay within
``memory_bound_mb``. Medians, so one sample taken mid-burst decides nothing.

A stalled client never delays a healthy one (invariant 7): the healthy client must never be
disconnected; its p99 server delay while another client is stalled must stay within
``delay_factor`` times its p99 while none is, plus ``delay_slack`` seconds; and the share of
its events the server dropped (``lag``) while another is stalled must stay within
``drop_slack`` of the share while none is.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from arbd.testing.invariants import Fault, Violation
from arbd.testing.localclients import ClientLog, LatencyBuckets


@dataclass
class SoakResult:
    """Everything a soak run recorded."""

    params: dict[str, str]
    daemon_exit: str | None
    """Why the daemon's task ended (None: still running at the end, as it must)."""
    violations: list[Violation]
    checked: dict[int, int]
    faults: list[Fault]
    rss: list[tuple[float, int]]
    """(seconds into the run, resident bytes)"""
    clients: ClientLog
    violation_counts: dict[int, int] | None = None
    """Violations per invariant (``violations`` may hold only the first ones); None: count
    ``violations``."""
    rate: float = 1.0
    """Virtual seconds per real second: client delays are reported in real ms."""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    warmup: float = 120.0
    memory_bound_mb: float = 24.0
    delay_factor: float = 3.0
    delay_slack: float = 0.01
    """Seconds of real time."""
    drop_slack: float = 0.02


@dataclass(frozen=True)
class Row:
    number: int
    invariant: str
    held: bool
    checked: str
    violations: int
    detail: str


def memory_growth(rss: Sequence[tuple[float, int]], warmup: float) -> tuple[float, float, float]:
    """(baseline MB, final MB, growth MB) after ``warmup``; zeros with too few samples."""
    after = [value for t, value in rss if t >= warmup]
    if len(after) < 4:
        return 0.0, 0.0, 0.0
    tenth = max(2, len(after) // 10)
    base = statistics.median(after[:tenth]) / 2**20
    final = statistics.median(after[-tenth:]) / 2**20
    return base, final, final - base


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def build_rows(result: SoakResult, limits: Limits) -> list[Row]:
    counts = {n: sum(1 for v in result.violations if v.invariant == n) for n in range(1, 9)}
    counts.update(result.violation_counts or {})

    def first(n: int) -> str:
        found = next((v for v in result.violations if v.invariant == n), None)
        return "" if found is None else f"first at {found.at:.0f} s: {found.detail}"

    refused = result.clients.connect_failures
    problems = [
        p for p in (result.daemon_exit, refused and f"server refused TCP: {refused[0]}") if p
    ]
    rows = [
        Row(
            1,
            "the daemon never exits",
            not problems,
            "its task at the end, every client connect",
            len(problems),
            "; ".join(problems) or "running at the end, no exception",
        )
    ]
    texts = {
        2: ("no invalid or crossed book is published", f"{result.checked[2]} books"),
        3: ("no opportunity uses a stale or invalid leg", f"{result.checked[3]} open/update"),
        4: ("every fault is recovered", f"{result.checked[4]} faults"),
        5: ("no subscription is silently lost", f"{len(result.faults)} faults + sweeps"),
    }
    for n, (name, checked) in texts.items():
        rows.append(Row(n, name, counts[n] == 0, checked, counts[n], first(n)))
    base, final, growth = memory_growth(result.rss, limits.warmup)
    held = len(result.rss) >= 4 and growth <= limits.memory_bound_mb
    rows.append(
        Row(
            6,
            "memory stays bounded",
            held,
            f"{len(result.rss)} RSS samples",
            0 if held else 1,
            f"{base:.1f} MB after {limits.warmup:.0f} s warm-up -> {final:.1f} MB at the end "
            f"({growth:+.1f} MB; bound {limits.memory_bound_mb:.0f} MB)",
        )
    )
    rows.append(_clients_row(result, limits))
    log = result.clients
    rows.append(
        Row(
            8,
            "an invalid client message gets an error, the connection stays open",
            not log.bad_failures and log.bad_messages > 0,
            f"{log.bad_messages} messages",
            len(log.bad_failures),
            "; ".join(log.bad_failures[:3]) or f"{log.bad_answered} answered",
        )
    )
    return rows


def _clients_row(result: SoakResult, limits: Limits) -> Row:
    log = result.clients
    rate = result.rate
    calm99 = log.calm.percentile(0.99) / rate
    stall99 = log.stalled.percentile(0.99) / rate
    bound = calm99 * limits.delay_factor + limits.delay_slack
    share = {s: log.dropped[s] / max(1, log.dropped[s] + log.received[s]) for s in (False, True)}
    problems = []
    if log.healthy_disconnects:
        problems.append(f"healthy client disconnected: {log.healthy_disconnects[0]}")
    if not log.stalled.total:
        problems.append("no delay measured while a client was stalled")
    if stall99 > bound:
        problems.append(f"p99 {stall99 * 1e3:.1f} ms while stalled > bound {bound * 1e3:.1f} ms")
    if share[True] > share[False] + limits.drop_slack:
        problems.append(f"dropped {share[True]:.1%} while stalled vs {share[False]:.1%}")
    detail = (
        f"healthy client p50/p99/max {_ms(log.calm, rate)} ms with no stalled client, "
        f"{_ms(log.stalled, rate)} ms with one stalled (bound p99 {bound * 1e3:.1f} ms); "
        f"dropped {share[False]:.2%} / {share[True]:.2%}"
    )
    return Row(
        7,
        "a stalled client never delays a healthy one",
        not problems,
        f"{log.calm.total + log.stalled.total} deliveries",
        len(problems),
        "; ".join(problems) or detail,
    )


def _ms(buckets: LatencyBuckets, rate: float) -> str:
    values = (buckets.percentile(0.5), buckets.percentile(0.99), buckets.max)
    return "/".join(f"{v / rate * 1e3:.1f}" for v in values)


def recovery_rows(
    faults: Sequence[Fault],
) -> list[tuple[str, int, int, int, int, str, str, str]]:
    """Per kind: (kind, injected, noticed by the daemon, overlapped, not recovered, p50, p95,
    max s)."""
    rows = []
    for kind in sorted({f.kind for f in faults}):
        mine = [f for f in faults if f.kind == kind]
        times = [f.recovery for f in mine if f.recovery is not None]
        rows.append(
            (
                kind,
                len(mine),
                sum(1 for f in mine if f.detected),
                sum(1 for f in mine if f.overlapped),
                sum(1 for f in mine if f.failed),
                f"{percentile(times, 0.5):.2f}",
                f"{percentile(times, 0.95):.2f}",
                f"{max(times, default=0.0):.2f}",
            )
        )
    return rows


def render(result: SoakResult, limits: Limits) -> tuple[str, bool]:
    """The report as Markdown, and whether every invariant held."""
    rows = build_rows(result, limits)
    ok = all(row.held for row in rows)
    lines = [
        "| # | invariant | verdict | checked | violations | detail |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        verdict = "held" if row.held else "**VIOLATED**"
        detail = row.detail.replace("|", "/")
        lines.append(
            f"| {row.number} | {row.invariant} | {verdict} | {row.checked} | {row.violations} "
            f"| {detail} |"
        )
    lines += [
        "",
        "Recovery per fault kind (seconds of run time from the end of the fault until the "
        "exchange is live and every affected subscription has fresh data again; *noticed*: "
        "the daemon published a non-healthy status for it; *overlapped*: a later fault over its "
        "whole scope came before it had recovered, so its recovery is that fault's):",
        "",
        "| fault | injected | noticed | overlapped | not recovered | p50 s | p95 s | max s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, n, noticed, over, failed, p50, p95, top in recovery_rows(result.faults):
        lines.append(f"| {kind} | {n} | {noticed} | {over} | {failed} | {p50} | {p95} | {top} |")
    lines += ["", "| run | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in result.params.items()]
    if result.notes:
        lines += ["", *result.notes]
    if result.violations:
        lines += ["", "Violations (first 20):", ""]
        lines += [f"- [{v.invariant}] at {v.at:.1f} s: {v.detail}" for v in result.violations[:20]]
    return "\n".join(lines) + "\n", ok
