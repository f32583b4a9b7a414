"""Hostile capture files through the reader behind ``arbd replay``
(``arbd.testing.hostile_local.check_capture``): seed captures with lines mutated, dropped,
repeated or cut off, plain, gzip or zstandard (possibly truncated), and random bytes. A capture
either replays (bad lines reported as ``file:line: ...``) or is refused with one line naming the
file, never a traceback. ``corpus/capture/`` keeps files that once broke that.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from arbd.plugins import PluginRegistry, load_plugins
from arbd.testing.hostile_local import check_capture
from arbd.testing.mutate import CAPTURE_SUFFIXES, damage_capture

from .strategies import SEEDS, Draws, corpus, fuzz_settings, hang_guard

LINES = 40
"""Lines of a seed capture used: the header, the instrument answers and the first frames."""


@cache
def registry() -> PluginRegistry:
    return load_plugins()


@cache
def seed_lines() -> list[list[bytes]]:
    return [
        gzip.decompress(p.read_bytes()).splitlines(keepends=True)[:LINES]
        for p in sorted(SEEDS.glob("*.capture.jsonl.gz"))
    ]


def _check(tmp: Path, data: bytes, suffix: str) -> str:
    path = tmp / f"hostile{suffix}"
    path.write_bytes(data)
    with hang_guard():
        return check_capture(path, registry())


@fuzz_settings(150)
@given(data=st.data())
def test_damaged_captures(tmp_path_factory, data):
    seeds = seed_lines()
    draws = Draws(data)
    content, suffix = damage_capture(seeds[draws.integer(0, len(seeds) - 1)], draws)
    event(_check(tmp_path_factory.mktemp("cap"), content, suffix))


@fuzz_settings(60)
@given(content=st.binary(max_size=500), suffix=st.sampled_from(CAPTURE_SUFFIXES))
def test_random_files(tmp_path_factory, content, suffix):
    _check(tmp_path_factory.mktemp("cap"), content, suffix)


@pytest.mark.parametrize("path", corpus("capture"), ids=lambda p: p.name)
def test_corpus(path):
    check_capture(path, registry())
