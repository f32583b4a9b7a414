"""Hostile exchange frames against every installed adapter's session (``arbd.testing.hostile``).

Each exchange's seed capture (``seeds/<exchange>.capture.jsonl.gz``, real frames from its fake)
is replayed with one hostile frame inserted: a real frame mutated (fields removed or retyped,
hostile numbers, emptied or huge arrays, wrong symbols, duplicated keys, truncation, invalid
UTF-8, deep nesting), random bytes or random JSON. The session must never raise anything but a
frame error, never publish a crossed book or a book while it is invalid, and a rejected frame
must leave the books exactly as they were. ``corpus/adapter/`` keeps the inputs that once broke
a rule, replayed here.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from arbd.plugins import load_plugins
from arbd.testing.hostile import FrameOutcome, SessionTarget
from arbd.testing.mutate import mutate

from .strategies import SEEDS, Draws, corpus, fuzz_settings, hang_guard, random_inputs

EXCHANGES = sorted(p.name.split(".")[0] for p in SEEDS.glob("*.capture.jsonl.gz"))


@cache
def target(exchange: str) -> SessionTarget:
    return SessionTarget(SEEDS / f"{exchange}.capture.jsonl.gz", load_plugins())


def _label(outcome: FrameOutcome) -> str:
    if outcome.error is not None:
        return f"rejected: {type(outcome.error).__name__}"
    return "ignored" if outcome.ignored else "accepted" if outcome.events else "quiet"


def test_every_installed_exchange_has_a_seed_capture():
    assert set(EXCHANGES) == set(load_plugins().exchanges)


@pytest.mark.parametrize("exchange", EXCHANGES)
@fuzz_settings(60)
@given(data=st.data())
def test_mutated_real_frames(exchange, data):
    t = target(exchange)
    draws = Draws(data)
    at = draws.integer(0, len(t.frames) - 1)
    # Mostly the frame at that point (a damaged copy of what comes next), else any frame.
    source = t.frames[at] if draws.integer(0, 2) else t.frames[draws.integer(0, len(t.frames) - 1)]
    hostile = mutate(source.data, draws, [*t.symbols, *t.natives])
    with hang_guard():
        event(_label(t.check(hostile, at, is_text=source.is_text)))


@pytest.mark.parametrize("exchange", EXCHANGES)
@fuzz_settings(20)
@given(hostile=random_inputs, at=st.integers(0, 10_000), is_text=st.booleans())
def test_random_frames(exchange, hostile, at, is_text):
    with hang_guard():
        event(_label(target(exchange).check(hostile, at, is_text=is_text)))


def _case(path: Path) -> tuple[str, int, bytes]:
    case = json.loads(path.read_text())
    frame = base64.b64decode(case["b64"]) if "b64" in case else case["frame"].encode()
    return case["exchange"], case["at"], frame


@pytest.mark.parametrize("path", corpus("adapter"), ids=lambda p: p.stem)
def test_corpus(path):
    exchange, at, frame = _case(path)
    with hang_guard():
        target(exchange).check(frame, at)
