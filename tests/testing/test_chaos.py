"""The soak's fault schedule, fault switches, and report verdicts."""

from __future__ import annotations

import random

import pytest
import trio

from arbd.testing.chaos import (
    FAULT_KINDS,
    SYMBOL_KINDS,
    ChaosLog,
    FaultPlan,
    inject,
    plan_faults,
    run_chaos,
    supported_kinds,
)
from arbd.testing.invariants import InvariantChecker, Violation
from arbd.testing.localclients import ClientLog, LatencyBuckets
from arbd.testing.soakreport import Limits, SoakResult, build_rows, memory_growth, render
from arbd_binance.fake import BinanceFake
from arbd_kraken.fake import KrakenFake
from arbd_okx.fake import OkxFake

MARKETS = {"kraken": ["A/USDT", "B/USDT"], "binance": ["A/USDT"]}
KINDS = {"kraken": FAULT_KINDS, "binance": tuple(k for k in FAULT_KINDS if k != "checksum")}


def plans(seed: int, **over: float) -> list[FaultPlan]:
    options = {
        "duration": 1800.0,
        "interval": 6.0,
        "warmup": 60.0,
        "tail": 75.0,
        "stall_max": 15.0,
    }
    options.update(over)
    return plan_faults(random.Random(seed), markets=MARKETS, kinds=KINDS, **options)


def test_the_schedule_is_seeded_bounded_and_covers_every_kind():
    first = plans(1)
    assert first == plans(1)
    assert first != plans(2)
    assert 200 < len(first) < 500  # ~29 min at one fault (or a burst) every 6 s on average
    times = [p.at for p in first]
    assert times == sorted(times)
    assert times[0] > 60 and times[-1] < 1800 - 75
    assert {p.kind for p in first} == set(FAULT_KINDS)
    counts = [sum(1 for p in first if p.kind == kind) for kind in FAULT_KINDS]
    assert max(counts) - min(counts) <= 2  # dealt from a shuffled deck
    for p in first:
        assert bool(p.symbol) == (p.kind in SYMBOL_KINDS)
        assert p.symbol in ("", *MARKETS[p.exchange])
        assert (p.duration > 0) == (p.kind in ("stall", "garbage"))
        assert p.kind != "checksum" or p.exchange == "kraken"
        assert p.duration <= 15.0
    # Bursts: several faults at one time, on different exchanges when the kinds allow it.
    bursts = [[p for p in first if p.at == t] for t in sorted(set(times))]
    assert any(len(b) > 1 for b in bursts)
    pairs = [b for b in bursts if len(b) == 2 and all(p.kind != "checksum" for p in b)]
    assert pairs
    assert all(len({p.exchange for p in b}) == 2 for b in pairs)


def test_checksum_faults_only_where_book_frames_carry_checksums():
    assert "checksum" in supported_kinds(KrakenFake(["A/USDT"]))
    assert "checksum" in supported_kinds(OkxFake(["A/USDT"]))
    assert "checksum" not in supported_kinds(BinanceFake(["A/USDT"]))
    assert len(supported_kinds(BinanceFake(["A/USDT"]))) == len(FAULT_KINDS) - 1


def test_each_fault_flips_its_switch_and_lasting_ones_undo():
    fake = KrakenFake(["A/USDT"])
    market = fake.market("A/USDT")
    stall = inject(fake, FaultPlan(1.0, "stall", "kraken", duration=3.0))
    assert fake.faults.stall
    assert stall is not None
    stall()
    assert not fake.faults.stall
    garbage = inject(fake, FaultPlan(1.0, "garbage", "kraken", duration=3.0, params={"every": 4}))
    assert fake.faults.garbage_every == 4
    assert garbage is not None
    garbage()
    assert fake.faults.garbage_every is None
    assert inject(fake, FaultPlan(1.0, "gap", "kraken", "A/USDT")) is None
    assert market.skip_next
    inject(fake, FaultPlan(1.0, "checksum", "kraken", "A/USDT"))
    assert market.corrupt_next
    limited = FaultPlan(
        1.0, "rate_limit", "kraken", params={"times": 2, "retry_after": 1.5, "refuse": "both"}
    )
    inject(fake, limited)
    assert (fake.faults.refuse_status, fake.faults.refuse_times) == (429, 2)
    assert (fake.faults.retry_after, fake.faults.refuse) == (1.5, "both")
    for kind in ("drop", "crossed", "rotation"):  # no connections: nothing to do, no error
        inject(fake, FaultPlan(1.0, kind, "kraken", "A/USDT" if kind == "crossed" else ""))
    with pytest.raises(ValueError, match="unknown fault kind"):
        inject(fake, FaultPlan(1.0, "meteor", "kraken"))


async def test_run_chaos_injects_on_time_and_reports_start_and_end(autojump_clock):
    fakes = {"kraken": KrakenFake(["A/USDT", "B/USDT"]), "binance": BinanceFake(["A/USDT"])}
    checker = InvariantChecker(MARKETS)
    schedule = [
        FaultPlan(5.0, "stall", "kraken", duration=4.0),
        FaultPlan(6.0, "stall", "kraken", duration=1.0),  # overlaps: the switch stays on
        FaultPlan(8.0, "gap", "kraken", "B/USDT"),
    ]
    log = ChaosLog()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_chaos, fakes, schedule, checker, log)
        await trio.sleep(7.5)
        assert fakes["kraken"].faults.stall  # the second stall ended, the first did not
        await trio.sleep(2.0)
        assert not fakes["kraken"].faults.stall
    assert log.injected == schedule
    stall, second, gap = checker.faults
    assert (stall.started - start, stall.ended - start) == (5.0, 9.0)  # type: ignore[operator]
    assert stall.symbols == ("A/USDT", "B/USDT")
    assert (second.started - start, second.ended - start) == (6.0, 7.0)  # type: ignore[operator]
    assert (gap.symbols, gap.channels) == (("B/USDT",), ("book",))
    assert fakes["kraken"].market("B/USDT").skip_next


# -- the report -------------------------------------------------------------------------------


def result(**over: object) -> SoakResult:
    clients = ClientLog()
    for delay in (0.001, 0.002, 0.002, 0.003):
        clients.calm.add(delay)
        clients.stalled.add(delay)
    clients.bad_messages = clients.bad_answered = 3
    fields: dict[str, object] = {
        "params": {"seed": "1"},
        "daemon_exit": None,
        "violations": [],
        "checked": {2: 10, 3: 2, 4: 1, 5: 60},
        "faults": [],
        "rss": [(t * 5.0, 100 * 2**20) for t in range(100)],
        "clients": clients,
    }
    fields.update(over)
    return SoakResult(**fields)  # type: ignore[arg-type]


def verdicts(r: SoakResult) -> dict[int, bool]:
    return {row.number: row.held for row in build_rows(r, Limits(warmup=60.0))}


def test_a_clean_run_holds_every_invariant():
    text, ok = render(result(), Limits(warmup=60.0))
    assert ok
    assert all(verdicts(result()).values())
    assert "**VIOLATED**" not in text


def test_each_kind_of_failure_is_reported_as_violated():
    assert not verdicts(result(daemon_exit="raised RuntimeError()"))[1]
    broken = result(violations=[Violation(3, 12.0, "open x: buy leg stale")])
    assert not verdicts(broken)[3]
    text, ok = render(broken, Limits(warmup=60.0))
    assert not ok
    assert "- [3] at 12.0 s: open x: buy leg stale" in text
    growing = result(rss=[(t * 5.0, (100 + t) * 2**20) for t in range(100)])
    assert not verdicts(growing)[6]
    assert memory_growth(growing.rss, 60.0)[2] > 24
    slow = result()
    slow.clients.stalled = LatencyBuckets()
    for _ in range(100):
        slow.clients.stalled.add(0.5)
    assert not verdicts(slow)[7]
    lost = result()
    lost.clients.healthy_disconnects.append("12.0: closed")
    assert not verdicts(lost)[7]
    unanswered = result()
    unanswered.clients.bad_failures.append("'{x': error=False pong=True")
    assert not verdicts(unanswered)[8]


def test_latency_buckets_give_upper_bounds():
    buckets = LatencyBuckets()
    assert buckets.percentile(0.99) == 0.0
    for ms in range(1, 101):
        buckets.add(ms / 1000)
    assert 0.050 <= buckets.percentile(0.5) <= 0.050 * 10 ** (1 / 20)
    assert buckets.percentile(1.0) == 0.1
    assert buckets.max == 0.1
