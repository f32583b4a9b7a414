"""CLI start-up: wall time of ``arbctl status`` against a running control server, and of
``arbd --help``.

A real control server (``arbd.control.server``, in a thread, with a fake daemon of five
exchanges) listens on a temporary socket; each command runs ``--runs`` times as a fresh
subprocess and the wall time from spawn to exit is measured. The target is ``arbctl status``
<= 150 ms. ``arbd --help`` is the daemon's command group, which imports its subcommands.
``python -c pass`` is the calibration row: the interpreter's own start on this machine, which no
CLI can beat.

Bytecode: an installed package has its ``.pyc`` files; a source checkout run with
``PYTHONDONTWRITEBYTECODE=1`` compiles every arbd module on every run. The ``cached`` mode
(default) lets Python cache bytecode under a temporary ``PYTHONPYCACHEPREFIX`` after one warm-up
run; ``--no-cache`` measures the compile-every-time case too.

Run:  python benchmarks/arbctl_startup.py [--runs 30] [--no-cache] [--importtime] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from arbd.testing.control import ControlServerThread, FakeControlTarget

sys.path.insert(0, os.path.dirname(__file__))
from _results import emit, report, table

MARKETS = {
    "binance": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
    "bybit": ["BTC/USDT", "ETH/USDT"],
    "coinbase": ["BTC/USD", "ETH/USD"],
    "kraken": ["BTC/USD", "ETH/USD"],
    "okx": ["BTC/USDT", "ETH/USDT"],
}


def arbctl_command() -> list[str]:
    script = Path(sys.executable).with_name("arbctl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from arbd.cli.arbctl import main; main()"]


def arbd_command() -> list[str]:
    script = Path(sys.executable).with_name("arbd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "arbd"]


def environment(cache_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if cache_dir is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache_dir
    return env


def wall_times(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)
        times.append((time.perf_counter() - start) * 1000)
    return times


def import_profile(
    env: dict[str, str], module: str = "arbd.cli.arbctl", top: int = 8
) -> list[tuple[str, int]]:
    """The largest cumulative import times (µs) of ``import <module>``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line[12:].split("|"))
            if not name.startswith(" "):
                rows.append((name, int(cumulative)))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-cache", action="store_true", help="also measure without bytecode")
    parser.add_argument("--importtime", action="store_true", help="show the largest imports")
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()

    socket_dir = tempfile.mkdtemp(prefix="arbctl-bench-")
    cache_dir = tempfile.mkdtemp(prefix="arbctl-pyc-")
    path = os.path.join(socket_dir, "control.sock")
    arbctl = arbctl_command()
    rows: list[list[object]] = []
    modes: list[tuple[str, str | None]] = [("cached", cache_dir)]
    if args.no_cache:
        modes.append(("no cache", None))
    try:
        with ControlServerThread(FakeControlTarget(MARKETS), path):
            commands = {
                "python -c pass (calibration)": [sys.executable, "-c", "pass"],
                "arbctl --help": [*arbctl, "--help"],
                "arbctl status": [*arbctl, "--socket", path, "status"],
                "arbctl status --json": [*arbctl, "--socket", path, "status", "--json"],
                "arbd --help": [*arbd_command(), "--help"],
            }
            print(f"{args.runs} runs each; wall time from spawn to exit, ms")
            print(f"{'command':<30} {'bytecode':<9} {'median':>7} {'p90':>7} {'min':>7}")
            for mode, cache in modes:
                env = environment(cache)
                for name, command in commands.items():
                    times = sorted(wall_times(command, env, args.runs))
                    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
                    median = statistics.median(times)
                    print(f"{name:<30} {mode:<9} {median:7.1f} {p90:7.1f} {times[0]:7.1f}")
                    rows.append([f"`{name}`", mode, median, p90, times[0]])
            if args.importtime:
                for module in ("arbd.cli.arbctl", "arbd.cli.main"):
                    print(f"\nlargest imports of {module} (cumulative ms, bytecode cached):")
                    for name, micros in import_profile(environment(cache_dir), module):
                        print(f"  {name:<40} {micros / 1000:6.1f}")
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
    if args.json:
        command = "python benchmarks/arbctl_startup.py " + " ".join(sys.argv[1:])
        columns = [("command", ""), ("bytecode", ""), ("median ms", ".1f"), ("p90 ms", ".1f")]
        result = table(
            f"Wall time from spawn to exit, {args.runs} runs each",
            [*columns, ("min ms", ".1f")],
            rows,
            key=2,
        )
        notes = ["targets: `arbctl status` ≤ 150 ms; `python -c pass` is the interpreter alone"]
        emit(report("cli", "CLI start-up", command, [result], notes), args.json)


if __name__ == "__main__":
    main()
