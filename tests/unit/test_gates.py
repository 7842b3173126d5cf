"""Gate statistics on synthetic traffic whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from canarylab import gates
from canarylab.gates import (
    ErrorRateComparison,
    GateSpecError,
    LatencyComparison,
    MaxErrorRate,
    MaxP99Latency,
    Traffic,
    Window,
)

T0 = pd.Timestamp("2026-11-27T12:00:00Z")


def samples(rows: list[tuple[int, str, int, int]]) -> pd.DataFrame:
    """(second offset, version, requests, http_errors) rows in the probe's schema."""
    return pd.DataFrame(
        {
            "second": [T0 + pd.Timedelta(seconds=s) for s, *_ in rows],
            "version": [v for _, v, *_ in rows],
            "requests": [n for *_, n, _ in rows],
            "ok": [n - e for *_, n, e in rows],
            "http_errors": [e for *_, e in rows],
            "timeouts": [0] * len(rows),
            "conn_errors": [0] * len(rows),
            "p50_ms": [1.0] * len(rows),
            "p95_ms": [2.0] * len(rows),
            "p99_ms": [3.0] * len(rows),
        }
    )


def requests(version: str, latencies: np.ndarray, start: int = 0) -> pd.DataFrame:
    n = len(latencies)
    return pd.DataFrame(
        {
            "t": [T0 + pd.Timedelta(seconds=start + i / max(n, 1)) for i in range(n)],
            "version": [version] * n,
            "status": [200] * n,
            "latency_ms": latencies,
            "error": [None] * n,
        }
    )


W = Window(canary="v2", original="v1")


def test_two_proportion_pvalue_matches_a_hand_computed_z() -> None:
    # 30/1000 vs 10/1000: pooled 0.02, se = sqrt(.02*.98*.002) = 0.0062610, z = 3.1944
    p = gates.two_proportion_pvalue(30, 1000, 10, 1000)
    assert p == pytest.approx(0.000700, abs=2e-5)


def test_two_proportion_without_any_failure_is_never_significant() -> None:
    assert gates.two_proportion_pvalue(0, 500, 0, 500) == 1.0
    assert math.isnan(gates.two_proportion_pvalue(0, 0, 0, 10))


def test_error_rate_comparison_catches_a_20_percent_canary() -> None:
    traffic = Traffic(
        samples([(s, "v1", 95, 0) for s in range(10)] + [(s, "v2", 5, 1) for s in range(10)])
    )
    v = ErrorRateComparison(alpha=0.01, min_requests=40).judge(traffic, W)
    assert v.outcome == "fail"
    assert v.numbers["canary_requests"] == 50
    assert v.numbers["canary_failures"] == 10
    assert v.numbers["canary_error_rate"] == pytest.approx(0.2)
    assert v.numbers["original_error_rate"] == 0.0
    assert float(v.numbers["p_value"] or 1) < 1e-10
    assert "p-value" in str(v)
    assert "error-rate-comparison" in str(v)


def test_error_rate_comparison_passes_equal_rates() -> None:
    traffic = Traffic(samples([(0, "v1", 1000, 10), (0, "v2", 1000, 11)]))
    v = ErrorRateComparison().judge(traffic, W)
    assert v.outcome == "pass"
    assert 0.3 < float(v.numbers["p_value"] or 0) < 0.6


def test_a_significant_but_tiny_difference_passes() -> None:
    # 0.6% vs 0.1% over 100k: hugely significant, but below the 1 point minimum effect.
    traffic = Traffic(samples([(0, "v1", 100_000, 100), (0, "v2", 100_000, 600)]))
    v = ErrorRateComparison(min_difference=0.01).judge(traffic, W)
    assert float(v.numbers["p_value"] or 1) < 1e-6
    assert v.outcome == "pass"


def test_too_few_requests_is_insufficient_not_fail() -> None:
    traffic = Traffic(samples([(0, "v1", 500, 0), (0, "v2", 20, 10)]))
    assert ErrorRateComparison(min_requests=100).judge(traffic, W).outcome == "insufficient"
    assert MaxErrorRate(0.05, min_requests=50).judge(traffic, W).outcome == "insufficient"
    assert MaxErrorRate(0.05, min_requests=10).judge(traffic, W).outcome == "fail"


def test_only_traffic_since_the_step_began_is_judged() -> None:
    # A bad first 10 s (previous step), then clean traffic.
    rows = [(s, "v2", 10, 5) for s in range(10)] + [(s, "v2", 10, 0) for s in range(10, 20)]
    traffic = Traffic(samples(rows))
    gate = MaxErrorRate(0.01, min_requests=50)
    assert gate.judge(traffic, W).outcome == "fail"
    later = Window("v2", "v1", since=T0 + pd.Timedelta(seconds=10))
    v = gate.judge(traffic, later)
    assert v.outcome == "pass"
    assert v.numbers["canary_requests"] == 100


def test_max_error_rate_counts_every_failure_kind() -> None:
    s = samples([(0, "v2", 100, 1)])
    s["timeouts"] = 2
    s["conn_errors"] = 3
    v = MaxErrorRate(0.05, min_requests=10).judge(Traffic(s), W)
    assert v.numbers["canary_failures"] == 6
    assert v.outcome == "fail"


def test_latency_comparison_detects_a_slower_canary() -> None:
    rng = np.random.default_rng(1)
    r = pd.concat(
        [requests("v1", rng.exponential(10, 400)), requests("v2", rng.exponential(10, 200) + 20)]
    )
    traffic = Traffic(samples([(0, "v1", 400, 0), (0, "v2", 200, 0)]), r)
    v = LatencyComparison(alpha=0.01).judge(traffic, W)
    assert v.outcome == "fail"
    assert float(v.numbers["p_value"] or 1) < 1e-10
    assert v.numbers["canary_responses"] == 200


def test_latency_comparison_passes_same_distribution() -> None:
    rng = np.random.default_rng(2)
    r = pd.concat([requests("v1", rng.normal(5, 1, 500)), requests("v2", rng.normal(5, 1, 500))])
    traffic = Traffic(samples([(0, "v1", 500, 0), (0, "v2", 500, 0)]), r)
    v = LatencyComparison(alpha=0.01).judge(traffic, W)
    assert v.outcome == "pass"


def test_latency_comparison_pvalue_matches_scipy_on_a_known_case() -> None:
    # Complete separation, 3 vs 3: U = 9, exact one-sided p = 1/20.
    r = pd.concat(
        [requests("v1", np.array([1.0, 2.0, 3.0])), requests("v2", np.array([4.0, 5.0, 6.0]))]
    )
    traffic = Traffic(samples([(0, "v1", 3, 0), (0, "v2", 3, 0)]), r)
    v = LatencyComparison(alpha=0.1, min_requests=3).judge(traffic, W)
    assert v.numbers["p_value"] == pytest.approx(0.05)
    assert v.outcome == "fail"


def test_latency_comparison_without_per_request_data_says_so() -> None:
    v = LatencyComparison().judge(Traffic(samples([(0, "v2", 500, 0)])), W)
    assert v.outcome == "insufficient"
    assert "per-request" in v.reason


def test_max_p99_from_requests_and_from_samples() -> None:
    lat = np.concatenate([np.full(980, 5.0), np.full(20, 500.0)])
    traffic = Traffic(samples([(0, "v2", 1000, 0)]), requests("v2", lat))
    v = MaxP99Latency(100).judge(traffic, W)
    assert v.outcome == "fail"
    assert float(v.numbers["canary_p99_ms"] or 0) > 100
    only_samples = MaxP99Latency(100).judge(Traffic(samples([(0, "v2", 1000, 0)])), W)
    assert only_samples.outcome == "pass"
    assert only_samples.numbers["canary_p99_ms"] == 3.0


def test_original_defaults_to_every_other_known_version() -> None:
    traffic = Traffic(samples([(0, "v1", 100, 0), (0, "unknown", 50, 50), (0, "v2", 100, 0)]))
    v = ErrorRateComparison(min_requests=10).judge(traffic, Window("v2"))
    assert v.numbers["original_requests"] == 100


def test_gates_from_spec() -> None:
    made = gates.from_spec(
        {
            "max_error_rate": 0.05,
            "error_rate_comparison": {"alpha": 0.001},
            "latency_comparison": True,
        }
    )
    assert made == [MaxErrorRate(0.05), ErrorRateComparison(alpha=0.001), LatencyComparison()]
    with pytest.raises(GateSpecError, match="unknown gate 'max_errors'; known gates are"):
        gates.from_spec({"max_errors": 0.1})
    with pytest.raises(GateSpecError, match="error_rate_comparison"):
        gates.from_spec({"error_rate_comparison": {"alfa": 0.1}})


def test_per_request_times_may_be_unix_seconds() -> None:
    r = pd.concat([requests("v2", np.full(10, 1.0)), requests("v2", np.full(10, 9.0), start=5)])
    r["t"] = r["t"].map(lambda ts: ts.timestamp())
    traffic = Traffic(samples([(5, "v2", 10, 0)]), r)
    later = Window("v2", "v1", since=T0 + pd.Timedelta(seconds=5))
    assert MaxP99Latency(100, min_requests=5).judge(traffic, later).numbers["canary_p99_ms"] == 9.0


def test_requests_and_samples_share_the_step_boundary() -> None:
    # A step that began mid-second: that second's bucket and its requests are both left out.
    r = pd.concat(
        [requests("v2", np.full(10, 500.0), start=4), requests("v2", np.full(10, 5.0), start=5)]
    )
    traffic = Traffic(samples([(4, "v2", 10, 0), (5, "v2", 10, 0)]), r)
    mid = Window("v2", "v1", since=T0 + pd.Timedelta(seconds=4.5))
    v = MaxP99Latency(100, min_requests=5).judge(traffic, mid)
    assert v.numbers["canary_requests"] == 10
    assert v.numbers["canary_p99_ms"] == 5.0
    assert v.outcome == "pass"
