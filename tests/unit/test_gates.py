"""Gate statistics on synthetic traffic whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from canarylab import gates
from canarylab.gates import (
    Baseline,
    ErrorRateComparison,
    GateSpecError,
    LatencyComparison,
    MaxErrorRate,
    MaxP99Latency,
    Traffic,
    TrafficShare,
    Window,
)
from canarylab.gates import evidence as ev

T0 = pd.Timestamp("2026-11-27T12:00:00Z")


def samples(rows: list[tuple[int, str, int, int]], kind: str = "http_errors") -> pd.DataFrame:
    """(second offset, version, requests, failures) rows in the probe's schema."""
    frame = pd.DataFrame(
        {
            "second": [T0 + pd.Timedelta(seconds=s) for s, *_ in rows],
            "version": [v for _, v, *_ in rows],
            "requests": [n for *_, n, _ in rows],
            "ok": [n - e for *_, n, e in rows],
            "http_errors": 0,
            "timeouts": 0,
            "conn_errors": 0,
            "p50_ms": 1.0,
            "p95_ms": 2.0,
            "p99_ms": 3.0,
        }
    )
    frame[kind] = [e for *_, e in rows]
    return frame


def requests(version: str, latencies: np.ndarray, start: int = 0, per_s: int = 0) -> pd.DataFrame:
    n = len(latencies)
    per_s = per_s or max(n, 1)
    return pd.DataFrame(
        {
            "t": [T0 + pd.Timedelta(seconds=start + i / per_s) for i in range(n)],
            "version": [version] * n,
            "status": [200] * n,
            "latency_ms": latencies,
            "error": [None] * n,
        }
    )


def steady(seconds: int, canary: tuple[int, int], original: tuple[int, int]) -> pd.DataFrame:
    rows = [(s, "v2", *canary) for s in range(seconds)]
    return samples(rows + [(s, "v1", *original) for s in range(seconds)])


W = Window(canary="v2", original="v1")


# -- the maths --------------------------------------------------------------------


def test_bounds_are_where_the_tests_reject() -> None:
    lo, hi = ev.lower_bound(20, 100, 0.01), ev.upper_bound(20, 100, 0.01)
    assert 0.05 < lo < 0.2 < hi < 0.4
    assert math.exp(float(ev.log_e_above(20, 100, lo))) == pytest.approx(100, rel=0.01)
    assert math.exp(float(ev.log_e_below(20, 100, hi))) == pytest.approx(100, rel=0.01)
    assert ev.lower_bound(0, 100, 0.01) == 0.0
    assert ev.upper_bound(100, 100, 0.01) == 1.0


def test_e_processes_keep_alpha_under_continuous_monitoring() -> None:
    """Under H0, judged after every second for two minutes, false alarms stay ≤ alpha."""
    rng = np.random.default_rng(7)
    alpha, runs = 0.05, 400
    c = math.log(1 / alpha)
    split = above = 0
    for _ in range(runs):
        nc = rng.binomial(200, 0.25, 120)
        no = 200 - nc
        fc, fo = rng.binomial(nc, 0.02), rng.binomial(no, 0.02)
        split += bool((ev.log_e_split(fc, fo, nc / 200) >= c).any())
        above += bool((ev.log_e_above(np.cumsum(fc), np.cumsum(nc), 0.02) >= c).any())
    assert split / runs <= alpha
    assert above / runs <= alpha


def test_split_alpha_is_bonferroni_over_steps_and_gates() -> None:
    assert gates.split_alpha(0.01, 4, 5) == pytest.approx(0.0005)
    assert gates.split_alpha(0.01, 1, 0) == pytest.approx(0.01)
    with pytest.raises(GateSpecError, match="between 0 and 1"):
        gates.split_alpha(1.5, 4, 5)
    with pytest.raises(GateSpecError, match="at least one step"):
        gates.split_alpha(0.01, 0, 5)


# -- threshold gates ----------------------------------------------------------------


def test_max_error_rate_fails_on_its_lower_bound() -> None:
    v = MaxErrorRate(0.05).judge(Traffic(steady(10, (10, 3), (90, 0))), W)
    assert v.outcome == "fail"
    assert v.numbers["canary_requests"] == 100
    assert v.numbers["canary_failures"] == 30
    assert float(v.numbers["lower_bound"] or 0) > 0.05
    assert float(v.numbers["e_value"] or 0) >= float(v.numbers["threshold"] or math.inf)
    assert "lower" in v.reason


def test_max_error_rate_passes_on_its_upper_bound_and_waits_in_between() -> None:
    healthy = MaxErrorRate(0.05).judge(Traffic(steady(30, (10, 0), (190, 1))), W)
    assert healthy.outcome == "pass"
    assert float(healthy.numbers["upper_bound"] or 1) < 0.05
    # 0 failures in 100: the upper bound is still above 5%, and nothing says fail.
    unsure = MaxErrorRate(0.05).judge(Traffic(steady(10, (10, 0), (90, 0))), W)
    assert unsure.outcome == "insufficient"
    assert "still" in unsure.reason


def test_max_error_rate_needs_min_requests_to_pass_but_not_to_fail() -> None:
    few = Traffic(steady(2, (10, 0), (90, 0)))
    assert MaxErrorRate(0.5, min_requests=50).judge(few, W).outcome == "insufficient"
    bad = Traffic(steady(2, (10, 10), (90, 0)))
    assert MaxErrorRate(0.05, min_requests=50).judge(bad, W).outcome == "fail"


def test_only_traffic_since_the_step_began_is_judged() -> None:
    rows = [(s, "v2", 10, 5) for s in range(10)] + [(s, "v2", 10, 0) for s in range(10, 60)]
    traffic = Traffic(samples(rows))
    gate = MaxErrorRate(0.05)
    assert gate.judge(traffic, W).outcome == "fail"
    v = gate.judge(traffic, Window("v2", "v1", since=T0 + pd.Timedelta(seconds=10)))
    assert v.outcome == "pass"
    assert v.numbers["canary_requests"] == 500


def test_max_p99_counts_responses_slower_than_the_limit() -> None:
    lat = np.concatenate([np.full(900, 5.0), np.full(100, 500.0)])
    traffic = Traffic(samples([(0, "v2", 1000, 0)]), requests("v2", lat, per_s=100))
    v = MaxP99Latency(100).judge(traffic, W)
    assert v.outcome == "fail"
    assert v.numbers["slow_responses"] == 100
    assert float(v.numbers["canary_p99_ms"] or 0) > 100
    fast = Traffic(samples([(0, "v2", 1000, 0)]), requests("v2", np.full(1000, 5.0), per_s=100))
    assert MaxP99Latency(100).judge(fast, W).outcome == "pass"
    short = Traffic(samples([(0, "v2", 100, 0)]), requests("v2", np.full(100, 5.0)))
    assert MaxP99Latency(100).judge(short, W).outcome == "insufficient"  # 100 can't show <1%
    none = MaxP99Latency(100).judge(Traffic(samples([(0, "v2", 1000, 0)])), W)
    assert none.outcome == "insufficient"
    assert "per-request" in none.reason


def test_per_request_times_may_be_unix_seconds() -> None:
    r = pd.concat([requests("v2", np.full(10, 900.0)), requests("v2", np.full(600, 9.0), start=5)])
    r["t"] = r["t"].map(lambda ts: ts.timestamp())
    traffic = Traffic(samples([(5, "v2", 600, 0)]), r)
    later = Window("v2", "v1", since=T0 + pd.Timedelta(seconds=5))
    v = MaxP99Latency(100).judge(traffic, later)
    assert v.numbers["slow_responses"] == 0
    assert v.numbers["canary_responses"] == 600


# -- comparison gates ---------------------------------------------------------------


def test_error_rate_comparison_catches_a_20_percent_canary() -> None:
    v = ErrorRateComparison(alpha=0.01).judge(Traffic(steady(20, (5, 1), (95, 0))), W)
    assert v.outcome == "fail"
    assert v.numbers["canary_requests"] == 100
    assert v.numbers["canary_failures"] == 20
    assert v.numbers["original_error_rate"] == 0.0
    assert float(v.numbers["e_value"] or 0) >= float(v.numbers["threshold"] or math.inf)
    assert float(v.numbers["p_value"] or 1) < 0.01
    assert "e-value" in str(v)


def test_error_rate_comparison_passes_equal_rates_and_waits_for_requests() -> None:
    v = ErrorRateComparison().judge(Traffic(steady(10, (100, 1), (100, 1))), W)
    assert v.outcome == "pass"
    few = ErrorRateComparison(min_requests=100).judge(Traffic(steady(1, (50, 0), (50, 0))), W)
    assert few.outcome == "insufficient"


def test_a_significant_but_tiny_difference_passes() -> None:
    # 0.6% vs 0.1% over 100k each: overwhelming evidence, but below the minimum effect.
    traffic = Traffic(steady(100, (1000, 6), (1000, 1)))
    v = ErrorRateComparison(min_difference=0.01).judge(traffic, W)
    assert float(v.numbers["e_value"] or 0) > 1e6
    assert v.outcome == "pass"


def test_original_defaults_to_every_other_known_version() -> None:
    traffic = Traffic(samples([(0, "v1", 100, 0), (0, "unknown", 50, 0), (0, "v2", 100, 0)]))
    v = ErrorRateComparison(min_requests=10).judge(traffic, Window("v2"))
    assert v.numbers["original_requests"] == 100


def slower_canary(median_ms: float, factor: float) -> Traffic:
    rng = np.random.default_rng(1)
    frames = []
    for s in range(20):
        frames += [
            requests("v1", median_ms * rng.lognormal(0, 0.5, 90), start=s),
            requests("v2", median_ms * rng.lognormal(0, 0.5, 10) * factor, start=s),
        ]
    return Traffic(steady(20, (10, 0), (90, 0)), pd.concat(frames))


def test_latency_comparison_detects_a_slower_canary() -> None:
    v = LatencyComparison().judge(slower_canary(20.0, 2.0), W)
    assert v.outcome == "fail"
    assert v.numbers["canary_responses"] == 200
    assert float(v.numbers["canary_median_ms"] or 0) > 30


def test_latency_comparison_ignores_a_sub_millisecond_slowdown() -> None:
    """An idle canary process at 5% answers 0.8 ms where busy ones answer 0.4 ms."""
    v = LatencyComparison().judge(slower_canary(0.4, 2.0), W)
    assert float(v.numbers["e_value"] or 0) >= 1 / 0.01  # the difference is real...
    assert v.outcome == "pass"  # ...but under min_difference_ms
    assert "ms slower" in v.reason


def test_latency_comparison_passes_the_same_distribution() -> None:
    rng = np.random.default_rng(2)
    frames = []
    for s in range(20):
        frames += [requests(v, rng.normal(5, 1, 50), start=s) for v in ("v1", "v2")]
    v = LatencyComparison().judge(Traffic(steady(20, (50, 0), (50, 0)), pd.concat(frames)), W)
    assert v.outcome == "pass"


def test_latency_comparison_without_per_request_data_says_so() -> None:
    v = LatencyComparison().judge(Traffic(samples([(0, "v2", 500, 0)])), W)
    assert v.outcome == "insufficient"
    assert "per-request" in v.reason


def test_comparisons_accumulate_from_the_baseline_end() -> None:
    # Steps of 10 s each; from the baseline's end the comparison sees both.
    traffic = Traffic(steady(20, (50, 1), (50, 1)))
    step2 = Window("v2", "v1", since=T0 + pd.Timedelta(seconds=10))
    assert ErrorRateComparison().judge(traffic, step2).numbers["canary_requests"] == 500
    run = Window("v2", "v1", since=step2.since, baseline=Baseline(1000, 0, T0))
    assert ErrorRateComparison().judge(traffic, run).numbers["canary_requests"] == 1000


# -- attribution of failures without a version --------------------------------------


def test_a_hanging_canary_fails_the_error_rate_gates() -> None:
    # The canary's 10 requests a second all time out: no response carries its version.
    rows = [(s, "v1", 190, 0) for s in range(30)] + [(s, "unknown", 10, 10) for s in range(30)]
    traffic = Traffic(samples(rows, kind="timeouts"))
    window = Window("v2", "v1", since=T0, weight=5, baseline=Baseline(4000, 2, T0))
    rate = MaxErrorRate(0.05, alpha=0.0005).judge(traffic, window)
    assert rate.outcome == "fail"
    assert int(rate.numbers["attributed_failures"] or 0) > 200  # of 300, less the baseline's margin
    assert ErrorRateComparison(alpha=0.0005).judge(traffic, window).outcome == "fail"
    share = TrafficShare(alpha=0.0005).judge(traffic, window)
    assert share.outcome != "fail"  # its requests are found, as failures


def test_without_a_baseline_every_unversioned_failure_is_the_canarys() -> None:
    rows = [(0, "v1", 95, 0), (0, "v2", 5, 0), (0, "unknown", 3, 3)]
    v = MaxErrorRate(0.05, min_requests=1).judge(Traffic(samples(rows)), W)
    assert v.numbers["attributed_failures"] == 3
    assert v.numbers["canary_requests"] == 8


def test_an_original_timing_out_at_its_baseline_rate_does_not_blame_the_canary() -> None:
    # The original times out 0.5% of the time, before and during the step; the canary
    # is healthy. Attribution must put nothing (or next to nothing) on it.
    rng = np.random.default_rng(3)
    rows = []
    for s in range(60):
        timeouts = int(rng.binomial(200, 0.005))
        rows += [(s, "v1", 190 - timeouts, 0), (s, "v2", 10, 0), (s, "unknown", timeouts, timeouts)]
    traffic = Traffic(samples(rows, kind="timeouts"))
    window = Window("v2", "v1", since=T0, weight=5, baseline=Baseline(12_000, 60, T0))
    verdicts = gates.judge_all(
        gates.from_spec({"max_error_rate": 0.05, "error_rate_comparison": True}, alpha=0.0005),
        traffic,
        window,
    )
    assert [v.outcome for v in verdicts] == ["pass", "pass", "pass"]
    assert all(v.numbers.get("attributed_failures", 0) == 0 for v in verdicts)


def test_baseline_from_traffic_counts_unversioned_failures_before_until() -> None:
    rows = [(s, "v1", 100, 0) for s in range(10)] + [(s, "unknown", 2, 1) for s in range(10)]
    b = Baseline.from_traffic(Traffic(samples(rows, kind="timeouts")), T0 + pd.Timedelta(seconds=5))
    assert (b.requests, b.failures) == (510, 5)
    assert b.rate == pytest.approx(5 / 510)
    assert b.rate_upper(0.01) > b.rate
    everything = Baseline.from_traffic(Traffic(samples(rows, kind="timeouts")), None)
    assert everything.requests == 1020
    assert everything.until == T0 + pd.Timedelta(seconds=10)


# -- traffic share ------------------------------------------------------------------


def test_a_canary_without_traffic_fails_the_share_gate_quickly() -> None:
    traffic = Traffic(samples([(s, "v1", 200, 0) for s in range(6)]))
    window = Window("v2", "v1", since=T0, weight=25)
    v = TrafficShare(alpha=0.0005).judge(traffic, window)
    assert v.outcome == "fail"
    assert "NoCanaryTraffic" in v.reason
    assert v.numbers["problem"] == "NoCanaryTraffic"
    assert v.numbers["canary_share"] == 0.0


def test_a_canary_at_its_weight_passes_the_share_gate() -> None:
    traffic = Traffic(steady(10, (50, 0), (150, 0)))
    v = TrafficShare().judge(traffic, Window("v2", "v1", since=T0, weight=25))
    assert v.outcome == "pass"
    assert v.numbers["canary_share"] == pytest.approx(0.25)


def test_share_gate_needs_the_weight_and_settles_first() -> None:
    traffic = Traffic(samples([(s, "v1", 200, 0) for s in range(3)]))
    assert TrafficShare().judge(traffic, W).outcome == "insufficient"
    assert "weight" in TrafficShare().judge(traffic, W).reason
    early = TrafficShare().judge(traffic, Window("v2", "v1", since=T0, weight=25))
    assert early.outcome == "insufficient"  # the first seconds of a step are not judged


# -- gates from data -----------------------------------------------------------------


def test_gates_from_spec() -> None:
    made = gates.from_spec(
        {
            "max_error_rate": 0.05,
            "error_rate_comparison": {"alpha": 0.001},
            "latency_comparison": True,
        }
    )
    assert made == [
        TrafficShare(),
        MaxErrorRate(0.05),
        ErrorRateComparison(alpha=0.001),
        LatencyComparison(),
    ]
    with pytest.raises(GateSpecError, match="unknown gate 'max_errors'; known gates are"):
        gates.from_spec({"max_errors": 0.1})
    with pytest.raises(GateSpecError, match="error_rate_comparison"):
        gates.from_spec({"error_rate_comparison": {"alfa": 0.1}})


def test_from_spec_spreads_alpha_unless_a_gate_sets_its_own() -> None:
    made = gates.from_spec(
        {"max_error_rate": 0.05, "error_rate_comparison": {"alpha": 0.002}, "traffic_share": False},
        alpha=0.0005,
    )
    assert made == [MaxErrorRate(0.05, alpha=0.0005), ErrorRateComparison(alpha=0.002)]
    assert gates.from_spec({}) == [TrafficShare()]
    assert gates.from_spec({"traffic_share": {"tolerance": 0.2}}) == [TrafficShare(0.2)]


# -- how alpha is spent ---------------------------------------------------------------

DEFAULTS = {
    "traffic_share": {"tolerance": 0.5},
    "max_error_rate": {"limit": 0.05, "min_requests": 50},
    "error_rate_comparison": {"min_difference": 0.005, "min_requests": 100},
    "latency_comparison": {"max_ratio": 1.2, "min_requests": 100},
}


def test_alpha_levels_charge_whole_run_gates_once_and_add_up_to_alpha() -> None:
    levels = gates.alpha_levels(0.01, [DEFAULTS] * 4)
    per_step = (1 - gates.WHOLE_RUN_SHARE) * 0.01 / (4 * 2)
    assert levels["traffic_share"] == pytest.approx(per_step)
    assert levels["max_error_rate"] == pytest.approx(per_step)
    assert levels["error_rate_comparison"] == pytest.approx(gates.WHOLE_RUN_SHARE * 0.01 / 2)
    assert levels["latency_comparison"] == pytest.approx(gates.WHOLE_RUN_SHARE * 0.01 / 2)
    # Every (step, per-step gate) pair once, every whole-run gate once: exactly alpha.
    spent = 4 * (levels["traffic_share"] + levels["max_error_rate"]) + (
        levels["error_rate_comparison"] + levels["latency_comparison"]
    )
    assert spent == pytest.approx(0.01)
    made = gates.from_spec(DEFAULTS, alpha=levels)
    assert [g.alpha for g in made] == [  # type: ignore[attr-defined]
        levels["traffic_share"],
        levels["max_error_rate"],
        levels["error_rate_comparison"],
        levels["latency_comparison"],
    ]


def test_alpha_levels_give_everything_to_the_only_kind_present() -> None:
    only_steps = gates.alpha_levels(0.01, [{"max_error_rate": 0.05}] * 2)
    assert only_steps["max_error_rate"] == pytest.approx(0.01 / (2 * 2))  # with traffic_share
    only_whole = gates.alpha_levels(0.01, [{"traffic_share": False, "error_rate_comparison": True}])
    assert only_whole == {"error_rate_comparison": pytest.approx(0.01)}
    with pytest.raises(GateSpecError, match="unknown gate"):
        gates.alpha_levels(0.01, [{"max_errors": 1}])
    with pytest.raises(GateSpecError, match="between 0 and 1"):
        gates.alpha_levels(2.0, [DEFAULTS])


def test_a_whole_run_comparison_keeps_its_level_over_every_step() -> None:
    """One e-process from the baseline's end, looked at every second of three steps."""
    rng = np.random.default_rng(11)
    alpha, runs = 0.05, 400
    share = np.repeat([0.05, 0.25, 0.5], 90)
    alarms = 0
    for _ in range(runs):
        nc = rng.binomial(200, share)
        fc, fo = rng.binomial(nc, 0.005), rng.binomial(200 - nc, 0.005)
        alarms += bool((ev.log_e_split(fc, fo, nc / 200) >= math.log(1 / alpha)).any())
    assert alarms / runs <= alpha


def test_latency_grid_keeps_alpha_on_slow_events() -> None:
    """The sign test's events under H0: each second's slow half split at random."""
    rng = np.random.default_rng(12)
    alpha, runs = 0.05, 400
    alarms = 0
    for _ in range(runs):
        nc = rng.binomial(200, 0.05, 120)
        slow_c = rng.hypergeometric(nc, 200 - nc, 100)
        log_e = ev.log_e_split(slow_c, 100 - slow_c, nc / 200, ev.LATENCY_RATIO_GRID)
        alarms += bool((log_e >= math.log(1 / alpha)).any())
    assert alarms / runs <= alpha


def test_log_e_split_skips_seconds_without_events() -> None:
    rng = np.random.default_rng(13)
    ec, eo = rng.poisson(0.2, 300), rng.poisson(0.5, 300)
    s = rng.uniform(0.05, 0.5, 300)
    log_r = np.log(ev.RATIO_GRID)
    dense = np.cumsum(
        np.outer(ec, log_r)
        - np.outer(ec + eo, 1 + 0 * log_r) * np.log1p(np.outer(s, ev.RATIO_GRID - 1)),
        axis=0,
    )
    expected = np.log(np.exp(dense).mean(axis=1))
    assert ev.log_e_split(ec, eo, s) == pytest.approx(expected)
    assert (ev.log_e_split(np.zeros(5), np.zeros(5), np.full(5, 0.5)) == 0).all()


# -- the per-look reductions ------------------------------------------------------------


def test_per_second_reductions_match_the_dataframe_semantics() -> None:
    """Column-wise numpy reductions see exactly ``Traffic.since(start)``'s rows."""
    rows = [(s, v, 10 + s, s % 3) for s in range(12) for v in ("v2", "v1", "unknown", "v3")]
    frame = samples(rows)
    rng = np.random.default_rng(14)
    r = pd.concat(
        [requests(v, rng.lognormal(0, 1, 120), per_s=10) for v in ("v2", "v1", "v3")]
    ).sample(frac=1.0, random_state=1)
    r.loc[r.index[:7], "error"] = "timeout"
    traffic = Traffic(frame, r)
    for start in (None, T0 + pd.Timedelta(seconds=4), T0 + pd.Timedelta(seconds=4.5)):
        for window in (Window("v2", "v1"), Window("v2")):
            ps = gates.window.per_second(traffic, window, start)
            since = traffic.since(start)
            s = since.samples
            assert ps.second.size == s["second"].nunique()
            canary = s[s["version"] == "v2"]
            assert ps.canary_requests.sum() == canary["requests"].sum()
            assert ps.canary_failures.sum() == canary["http_errors"].sum()
            other = (
                s[~s["version"].isin(["v2", "unknown"])]
                if window.original is None
                else (s[s["version"] == "v1"])
            )
            assert ps.original_requests.sum() == other["requests"].sum()
            assert ps.unknown_requests.sum() == s[s["version"] == "unknown"]["requests"].sum()
            resp = gates.window.responses(traffic, window, start)
            assert resp is not None
            rq = since.requests
            assert rq is not None
            ok = rq[rq["error"].isna()]
            assert resp.canary.sum() == (ok["version"] == "v2").sum()
            assert sorted(resp.latency_ms[resp.canary]) == sorted(
                ok[ok["version"] == "v2"]["latency_ms"]
            )


def test_median_per_second_matches_a_full_sort() -> None:
    from canarylab.gates.comparison import _median_per_second

    rng = np.random.default_rng(15)
    for trial in range(100):
        n = int(rng.integers(2, 400))
        sec, lat = np.sort(rng.integers(0, 20, n)), rng.lognormal(0, 1, n)
        if trial % 2:  # not in time order: the general path
            p = rng.permutation(n)
            sec, lat = sec[p], lat[p]
        group, size, median = _median_per_second(sec, lat)
        uniq = np.unique(sec)
        assert np.array_equal(uniq[group], sec)
        for i, x in enumerate(uniq):
            assert median[i] == np.sort(lat[sec == x])[(size[i] - 1) // 2]
