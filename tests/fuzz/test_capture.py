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
import zstandard
from hypothesis import event, given
from hypothesis import strategies as st

from arbd.plugins import PluginRegistry, load_plugins
from arbd.testing.hostile_local import check_capture
from arbd.testing.mutate import mutate

from .strategies import SEEDS, Draws, corpus, fuzz_settings, hang_guard

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
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


def damaged_capture(draws: Draws) -> tuple[bytes, str]:
    """A seed capture with 1-3 line-level damages, then maybe compressed and cut off."""
    seeds = seed_lines()
    lines = list(seeds[draws.integer(0, len(seeds) - 1)])
    for _ in range(draws.integer(1, 3)):
        if not lines:
            break
        at = draws.integer(0, len(lines) - 1)
        operation = draws.integer(0, 3)
        if operation == 0:
            lines[at] = mutate(lines[at].rstrip(b"\n"), draws) + b"\n"
        elif operation == 1:
            del lines[at]
        elif operation == 2:
            lines.insert(at, lines[draws.integer(0, len(lines) - 1)])
        else:
            lines = [*lines[:at], lines[at][: draws.integer(0, len(lines[at]))]]
    data = b"".join(lines)
    suffix = SUFFIXES[draws.integer(0, 2)]
    if suffix == ".jsonl.gz":
        data = gzip.compress(data, mtime=0)
    elif suffix == ".jsonl.zst":
        data = zstandard.ZstdCompressor().compress(data)
    if suffix != ".jsonl" and draws.integer(0, 2) == 0:
        data = data[: draws.integer(0, len(data))]
    return data, suffix


def _check(tmp: Path, data: bytes, suffix: str) -> str:
    path = tmp / f"hostile{suffix}"
    path.write_bytes(data)
    with hang_guard():
        return check_capture(path, registry())


@fuzz_settings(150)
@given(data=st.data())
def test_damaged_captures(tmp_path_factory, data):
    content, suffix = damaged_capture(Draws(data))
    event(_check(tmp_path_factory.mktemp("cap"), content, suffix))


@fuzz_settings(60)
@given(content=st.binary(max_size=500), suffix=st.sampled_from(SUFFIXES))
def test_random_files(tmp_path_factory, content, suffix):
    _check(tmp_path_factory.mktemp("cap"), content, suffix)


@pytest.mark.parametrize("path", corpus("capture"), ids=lambda p: p.name)
def test_corpus(path):
    check_capture(path, registry())
