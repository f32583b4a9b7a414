"""benchmarks/run_all.py: medians of several runs, rendering, and the docs section it rewrites.

No benchmark runs here: a stand-in benchmark script writes made-up reports.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


results = load("_results")
run_all = load("run_all")


def latency_report(p50s: list[float], extra_row: bool = False) -> dict:
    rows = [[rate, p50, "pinned"] for rate, p50 in zip((1000, 10000), p50s, strict=True)]
    if extra_row:
        rows.append([50000, 9000.0, "pinned"])
    t = results.table("latency", [("msgs/s", ",d"), ("p50 µs", ",.0f"), ("note", "")], rows)
    return results.report("e2e", "End to end", "python benchmarks/end_to_end.py", [t], ["n1"])


def test_merge_takes_the_median_of_each_cell_by_row_key() -> None:
    reports = [
        latency_report([100.0, 900.0]),
        latency_report([300.0, 700.0], extra_row=True),
        latency_report([200.0, 800.0]),
    ]
    merged = results.merge(reports)
    rows = merged["tables"][0]["rows"]
    assert rows == [[1000, 200.0, "pinned"], [10000, 800.0, "pinned"], [50000, 9000.0, "pinned"]]
    assert merged["notes"] == ["n1"]


def test_merge_refuses_reports_of_different_benchmarks() -> None:
    other = {**latency_report([1.0, 2.0]), "benchmark": "memory"}
    with pytest.raises(ValueError, match="different benchmarks"):
        results.merge([latency_report([1.0, 2.0]), other])


def test_integer_columns_stay_integers_and_missing_values_render_empty() -> None:
    t = results.table("t", [("name", ""), ("n", ",d"), ("rate", ",.1f")], [["a", 3, None]])
    merged = results.merge(
        [results.report("b", "B", "cmd", [t]), results.report("b", "B", "cmd", [t])]
    )
    text = results.render_table(merged["tables"][0])
    assert "| a | 3 |  |" in text
    assert "|---|---:|---:|" in text


def test_a_row_must_have_a_cell_per_column() -> None:
    with pytest.raises(ValueError, match="2 cells, not 3"):
        results.table("t", [("a", ""), ("b", ""), ("c", "")], [["x", "y"]])


def test_render_report_shows_the_command_the_tables_and_the_runs() -> None:
    text = results.render_report(latency_report([1234.0, 5678.0]), runs=3)
    assert text.startswith("### End to end\n")
    assert "    python benchmarks/end_to_end.py" in text
    assert "median over 3 runs" in text
    assert "| 10,000 | 5,678 | pinned |" in text
    assert "- n1" in text


DOC = """# Benchmarks

Intro paragraph.

## Ingest: hand-written analysis

Numbers and reasoning that must survive.
"""


def test_replace_section_inserts_after_the_intro_then_replaces_between_markers() -> None:
    first = results.replace_section(DOC, "## Results\n\nold")
    assert first.index("Intro paragraph.") < first.index(results.BEGIN) < first.index("## Ingest")
    second = results.replace_section(first, "## Results\n\nnew")
    assert "old" not in second
    assert "new" in second
    assert second.count(results.BEGIN) == 1
    assert second.count(results.END) == 1
    assert second.endswith("Numbers and reasoning that must survive.\n")


def test_replace_section_with_a_lone_marker_is_an_error() -> None:
    with pytest.raises(ValueError, match="one of the results markers"):
        results.replace_section(DOC + results.BEGIN + "\n", "x")


FAKE_BENCHMARK = textwrap.dedent(
    """
    import argparse, json, sys
    sys.path.insert(0, {benchmarks!r})
    from _results import emit, report, table
    parser = argparse.ArgumentParser()
    parser.add_argument("--value", type=float)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--miss", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.fail:
        sys.exit("broken on purpose")
    counter = {counter!r}
    with open(counter, "a+") as f:
        f.seek(0)
        n = len(f.read())
        f.write("x")
    t = table("speed", [("case", ""), ("f/s", ",.0f")], [["quotes", args.value + 100 * n]])
    emit(report("fake", "Fake benchmark", "ignored", [t]), args.json)
    if args.miss:
        sys.exit("target missed, after reporting")
    """
)


def test_run_all_runs_each_benchmark_merges_runs_and_rewrites_the_doc(tmp_path: Path) -> None:
    script = tmp_path / "fake_bench.py"
    counter = tmp_path / "runs"
    script.write_text(FAKE_BENCHMARK.format(benchmarks=str(BENCHMARKS), counter=str(counter)))
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    benches = [
        run_all.Bench("fake", str(script), quick=["--value", "1000"], quick_repeat=3),
        run_all.Bench("broken", str(script), quick=["--fail"], quick_minutes=0.5),
    ]
    section, ok = run_all.run(
        benches, quick=True, doc=doc, python=sys.executable, command="python run_all.py --quick"
    )
    assert not ok  # "broken" failed, "fake" still ran
    assert counter.read_text() == "xxx"
    # Runs gave 1000, 1100, 1200 f/s: the median is shown, with the exact command.
    assert "| quotes | 1,100 |" in section
    assert "median over 3 runs" in section
    assert "    python benchmarks/fake_bench.py --value 1000" in section
    assert "### broken: failed" in section
    assert "exit code 1" in section
    for recorded in ("Machine:", "cores", "Python", "arbd", "trio", "websockets", "msgspec"):
        assert recorded in section
    assert "Last generated by `python run_all.py --quick`" in section
    text = doc.read_text()
    assert section.strip() in text
    assert text.endswith("Numbers and reasoning that must survive.\n")
    # Rerunning one benchmark replaces its results and keeps the other's.
    counter.write_text("")
    again = [run_all.Bench("fake", str(script), quick=["--value", "5000"])]
    run_all.run(
        again, quick=True, doc=doc, python=sys.executable, command="python run_all.py --only fake"
    )
    text = doc.read_text()
    assert "| quotes | 5,000 |" in text
    assert "| quotes | 1,100 |" not in text
    assert "### broken: failed" in text  # not rerun: kept as it was
    assert text.count("<!-- bench:fake -->") == 1
    assert text.index("<!-- bench:fake -->") < text.index("<!-- bench:broken -->")
    assert text.endswith("Numbers and reasoning that must survive.\n")


def test_a_report_written_before_a_failing_exit_is_shown_with_the_failure(
    tmp_path: Path,
) -> None:
    # resync.py reports, then exits 1 when it misses its target: the numbers must not be lost.
    script = tmp_path / "fake_bench.py"
    script.write_text(
        FAKE_BENCHMARK.format(benchmarks=str(BENCHMARKS), counter=str(tmp_path / "runs"))
    )
    bench = run_all.Bench("missing", str(script), quick=["--value", "7", "--miss"])
    section, ok = run_all.run(
        [bench], quick=True, doc=None, python=sys.executable, command="python run_all.py"
    )
    assert not ok
    assert "| quotes | 7 |" in section
    assert "### missing: failed" in section
    assert "exit code 1" in section


def test_the_suite_lists_every_benchmark_with_its_json_option() -> None:
    # Every benchmark the runner names exists and accepts --json (checked in its source: running
    # them is the runner's job, not the unit tests').
    names = {b.name for b in run_all.BENCHMARKS}
    expected = {"adapters", "end_to_end", "fanout", "memory", "cli"}
    expected |= {"ingest", "pipeline", "arbitrage", "runtime", "resync"}
    assert expected <= names
    assert len(names) == len(run_all.BENCHMARKS)
    for bench in run_all.BENCHMARKS:
        source = (BENCHMARKS / bench.script).read_text()
        assert '"--json"' in source, bench.script
        assert "emit(" in source, bench.script


def test_the_stated_durations_match_the_suite() -> None:
    # Whoever adds a benchmark or changes its sizes updates the totals users read.
    full = round(run_all.expected_minutes(run_all.BENCHMARKS, quick=False))
    quick = round(run_all.expected_minutes(run_all.BENCHMARKS, quick=True))
    doc = (BENCHMARKS.parent / "docs" / "benchmarks.md").read_text()
    for text in (run_all.__doc__ or "", doc):
        assert f"about {full} minutes" in text
        assert f"about {quick} minutes" in text


def test_results_json_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    r = latency_report([1.0, 2.0])
    results.emit(r, str(path))
    assert json.loads(path.read_text()) == json.loads(json.dumps(r))
