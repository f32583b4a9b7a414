"""Per-message cost of the synchronous pipeline, without sockets: adapter receive and hub publish.

The steps in isolation, with yardsticks: the simplex adapter's ``receive`` of a trade frame
against stdlib ``json.loads`` of the same frame, ``hub.publish`` with one subscriber and no
processor (``adapters.py`` measures the whole path with the daemon's processor, per exchange),
and ``float()`` against ``Decimal()`` of a price text (why events keep prices as text and
arithmetic converts with ``float()``; see ``arbd/model.py``).

Run:  python benchmarks/pipeline.py [--messages 200000] [--runs 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(__file__))
from _results import emit, report, table
from ingest import make_messages, new_pipeline, plan

from arbd.model import Event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the results here (for run_all.py)")
    args = parser.parse_args()
    messages = make_messages()
    n = args.messages
    receive_us, publish_us, json_us, float_us, decimal_us = [], [], [], [], []
    prices = [f"{64000 + i / 100:.2f}" for i in range(1000)]
    for _ in range(args.runs):
        adapter, hub = new_pipeline()
        session = adapter.new_session(plan())
        out: list[Event] = []
        started = time.perf_counter()
        for i in range(n):
            session.receive(messages[i % len(messages)], True, 1, out)
        receive_us.append((time.perf_counter() - started) / n * 1e6)
        started = time.perf_counter()
        for i in range(0, n, 100):
            hub.publish(out[i : i + 100])
        publish_us.append((time.perf_counter() - started) / n * 1e6)
        started = time.perf_counter()
        for i in range(n):
            json.loads(messages[i % len(messages)])
        json_us.append((time.perf_counter() - started) / n * 1e6)
        started = time.perf_counter()
        for i in range(n):
            float(prices[i % 1000])
        float_us.append((time.perf_counter() - started) / n * 1e6)
        started = time.perf_counter()
        for i in range(n):
            Decimal(prices[i % 1000])
        decimal_us.append((time.perf_counter() - started) / n * 1e6)
    rows = [
        ["simplex session.receive of a trade frame (msgspec decode + Trade)", receive_us],
        ["hub.publish per event, batches of 100, one subscriber, no processor", publish_us],
        ["for scale: stdlib json.loads of the same frame", json_us],
        ['float("64000.12"): how arithmetic reads a price text', float_us],
        ['Decimal("64000.12"): the alternative', decimal_us],
    ]
    result = table(
        f"µs per message, median and best of {args.runs} runs of {n:,}",
        [("step", ""), ("median µs", ",.2f"), ("best µs", ",.2f")],
        [[step, statistics.median(us), min(us)] for step, us in rows],
    )
    command = "python benchmarks/pipeline.py " + " ".join(sys.argv[1:])
    emit(report("pipeline", "Pipeline steps without sockets", command, [result]), args.json)


if __name__ == "__main__":
    main()
