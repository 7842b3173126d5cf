"""Simulated rollouts judged by the real gates, once per simulated second, as the runner does.

    .venv/bin/python benchmarks/gates.py [--rollouts N] [--seed S]

Each rollout: a 10 s baseline at weight 0, then the demo's steps 5/25/50/100% with 30 s
holds (extended while a gate is still collecting, up to 90 s, then failed closed),
at a probe rate of 200 rps. The original fails 0.5% of requests with a version and
times out 0.1% without one; latencies are log-normal around 1 ms. Scenarios: healthy
canaries (the false-alarm rate), canaries at 3x the original's error rate, canaries at
1.5x its latency, a hanging canary (every request times out, no version) and a canary
that gets no traffic. The new default gates (``canarylab.gates``, the runbook's
parameters, alpha 0.01 split with ``split_alpha``) and today's fixed-sample gates (kept
below as ``Legacy``, the gate logic of canarylab before issue 10, judged the same
way) see the same simulated streams. Prints a table and the load average.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, norm

from canarylab import gates as g

T0 = pd.Timestamp("2026-12-01T00:00:00Z")
RATE = 200
STEPS = (5, 25, 50, 100)
HOLD, MAX_HOLD, BASELINE_S = 30, 90, 10
P_ORIGINAL, P_UNVERSIONED = 0.005, 0.001
GATES = {  # the runbook's defaults
    "traffic_share": {"tolerance": 0.5},
    "max_error_rate": {"limit": 0.05, "min_requests": 50},
    "error_rate_comparison": {"min_difference": 0.005, "min_requests": 100},
    "latency_comparison": {"max_ratio": 1.2, "min_requests": 100},
}
ALPHA = 0.01


@dataclass(frozen=True)
class Scenario:
    name: str
    error_ratio: float = 1.0
    latency_ratio: float = 1.0
    hanging: bool = False
    share: float = 1.0


def simulate(
    rng: np.random.Generator, sc: Scenario, weights: list[int]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per-second samples and per-request results for one weight per second."""
    w = np.asarray(weights) / 100 * sc.share
    n_c = rng.binomial(RATE, w)
    n_o = RATE - n_c
    lost_o = rng.binomial(n_o, P_UNVERSIONED)
    f_o = rng.binomial(n_o - lost_o, P_ORIGINAL)
    f_c = rng.binomial(n_c, min(1.0, P_ORIGINAL * sc.error_ratio))
    lost_c = n_c if sc.hanging else np.zeros_like(n_c)
    if sc.hanging:
        f_c = np.zeros_like(n_c)
    secs = np.arange(len(weights))
    rows = []
    for ver, n, f, kind in (
        ("v2", n_c - lost_c, f_c, "http_errors"),
        ("v1", n_o - lost_o, f_o, "http_errors"),
        ("unknown", lost_c + lost_o, lost_c + lost_o, "timeouts"),
    ):
        rows.append(
            pd.DataFrame(
                {
                    "second": T0 + pd.to_timedelta(secs, unit="s"),
                    "version": ver,
                    "requests": n,
                    "ok": n - f,
                    "http_errors": f if kind == "http_errors" else 0,
                    "timeouts": f if kind == "timeouts" else 0,
                    "conn_errors": 0,
                    "p50_ms": 1.0,
                    "p95_ms": 2.0,
                    "p99_ms": 3.0,
                }
            )
        )
    samples = pd.concat(rows, ignore_index=True).sort_values(
        "second", kind="stable", ignore_index=True
    )
    # Per-request results of responses (failures have no latency that matters here).
    per_c, per_o = n_c - lost_c, n_o - lost_o
    sec_c, sec_o = np.repeat(secs, per_c), np.repeat(secs, per_o)
    lat_c = rng.lognormal(0.0, 0.5, sec_c.size) * sc.latency_ratio
    lat_o = rng.lognormal(0.0, 0.5, sec_o.size)
    t = np.concatenate([sec_c + rng.random(sec_c.size), sec_o + rng.random(sec_o.size)])
    order = np.argsort(t, kind="stable")
    err_c = np.zeros(sec_c.size, dtype=bool)
    for s in range(len(weights)):  # the second's failures are its first f_c responses
        err_c[np.searchsorted(sec_c, s) : np.searchsorted(sec_c, s) + f_c[s]] = True
    err_o = np.zeros(sec_o.size, dtype=bool)
    for s in range(len(weights)):
        err_o[np.searchsorted(sec_o, s) : np.searchsorted(sec_o, s) + f_o[s]] = True
    req = {
        "t": T0.timestamp() + t[order],
        "version": np.concatenate(
            [np.full(sec_c.size, "v2", object), np.full(sec_o.size, "v1", object)]
        )[order],
        "latency_ms": np.concatenate([lat_c, lat_o])[order],
        "error": np.where(np.concatenate([err_c, err_o])[order], "http_error", None),
    }
    return samples, req


def _requests(req: dict[str, np.ndarray], end: float) -> pd.DataFrame:
    k = int(np.searchsorted(req["t"], end))
    return pd.DataFrame(
        {
            "t": req["t"][:k],
            "version": req["version"][:k],
            "status": 200,
            "latency_ms": req["latency_ms"][:k],
            "error": req["error"][:k],
        }
    )


# -- today's gates (canarylab before issue 10), for comparison --------------------------


def legacy_verdicts(t: g.Traffic, window: g.Window, weight: int) -> str | None:
    """Today's default gates on the step's window: the failing gate's name, or None.

    max_error_rate 5% (min 50), error-rate z-test p < 0.01 and diff > 1 point (min 100),
    Mann-Whitney p < 0.01 and median ratio > 1.5 (min 100); ``unknown`` dropped from both
    sides; insufficient never fails; comparisons skipped at 100%.
    """
    c = g.side(t.since(window.since), ["v2"])
    o = g.side(t.since(window.since), ["v1"])
    if c.requests >= 50 and c.error_rate > 0.05:
        return "max-error-rate"
    if weight == 100:
        return None
    if min(c.requests, o.requests) >= 100:
        pooled = (c.failures + o.failures) / (c.requests + o.requests)
        if 0 < pooled < 1:
            se = math.sqrt(pooled * (1 - pooled) * (1 / c.requests + 1 / o.requests))
            p = float(norm.sf((c.error_rate - o.error_rate) / se))
            if p < 0.01 and c.error_rate - o.error_rate > 0.01:
                return "error-rate-comparison"
    a, b = c.latencies_ms or (), o.latencies_ms or ()
    if min(len(a), len(b)) >= 100:
        p = float(mannwhitneyu(a, b, alternative="greater").pvalue)
        if p < 0.01 and float(np.median(a)) / float(np.median(b)) > 1.5:
            return "latency-comparison"
    return None


# -- one rollout ------------------------------------------------------------------------


def rollout(rng: np.random.Generator, sc: Scenario, legacy: bool) -> tuple[float | None, str]:
    """Seconds from the first step to the first failure (None: promoted), and why."""
    weights = [0] * BASELINE_S + [w for w in STEPS for _ in range(MAX_HOLD)]
    samples, req = simulate(rng, sc, weights)
    share = g.split_alpha(ALPHA, len(STEPS), len(g.from_spec(GATES)))
    gates = g.from_spec(GATES, alpha=share)
    sec = samples["second"]
    base_end = T0 + pd.Timedelta(seconds=BASELINE_S)
    baseline = g.Baseline.from_traffic(g.Traffic(samples[sec < base_end]), base_end)
    elapsed = 0
    for i, weight in enumerate(STEPS):
        start = BASELINE_S + i * MAX_HOLD
        since = T0 + pd.Timedelta(seconds=start)
        window = g.Window("v2", "v1", since=since, weight=weight, baseline=baseline)
        step_gates = gates if weight < 100 else [x for x in gates if not g.compares_original(x)]
        for held in range(1, MAX_HOLD + 1):
            end = start + held
            t = g.Traffic(
                samples[sec < T0 + pd.Timedelta(seconds=end)], _requests(req, T0.timestamp() + end)
            )
            if legacy:
                failed = legacy_verdicts(t, window, weight)
                if failed:
                    return elapsed + held, failed
                if held >= HOLD:
                    break
                continue
            verdicts = g.judge_all(step_gates, t, window)
            bad = g.first_failure(verdicts)
            if bad is not None:
                return elapsed + held, bad.gate
            if held >= HOLD and all(v.outcome == "pass" for v in verdicts):
                break
        else:
            if not legacy:
                return elapsed + MAX_HOLD, "InsufficientEvidence"
        elapsed += held
    return None, ""


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--rollouts", type=int, default=1000, help="healthy rollouts (bad ones: a quarter)"
    )
    ap.add_argument("--seed", type=int, default=10)
    args = ap.parse_args()
    scenarios = [
        (Scenario("healthy"), args.rollouts),
        (Scenario("3x error rate", error_ratio=3), max(20, args.rollouts // 4)),
        (Scenario("1.5x latency", latency_ratio=1.5), max(20, args.rollouts // 4)),
        (Scenario("hanging (all timeouts)", hanging=True), 20),
        (Scenario("zero share", share=0.0), 20),
    ]
    t0 = time.perf_counter()
    print(
        f"{'scenario':24} {'gates':7} {'n':>5} {'rolled back':>12} {'95% CI':>17} {'median s':>9}  deciding gates"
    )
    for sc, n in scenarios:
        for legacy in (False, True):
            rng = np.random.default_rng(args.seed)  # the same streams for both
            times: list[float] = []
            why: dict[str, int] = {}
            for _ in range(n):
                when, gate = rollout(rng, sc, legacy)
                if when is not None:
                    times.append(when)
                    why[gate] = why.get(gate, 0) + 1
            lo, hi = wilson(len(times), n)
            med = f"{np.median(times):9.0f}" if times else f"{'-':>9}"
            top = ", ".join(f"{k} {v}" for k, v in sorted(why.items(), key=lambda kv: -kv[1]))
            print(
                f"{sc.name:24} {'legacy' if legacy else 'new':7} {n:5d} {len(times) / n:12.2%} "
                f"[{lo:6.2%}, {hi:6.2%}] {med}  {top}",
                flush=True,
            )
    print(
        f"alpha {ALPHA} total, per (step, gate) {g.split_alpha(ALPHA, len(STEPS), len(g.from_spec(GATES))):.3g}; "
        f"{time.perf_counter() - t0:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
