"""Soak and chaos: the whole daemon against the five fakes under random faults and clients.

Runs ``arbd.testing.soak.run_soak`` under a ``trio.testing.MockClock(rate=R)`` (timers R times
faster than real time, real loopback sockets), then prints the invariants table, the recovery
times per fault kind and the run's parameters. Exits 1 if any invariant was violated.

    python benchmarks/soak.py                      # 30 min on the run's clock (~8 min real)
    python benchmarks/soak.py --short              # 6 min (~2 min real): what CI runs
    python benchmarks/soak.py --minutes 60 --seed 7 --report docs/soak.md

See docs/soak.md for what each invariant means and how it is checked.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import sys
from pathlib import Path

import trio
import trio.testing

from arbd import __version__
from arbd.plugins import load_plugins
from arbd.testing.soak import SoakSettings, run_soak
from arbd.testing.soakreport import Limits, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="run length (run clock)")
    parser.add_argument("--short", action="store_true", help="6 minutes: the CI version")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--symbols", type=int, default=12, help="synthetic symbols per exchange")
    parser.add_argument("--rate", type=float, default=4.0, help="MockClock rate (virtual/real)")
    parser.add_argument("--rounds", type=float, default=2.0, help="market rounds/s per fake")
    parser.add_argument("--fault-interval", type=float, default=6.0, help="mean s between faults")
    parser.add_argument("--report", type=Path, help="also write the report (Markdown) here")
    parser.add_argument("--log", type=Path, help="write the daemon's log (warnings) here")
    parser.add_argument("--faults", action="store_true", help="list every fault on stderr")
    args = parser.parse_args(argv)
    minutes = 6.0 if args.short else args.minutes
    if minutes <= 0 or args.rate <= 0 or args.symbols < 1 or args.rounds <= 0:
        parser.error("--minutes, --rate, --rounds and --symbols must be positive")
    if args.log:
        handler = logging.FileHandler(args.log, mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(run_time)8.2f %(name)s %(message)s"))
        handler.addFilter(_stamp_run_time)
        logging.basicConfig(handlers=[handler], level=logging.INFO, force=True)
    else:
        logging.disable(logging.ERROR)  # faults make the daemon log on purpose
    settings = SoakSettings(
        minutes=minutes,
        seed=args.seed,
        symbols=args.symbols,
        rounds=args.rounds,
        fault_interval=args.fault_interval,
        rate=args.rate,
    )
    # Warm-up: a third of the run, while the fakes' and the checker's bounded buffers fill
    # (docs/soak.md, "Memory").
    limits = Limits(warmup=minutes * 60 / 3)
    print(f"soak: {minutes:g} min at {args.rate:g}x, seed {args.seed}", file=sys.stderr)
    result = trio.run(
        run_soak, load_plugins(), settings, clock=trio.testing.MockClock(rate=args.rate)
    )
    command = "python benchmarks/soak.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    result.params["command"] = f"`{command.strip()}`"
    result.params["machine"] = (
        f"{platform.machine()}, Python {platform.python_version()}, arbd {__version__}"
    )
    if args.faults:
        for f in result.faults:
            outcome = (
                "NOT RECOVERED"
                if f.failed
                else "overlapped"
                if f.overlapped
                else f"recovered in {f.recovery or 0:.2f} s"
            )
            print(
                f"fault {f.id:4} at {f.started:8.1f} {f.kind:<10} {f.exchange:<9} "
                f"{' '.join(f.symbols) if len(f.symbols) == 1 else 'all':<10} "
                f"{'noticed' if f.detected else 'unnoticed':<9} {outcome}"
                f" (ended {f.ended or 0:.1f}, last trouble {f.last_trouble or 0:.1f}, "
                f"last data {f.last_key}) {f.trouble}",
                file=sys.stderr,
            )
    text, ok = render(result, limits)
    print(text)
    if args.report:
        write_report(args.report, text)
    print("soak: every invariant held" if ok else "soak: INVARIANT VIOLATED", file=sys.stderr)
    return 0 if ok else 1


def _stamp_run_time(record: logging.LogRecord) -> bool:
    """Log lines carry the run's (virtual) clock, the one fault times are given in."""
    try:
        record.run_time = trio.current_time()
    except RuntimeError:  # outside the trio run
        record.run_time = -1.0
    return True


MARKER = "<!-- report: written by benchmarks/soak.py --report; edit above this line -->"


def write_report(path: Path, text: str) -> None:
    """Replace what follows :data:`MARKER` in ``path`` (the explanation above it stays), or
    write a new file holding the marker and the report."""
    head = "# Soak and chaos report\n\n"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if MARKER in old:
            head = old[: old.index(MARKER)]
    path.write_text(f"{head}{MARKER}\n\n{text}", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
