from hypothesis import given
from hypothesis import strategies as st

from arbd.histogram import LATENCY_BUCKETS, LatencyHistogram


@given(st.lists(st.integers(-1000, 2_000_000_000), max_size=200))
def test_cumulative_counts_equal_a_direct_count_per_bound(samples):
    hist = LatencyHistogram()
    for ns in samples:
        hist.observe_ns(ns)
    cumulative = hist.cumulative()
    assert [le for le, _ in cumulative] == [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
    for (_, n), bound in zip(cumulative, (*LATENCY_BUCKETS, float("inf")), strict=True):
        assert n == sum(1 for ns in samples if max(ns, 0) <= bound * 1e9)
    assert sum(hist.counts) == len(samples)
    assert hist.sum_ns == sum(max(ns, 0) for ns in samples)
