"""End to end: a fake exchange on loopback -> the daemon -> 100 local WebSocket subscribers.

Three processes:

* the **fake** (``_binance_firehose.py``): speaks Binance's protocol (exchangeInfo, ``/stream``,
  SUBSCRIBE acks) and sends ``<symbol>@trade`` events at a paced rate; each trade id is the
  fake's ``CLOCK_MONOTONIC`` time (ns) when it built the frame;
* the **daemon**: a real :class:`arbd.daemon.Daemon` in this process (Binance adapter, hub,
  arbitrage engine, local WebSocket server), configured for the fake's symbols on the ``trades``
  channel; metrics and the control socket off;
* the **subscribers** (``_fanout_client.py``): ``--subscribers`` WebSocket clients subscribed to
  ``trades``, read from one epoll loop; every ``--sample-every``-th connection is parsed and
  each trade's latency taken as ``CLOCK_MONOTONIC`` now minus its id (the clock is system-wide
  on Linux, so stamps from different processes compare).

With two or more cores the daemon gets one to itself; the fake and the subscribers share the
other. For each rate (exchange messages/s, stepped up from ``--rates``) the fake sends for
``--seconds``; the table gives p50/p99/p99.9 from the fake's send to the subscriber's read, the
part of it spent from the daemon's receipt (``receivedNs``) to the read, the share of trades
that reached the sampled subscribers, and the daemon's CPU time (``getrusage`` of this process)
per second of sending, also per 10k messages/s. Stepping stops at the first rate whose p99
exceeds ``--p99-limit-ms`` (5 ms) once the ``--required`` rates are done.

Run:  python benchmarks/end_to_end.py [--seconds 5] [--runs 3] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from typing import Any

import trio

from arbd.config import (
    Config,
    ControlConfig,
    ExchangeConfig,
    LoggingConfig,
    MetricsConfig,
    ServerConfig,
)
from arbd.daemon import Daemon
from arbd.plugins import load_plugins
from arbd.testing.marketfake import synthetic_symbols

sys.path.insert(0, os.path.dirname(__file__))
from _binance_firehose import firehose_main
from _child import Child
from _fanout_client import client_main
from _results import emit, report, table

DEFAULT_RATES = "100,200,500,1000,2000,5000,10000,20000,30000,50000,75000,100000"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def daemon_config(port: int, symbols: list[str]) -> Config:
    url = f"127.0.0.1:{port}"
    return Config(
        server=ServerConfig(port=0, max_clients=10_000),
        control=ControlConfig(enabled=False),
        metrics=MetricsConfig(enabled=False),
        logging=LoggingConfig(level="warning"),
        exchanges={
            "binance": ExchangeConfig(
                symbols=symbols, channels=["trades"], ws_url=f"ws://{url}", rest_url=f"http://{url}"
            )
        },
    )


async def step(
    daemon: Daemon, fake: Child, clients: Child, rate: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One rate: the fake sends for ``args.seconds``; what the subscribers saw, and the cost."""
    dropped = sum(s.dropped for s in daemon.hub.subscribers)
    clients.pipe.send(("stamps", args.seconds + 30, 1.0, args.sample_every))
    await trio.sleep(0.2)  # the subscribers are reading
    cpu, started = cpu_seconds(), time.perf_counter()
    sent, fake_cpu = await fake.call("run", rate, args.seconds)
    cpu, elapsed = cpu_seconds() - cpu, time.perf_counter() - started
    seen = await clients.call()
    e2e, internal = seen["e2e_us"], seen["daemon_us"]
    core = cpu / elapsed
    return {
        "rate": rate,
        "achieved": sent / elapsed,
        "p50": e2e[0],
        "p99": e2e[1],
        "p999": e2e[2],
        "max": seen["max_us"],
        "daemon_p50": internal[0],
        "daemon_p99": internal[1],
        "delivered": 100 * seen["trades_per_connection"] / max(1, sent),
        "dropped": sum(s.dropped for s in daemon.hub.subscribers) - dropped,
        "cpu": 100 * core,
        "cpu_per_10k": 100 * core / (rate / 10_000),
        "fake_cpu": 100 * fake_cpu / elapsed,
        "connected": len(daemon.server.clients) if daemon.server is not None else 0,
        "clients_cpu": 100 * seen["cpu"],
    }


def ladder(args: argparse.Namespace) -> list[int]:
    return sorted({int(r) for r in args.rates.split(",")} | set(args.required))


async def run(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> list[dict]:
    symbols = synthetic_symbols(args.symbols)
    fake = Child(firehose_main, symbols, cpus[0])
    port = fake.pipe.recv()
    results: list[dict[str, Any]] = []
    registry = load_plugins(env={"ARBD_LOAD_PLUGINS": "binance"})
    daemon = Daemon(daemon_config(port, symbols), registry)
    clients: Child | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            with trio.fail_after(60):
                subscribed = await fake.call("wait_subscribed", len(symbols))
            assert subscribed >= len(symbols), f"only {subscribed} streams subscribed"
            assert daemon.server_port is not None
            warm_up = argparse.Namespace(**{**vars(args), "seconds": 1.0})
            rates = ladder(args)
            for n in range(args.runs):
                # Fresh subscribers per run: past saturation the slow-client policy may have
                # disconnected the last run's (their buffers of trades overflowed).
                if clients is not None:
                    clients.close()
                clients = Child(
                    client_main,
                    daemon.server_port,
                    args.subscribers,
                    {} if args.subscribe == "all" else {"channels": ["trades"]},
                    cpus[0],
                    False,
                )
                _, opened, error = await clients.call()
                assert opened == args.subscribers, error
                await step(daemon, fake, clients, 1000, warm_up)
                for rate in rates:
                    row = await step(daemon, fake, clients, rate, args)
                    row["run"] = n
                    results.append(row)
                    print(
                        f"run {n + 1}: {rate:>7,}/s p50 {row['p50']:8,.0f} µs  p99 "
                        f"{row['p99']:8,.0f} µs  p99.9 {row['p999']:8,.0f} µs  delivered "
                        f"{row['delivered']:5.1f} %  cpu {row['cpu']:5.1f} %",
                        file=sys.stderr,
                        flush=True,
                    )
                    if (
                        n == 0
                        and row["p99"] > args.p99_limit_ms * 1000
                        and rate >= max(args.required)
                    ):
                        rates = [r for r in rates if r <= rate]
                        break
            daemon.request_stop()
    finally:
        if clients is not None:
            clients.close()
        fake.close()
    return results


def median_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_rate: dict[int, list[dict[str, Any]]] = {}
    for row in results:
        by_rate.setdefault(row["rate"], []).append(row)
    return [
        {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "run"}
        for _, rows in sorted(by_rate.items())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1.5 s per rate, one run")
    parser.add_argument("--rates", default=DEFAULT_RATES, help="exchange messages/s to step")
    parser.add_argument("--required", default="1000,10000,50000", help="always measured")
    parser.add_argument("--seconds", type=float, default=5.0, help="sending time per rate")
    parser.add_argument("--runs", type=int, default=3, help="the ladder this many times")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument(
        "--subscribe",
        choices=("trades", "all"),
        default="trades",
        help="what each subscriber asks for: the trades channel, or everything (no filter)",
    )
    parser.add_argument("--symbols", type=int, default=10, help="Binance symbols traded")
    parser.add_argument("--sample-every", type=int, default=10, help="parse every Nth client")
    parser.add_argument("--p99-limit-ms", type=float, default=5.0)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.runs = 1.5, 1
    args.required = [int(r) for r in args.required.split(",")]
    cores = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cores) >= 2
    cpus: tuple[int | None, int | None] = (cores[0], cores[1]) if pin else (None, None)
    if cpus[1] is not None:
        os.sched_setaffinity(0, {cpus[1]})
    rows = median_rows(trio.run(run, args, cpus))
    limit = args.p99_limit_ms * 1000
    over = [r["rate"] for r in rows if r["p99"] > limit]
    under = [r["rate"] for r in rows if r["p99"] <= limit and (not over or r["rate"] < over[0])]
    crossing = (
        f"p99 first exceeds {args.p99_limit_ms:g} ms at {over[0]:,} msgs/s "
        f"(last rate under it: {under[-1]:,} msgs/s)"
        if over and under
        else f"p99 exceeds {args.p99_limit_ms:g} ms already at {over[0]:,} msgs/s"
        if over
        else f"p99 stays under {args.p99_limit_ms:g} ms up to {rows[-1]['rate']:,} msgs/s"
    )
    command = "python benchmarks/end_to_end.py " + " ".join(sys.argv[1:])
    latency = table(
        f"Fake exchange send → subscriber read, {args.subscribers} subscribers, "
        f"{args.symbols} Binance symbols, trades",
        [
            ("exchange msgs/s", ",d"),
            ("sent msgs/s", ",.0f"),
            ("p50 µs", ",.0f"),
            ("p99 µs", ",.0f"),
            ("p99.9 µs", ",.0f"),
            ("daemon receipt → read p50 µs", ",.0f"),
            ("p99 µs", ",.0f"),
            ("delivered %", ".1f"),
            ("daemon CPU % of a core", ".1f"),
            ("CPU % per 10k msgs/s", ".1f"),
            ("subscribers connected after", ",d"),
            ("fake CPU %", ".0f"),
            ("subscribers CPU %", ".0f"),
        ],
        [
            [
                r["rate"],
                r["achieved"],
                r["p50"],
                r["p99"],
                r["p999"],
                r["daemon_p50"],
                r["daemon_p99"],
                r["delivered"],
                r["cpu"],
                r["cpu_per_10k"],
                round(r["connected"]),
                r["fake_cpu"],
                r["clients_cpu"],
            ]
            for r in rows
        ],
    )
    summary = table(
        "Summary",
        [("measure", ""), ("value", "")],
        [["rate at which p99 exceeds 5 ms", crossing]]
        + [
            [f"CPU per 10k msgs/s at {r['rate']:,} msgs/s", f"{r['cpu_per_10k']:.1f} % of a core"]
            for r in rows
            if r["rate"] in args.required
        ],
    )
    notes = [
        f"{args.seconds:g} s of sending per rate, median of {args.runs} run(s) of the ladder; "
        f"latency from every {args.sample_every}th subscriber "
        f"({len(range(0, args.subscribers, args.sample_every)) + 1} parsed).",
        "delivered: trades the sampled subscribers read / trades the fake sent (the server's "
        "default slow-client policy, conflate, queues every trade; a client 10,000 events "
        "behind is disconnected, which 'subscribers connected after' would show).",
        "daemon on its own core"
        if pin
        else "not pinned: daemon, fake and subscribers share the cores",
    ]
    emit(report("end_to_end", "End to end latency", command, [latency, summary], notes), args.json)


if __name__ == "__main__":
    main()
