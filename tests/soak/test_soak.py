"""The soak and chaos run as a pytest entry point: `pytest -m soak tests/soak` (deselected by
default, see pyproject's addopts). CI runs the same short run as `benchmarks/soak.py --short`."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from arbd.plugins import load_plugins
from arbd.testing.soak import SoakSettings, run_soak
from arbd.testing.soakreport import Limits, build_rows, render

pytestmark = pytest.mark.soak


def test_a_short_soak_holds_every_invariant():
    settings = SoakSettings(minutes=6.0, seed=3, rate=4.0)
    result = trio.run(
        run_soak, load_plugins(), settings, clock=trio.testing.MockClock(rate=settings.rate)
    )
    limits = Limits(warmup=120.0)
    text, ok = render(result, limits)
    assert ok, text
    rows = {row.number: row for row in build_rows(result, limits)}
    assert len(rows) == 8
    # The run did what it says: faults of every kind, opportunities and books checked.
    kinds = {fault.kind for fault in result.faults}
    assert kinds >= {"drop", "stall", "gap", "checksum", "garbage", "rate_limit", "crossed"}
    assert result.checked[2] > 1000
    assert result.checked[3] > 0
    assert result.clients.calm.total > 1000
