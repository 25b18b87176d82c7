"""The delivery-latency histogram, and how the stats JSON and the metrics give it."""

import json
import math

import pytest

from django_ws.edge.core.latency import BUCKETS, LatencyHistogram


def test_observations_fall_in_fixed_buckets_cumulative_on_export():
    h = LatencyHistogram()
    h.observe(0.0002)          # first bucket
    h.observe(0.003, times=3)  # a group message that reached 3 clients
    h.observe(60.0)            # past the last bound: +Inf
    h.observe(-0.001)          # the edge's clock behind the sender's: counted as 0
    assert h.count == 6 and h.negative == 1
    assert h.sum == pytest.approx(0.0002 + 0.009 + 60.0)
    buckets = h.cumulative()
    assert [le for le, _ in buckets] == [*BUCKETS, math.inf]
    assert buckets[0] == (0.0005, 2) and dict(buckets)[0.005] == 5 and buckets[-1] == (math.inf, 6)


def test_quantiles_interpolate_within_a_bucket_and_are_none_without_observations():
    h = LatencyHistogram()
    assert h.quantile(0.5) is None
    h.observe(0.0015, times=100)  # all in (0.001, 0.0025]
    assert 0.001 < h.quantile(0.5) < 0.0025 and h.quantile(0.5) < h.quantile(0.99) <= 0.0025
    h.observe(100.0, times=1000)
    assert h.quantile(0.99) == BUCKETS[-1], "a quantile in +Inf is the largest finite bound"


def test_figures_follow_the_stats_contract_with_infinity_as_null():
    h = LatencyHistogram()
    h.observe(0.004, times=2)
    figures = json.loads(json.dumps(h.figures(), allow_nan=False))
    assert figures["count"] == 2 and figures["sum_s"] == pytest.approx(0.008)
    assert figures["buckets"][-1] == [None, 2] and figures["buckets"][0] == [0.0005, 0]
    assert all(a[0] < b[0] for a, b in zip(figures["buckets"][:-2], figures["buckets"][1:-1]))
    assert {"p50_s", "p90_s", "p99_s"} <= figures.keys() and isinstance(figures["measured"], str)

