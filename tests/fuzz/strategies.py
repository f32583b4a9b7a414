"""What the fuzz tests share: hypothesis strategies over real inputs, settings, a hang guard.

The mutation engine (``arbd.testing.mutate``) asks a :class:`~arbd.testing.mutate.Chooser` for
every decision; :class:`Draws` answers from hypothesis, so a failure shrinks to the fewest and
smallest decisions (the same engine reads atheris's bytes in ``fuzz/run.py``).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
CORPUS = HERE / "corpus"


def fuzz_settings(examples: int) -> settings:
    """``examples`` per test in the default run (all of tests/fuzz in well under a minute);
    the ``fuzz`` profile's count when it is loaded (``--hypothesis-profile=fuzz``, ARBD_FUZZ=1).
    No deadline: the hang guard bounds an example, and timings are never asserted."""
    fuzz = settings.get_profile("fuzz")
    count = fuzz.max_examples if settings().max_examples >= fuzz.max_examples else examples
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Draws:
    """A ``Chooser`` backed by hypothesis's ``data`` strategy."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))


class Hang(AssertionError):
    """One example ran past the hang guard."""


@contextmanager
def hang_guard(seconds: float = 20.0) -> Iterator[None]:
    """Fail an example that runs longer than ``seconds`` (a hang, not a speed check: every
    example takes milliseconds). SIGALRM: main thread only, and it cannot stop a C loop."""

    def expired(signum: int, frame: object) -> None:
        raise Hang(f"example still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
"""Any JSON document."""

random_inputs = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
)
"""Inputs unrelated to any real one: random bytes and random JSON."""


def corpus(target: str) -> list[Path]:
    """The saved inputs of one target (``tests/fuzz/corpus/<target>/``), sorted."""
    return sorted(p for p in (CORPUS / target).iterdir() if p.is_file())
