"""Run every benchmark and write the results into docs/benchmarks.md.

    python benchmarks/run_all.py            # the full suite: about 43 minutes
    python benchmarks/run_all.py --quick    # smaller sizes: about 7 minutes
    python benchmarks/run_all.py --only end_to_end,cli   # rerun two, keep the others' results

Each benchmark runs as its own process (``python benchmarks/<script> <args> --json <tmp>``),
``repeat`` times when it does not take medians itself; the runs' reports are merged into
medians (``_results.merge``). The generated "Results" section (machine, versions, the exact
command of every benchmark, its tables) replaces what is between the results markers of
``docs/benchmarks.md``; the hand-written sections after it are left alone. Each benchmark's
results sit between markers of their own, with when and at which revision they ran, so a run
of some benchmarks (``--only``) replaces theirs and keeps the others'. A benchmark that
fails is reported as failed in the section (and the runner exits 1); the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _results import Report, current_section, merge, render_report, replace_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    """A file in benchmarks/ (or an absolute path)."""
    full: Sequence[str] = ()
    quick: Sequence[str] = ()
    repeat: int = 1
    """Runs of the whole command (for benchmarks that take no medians themselves)."""
    quick_repeat: int = 1
    minutes: float = 5.0
    """Expected duration of one full run (the timeout is four times it)."""
    quick_minutes: float = 1.0
    env: dict[str, str] = field(default_factory=dict)

    def args(self, quick: bool) -> list[str]:
        return list(self.quick if quick else self.full)

    def runs(self, quick: bool) -> int:
        return self.quick_repeat if quick else self.repeat


BENCHMARKS: tuple[Bench, ...] = (
    Bench(
        "adapters",
        "adapters.py",
        full=["--rounds", "2000", "--runs", "5"],
        quick=["--rounds", "300", "--runs", "3"],
        minutes=11,
        quick_minutes=1.5,
    ),
    Bench(
        "end_to_end",
        "end_to_end.py",
        full=["--seconds", "5", "--runs", "3"],
        quick=["--quick"],
        minutes=6,
        quick_minutes=1,
    ),
    Bench(
        "fanout",
        "fanout.py",
        full=["--seconds", "3"],
        quick=["--quick"],
        repeat=3,
        minutes=3,
        quick_minutes=0.5,
    ),
    Bench(
        "memory",
        "memory.py",
        full=["--symbols", "200", "--minutes", "5"],
        quick=["--symbols", "50", "--minutes", "0.5"],
        minutes=9,
        quick_minutes=1.5,
    ),
    Bench("cli", "arbctl_startup.py", full=["--runs", "30"], quick=["--runs", "5"], minutes=0.5),
    Bench(
        "ingest",
        "ingest.py",
        full=["--frames", "300000", "--runs", "3"],
        quick=["--frames", "30000", "--runs", "1"],
        minutes=2.5,
        quick_minutes=0.25,
    ),
    Bench(
        "pipeline",
        "pipeline.py",
        full=["--messages", "200000", "--runs", "5"],
        quick=["--messages", "20000", "--runs", "3"],
        minutes=0.25,
        quick_minutes=0.1,
    ),
    Bench(
        "arbitrage",
        "arbitrage.py",
        full=["--runs", "5"],
        quick=["--updates", "20000", "--book-updates", "5000", "--runs", "3"],
        minutes=1,
        quick_minutes=0.1,
    ),
    Bench(
        "runtime",
        "runtime.py",
        full=["--runs", "5"],
        quick=["--batches", "5000", "--runs", "3"],
        minutes=0.25,
        quick_minutes=0.1,
    ),
    Bench(
        "resync",
        "resync.py",
        full=["--gaps", "20"],
        quick=["--gaps", "3"],
        minutes=3.5,
        quick_minutes=0.6,
    ),
)


def expected_minutes(benchmarks: Sequence[Bench], quick: bool) -> float:
    """What running ``benchmarks`` should take, from their ``minutes`` and repeats (the totals
    stated above and in docs/benchmarks.md; a test holds them to this)."""
    return sum((b.quick_minutes if quick else b.minutes) * b.runs(quick) for b in benchmarks)


# -- where and with what ------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return revision + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, str]:
    return {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "arbd": f"{version('arbd')} (git {git_revision()})",
        "trio": version("trio"),
        "websockets": version("websockets"),
        "msgspec": version("msgspec"),
        "cryptofeed": version("cryptofeed"),
    }


# -- running ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    bench: Bench
    command: str
    reports: list[Report] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    load: str = ""
    """The 1-minute load average when it started."""
    started: str = ""
    """When it started (UTC)."""


def run_bench(bench: Bench, quick: bool, python: str, runs: int | None = None) -> Outcome:
    script = Path(bench.script) if os.path.isabs(bench.script) else HERE / bench.script
    args = bench.args(quick)
    shown = shlex.join(["python", f"benchmarks/{script.name}", *args])
    outcome = Outcome(bench, shown, load=f"{os.getloadavg()[0]:.2f}", started=utc_now())
    timeout = 60 * 4 * (bench.quick_minutes if quick else bench.minutes)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(runs if runs is not None else bench.runs(quick)):
            path = Path(tmp) / f"{bench.name}-{n}.json"
            env = {**os.environ, **bench.env}
            print(f"== {shown}  (run {n + 1})", file=sys.stderr, flush=True)
            try:
                done = subprocess.run(
                    [python, str(script), *args, "--json", str(path)],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,  # the report; progress (stderr) shows as it comes
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                outcome.error = f"timed out after {timeout / 60:.0f} min"
                break
            # A report written before a non-zero exit is kept (resync.py exits 1 when it misses
            # its target, after reporting): the section shows both the numbers and the failure.
            if path.exists():
                outcome.reports.append(json.loads(path.read_text()))
            if done.returncode != 0 or not path.exists():
                outcome.error = f"exit code {done.returncode} (its error output is above)"
                break
    outcome.seconds = time.perf_counter() - started
    return outcome


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def bench_block(outcome: Outcome, env: dict[str, str]) -> str:
    """One benchmark's part of the section, between its own markers (so ``--only`` can replace
    it and keep the others), with when, where and from which revision it ran."""
    name = outcome.bench.name
    lines = [
        f"<!-- bench:{name} -->",
        f"*{name}: ran {outcome.started}, load average at its start {outcome.load}, "
        f"arbd {env['arbd']}, {outcome.seconds / 60:.1f} min.*",
        "",
    ]
    if outcome.reports:
        merged = {**merge(outcome.reports), "command": outcome.command}
        lines.append(render_report(merged, len(outcome.reports)))
    if outcome.error:
        lines += [f"### {name}: failed", "", f"    {outcome.command}", ""]
        lines += [f"{outcome.error}", ""]
    return "\n".join(lines).rstrip() + f"\n<!-- /bench:{name} -->\n"


BLOCK = re.compile(r"<!-- bench:([\w-]+) -->\n.*?<!-- /bench:\1 -->\n", re.DOTALL)


def render(
    outcomes: Sequence[Outcome],
    env: dict[str, str],
    command: str,
    seconds: float,
    kept: str = "",
) -> str:
    """The results section; blocks of ``kept`` (a previous section) for benchmarks that did not
    run now are carried over, in the suite's order."""
    when = utc_now()
    blocks = {m.group(1): m.group(0) for m in BLOCK.finditer(kept)}
    blocks.update((o.bench.name, bench_block(o, env)) for o in outcomes)
    suite = [b.name for b in BENCHMARKS]
    order = suite + [name for name in blocks if name not in suite]  # others as they came
    ran = ", ".join(o.bench.name for o in outcomes)
    lines = [
        "## Results",
        "",
        f"Last generated by `{command}` on {when} in {seconds / 60:.1f} minutes ({ran}); "
        "each benchmark below says when it ran.",
        "",
        f"- Machine: {env['cpu']}, {env['cores']} cores, {env['kernel']}",
        f"- Versions: Python {env['python']}, arbd {env['arbd']}, trio {env['trio']}, "
        f"websockets {env['websockets']}, msgspec {env['msgspec']}, "
        f"cryptofeed {env['cryptofeed']}",
        "",
    ]
    lines += [blocks[name] for name in order if name in blocks]
    return "\n".join(lines).rstrip() + "\n"


def run(
    benchmarks: Sequence[Bench],
    *,
    quick: bool,
    doc: Path | None,
    python: str,
    command: str,
    runs: int | None = None,
) -> tuple[str, bool]:
    """Run ``benchmarks``; returns (the results section, whether all succeeded) and writes the
    section into ``doc`` when given, keeping the results there of benchmarks not run now."""
    env = environment()
    started = time.perf_counter()
    outcomes = [run_bench(b, quick, python, runs) for b in benchmarks]
    kept = current_section(doc.read_text()) if doc is not None else ""
    section = render(outcomes, env, command, time.perf_counter() - started, kept)
    if doc is not None:
        doc.write_text(replace_section(doc.read_text(), section))
    return section, all(not o.error for o in outcomes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smaller sizes (about {expected_minutes(BENCHMARKS, True):.0f} minutes)",
    )
    parser.add_argument(
        "--only", help="comma-separated names: " + ",".join(b.name for b in BENCHMARKS)
    )
    parser.add_argument(
        "--runs", type=int, help="runs of every benchmark command (default: per benchmark)"
    )
    parser.add_argument("--doc", default=str(DOC), help="the Markdown file to update")
    parser.add_argument("--no-doc", action="store_true", help="print the section only")
    args = parser.parse_args(argv)
    chosen = list(BENCHMARKS)
    if args.only:
        names = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = names - {b.name for b in BENCHMARKS}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = [b for b in BENCHMARKS if b.name in names]
    command = shlex.join(
        ["python", "benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])]
    )
    section, ok = run(
        chosen,
        quick=args.quick,
        doc=None if args.no_doc else Path(args.doc),
        python=sys.executable,
        command=command,
        runs=args.runs,
    )
    print(section)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
