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
    assert hist.count == len(samples)
    assert hist.sum_ns == sum(max(ns, 0) for ns in samples)


def test_quantile_is_the_bucket_bound_holding_it_and_merge_adds():
    hist = LatencyHistogram()
    assert hist.quantile(0.5) is None
    for _ in range(98):
        hist.observe_ns(40_000)  # 40 µs: the 50 µs bucket
    hist.observe_ns(3_000_000)  # 3 ms: the 5 ms bucket
    hist.observe_ns(7_000_000_000)  # beyond every bound
    assert hist.quantile(0.5) == 0.000_05
    assert hist.quantile(0.99) == 0.005
    assert hist.quantile(1.0) == float("inf")
    other = LatencyHistogram()
    other.observe_ns(40_000)
    other.merge(hist)
    assert other.count == 101
    assert other.sum_ns == hist.sum_ns + 40_000
