import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbd.feed.backoff import Backoff


@given(
    base=st.floats(0.01, 5.0),
    factor=st.floats(1.0, 100.0),
    failures=st.integers(0, 200),
    seed=st.integers(0, 2**32),
)
def test_jittered_delay_stays_within_exponential_cap(base, factor, failures, seed):
    backoff = Backoff(base, base * factor, reset_after=60.0, rng=random.Random(seed))
    backoff.failures = failures
    ceiling = min(base * factor, base * 2.0 ** min(failures, 62))
    delay = backoff.next_delay()
    assert 0.0 <= delay <= ceiling
    assert backoff.failures == failures + 1


def test_delays_grow_then_cap_and_are_jittered():
    backoff = Backoff(0.5, 8.0, reset_after=60.0, rng=random.Random(1))
    ceilings = []
    for _ in range(8):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    # Full jitter: many draws at the cap spread over [0, cap], not bunched at it.
    draws = [Backoff(0.5, 8.0, 60.0, rng=random.Random(i)) for i in range(200)]
    for b in draws:
        b.failures = 10
    values = [b.next_delay() for b in draws]
    assert min(values) < 2.0 and max(values) > 6.0


def test_reset_only_after_a_stable_period():
    backoff = Backoff(1.0, 30.0, reset_after=60.0, rng=random.Random(0))
    for _ in range(5):
        backoff.next_delay()
    backoff.connection_ended(stable_for=59.0)
    assert backoff.failures == 5
    backoff.connection_ended(stable_for=60.0)
    assert backoff.failures == 0
    assert backoff.ceiling() == 1.0


def test_max_attempts_marks_exhausted():
    backoff = Backoff(1.0, 2.0, 60.0, max_attempts=3)
    assert not backoff.exhausted
    for _ in range(3):
        backoff.next_delay()
    assert backoff.exhausted
    assert not Backoff(1.0, 2.0, 60.0, max_attempts=0).exhausted


def test_invalid_parameters_rejected():
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0, 1.0)
