"""Per-message cost of the synchronous pipeline, without sockets: adapter receive and hub publish.

Run:  python benchmarks/pipeline.py [--messages 200000]
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
from ingest import make_messages, new_pipeline, plan

from arbd.model import Event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
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
    print(f"per message, median of {args.runs} runs of {n}:")
    print(f"  simplex session.receive (trade frame)  {statistics.median(receive_us):6.2f} us")
    print(f"  hub.publish (per event, batches of 100) {statistics.median(publish_us):6.2f} us")
    print(f"  stdlib json.loads of the same frame     {statistics.median(json_us):6.2f} us")
    print(f"  float(price text)                       {statistics.median(float_us):6.2f} us")
    print(f"  Decimal(price text)                     {statistics.median(decimal_us):6.2f} us")


if __name__ == "__main__":
    main()
