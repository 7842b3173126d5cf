"""Simulated rollouts judged by the real gates, once per simulated second, as the runner does.

    .venv/bin/python benchmarks/gates.py [--rollouts N] [--seed S] [--workers W]

Each rollout: a 10 s baseline at weight 0, then the demo's steps 5/25/50/100% with 30 s
holds (extended while a gate is still collecting, up to 90 s, then failed closed),
at a probe rate of 200 rps. The original fails 0.5% of requests with a version and
times out 0.1% without one; latencies are log-normal around 10 ms (the latency
comparison ignores a median less than ``min_difference_ms`` = 2 ms slower, so a 1.5x
canary must be more than that to count). Scenarios: healthy
canaries (the false-alarm rate), canaries at 3x the original's error rate, canaries at
1.5x its latency, a hanging canary (every request times out, no version) and a canary
that gets no traffic. The new default gates (``canarylab.gates``, the runbook's
parameters, alpha 0.01 spent with ``alpha_levels``; ``--bonferroni`` for the plain
``split_alpha``) and today's fixed-sample gates (kept below as ``Legacy``, the gate
logic of canarylab before issue 10, judged the same way) see the same simulated
streams: rollout ``i`` of a scenario draws from ``default_rng([seed, scenario, i])``,
whatever the number of worker processes. Each look hands the gates a fresh
``Traffic`` of everything up to that second (row slices of the whole run's frames),
as the probe feed does. Prints a table, the cost of a look, the run's duration, a
lower bound no valid test can beat, and the load average.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, norm, poisson

from canarylab import gates as g

T0 = pd.Timestamp("2026-12-01T00:00:00Z")
RATE = 200
STEPS = (5, 25, 50, 100)
HOLD, MAX_HOLD, BASELINE_S = 30, 90, 10
P_ORIGINAL, P_UNVERSIONED = 0.005, 0.001
LATENCY_MS = 10.0  # median latency of the original
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
    lat_c = LATENCY_MS * rng.lognormal(0.0, 0.5, sec_c.size) * sc.latency_ratio
    lat_o = LATENCY_MS * rng.lognormal(0.0, 0.5, sec_o.size)
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


def frames(samples: pd.DataFrame, req: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The whole run's per-request frame (the probe's schema) next to its samples."""
    requests = pd.DataFrame(
        {
            "t": req["t"],
            "version": req["version"],
            "status": 200,
            "latency_ms": req["latency_ms"],
            "error": req["error"],
        }
    )
    return samples, requests


class Snapshots:
    """What the probe feed would return at each second: everything up to it."""

    def __init__(self, samples: pd.DataFrame, requests: pd.DataFrame) -> None:
        self.samples, self.requests = samples, requests
        self._sec = g.window.unix_seconds(samples["second"])
        self._t = requests["t"].to_numpy(dtype=np.float64)

    def at(self, end: int) -> g.Traffic:
        """The traffic of every second before ``end`` (seconds since T0)."""
        rows = int(np.searchsorted(self._sec, T0.timestamp() + end, side="left"))
        k = int(np.searchsorted(self._t, T0.timestamp() + end, side="left"))
        return g.Traffic(self.samples.iloc[:rows], self.requests.iloc[:k])


# -- today's gates (canarylab before issue 10), for comparison --------------------------


@dataclass(frozen=True)
class LegacyStep:
    """One step's labelled counts per second and responses, for today's gates."""

    cn: np.ndarray
    cf: np.ndarray
    on: np.ndarray
    of: np.ndarray
    t: np.ndarray
    lat: np.ndarray
    canary: np.ndarray
    original: np.ndarray


def legacy_inputs(samples: pd.DataFrame, requests: pd.DataFrame) -> LegacyStep:
    """The run's per-second labelled counts (second index since T0) and responses."""
    sec = (g.window.unix_seconds(samples["second"]) - T0.timestamp()).astype(np.int64)
    ver = samples["version"].to_numpy(dtype=object)
    n = samples["requests"].to_numpy(dtype=np.int64)
    f = sum(samples[c].to_numpy(dtype=np.int64) for c in g.FAILURE_COLUMNS)
    m = int(sec.max()) + 1

    def count(values: np.ndarray, version: str) -> np.ndarray:
        return np.bincount(sec, weights=values * (ver == version), minlength=m)

    ok = requests["error"].isna().to_numpy() & requests["latency_ms"].notna().to_numpy()
    rv = requests["version"].to_numpy(dtype=object)
    return LegacyStep(
        count(n, "v2"),
        count(np.asarray(f), "v2"),
        count(n, "v1"),
        count(np.asarray(f), "v1"),
        requests["t"].to_numpy(dtype=np.float64) - T0.timestamp(),
        requests["latency_ms"].to_numpy(dtype=np.float64),
        ok & (rv == "v2"),
        ok & (rv == "v1"),
    )


def legacy_step(run: LegacyStep, start: int, weight: int) -> tuple[int, str] | None:
    """Today's default gates on one step's window, judged after each of its seconds.

    max_error_rate 5% (min 50), error-rate z-test p < 0.01 and diff > 1 point (min 100),
    Mann-Whitney p < 0.01 and median ratio > 1.5 (min 100); ``unknown`` dropped from both
    sides; insufficient never fails; comparisons skipped at 100%. Returns the look
    (seconds held) and the failing gate's name, or None after the hold.
    """
    sl = slice(start, start + HOLD)
    cn, cf = np.cumsum(run.cn[sl]), np.cumsum(run.cf[sl])
    on, of = np.cumsum(run.on[sl]), np.cumsum(run.of[sl])
    with np.errstate(divide="ignore", invalid="ignore"):
        rc, ro = cf / cn, of / on
        over = (cn >= 50) & (rc > 0.05)
        pooled = (cf + of) / (cn + on)
        se = np.sqrt(pooled * (1 - pooled) * (1 / cn + 1 / on))
        pz = norm.sf((rc - ro) / se)
    z = (np.minimum(cn, on) >= 100) & (pooled > 0) & (pooled < 1) & (pz < 0.01) & (rc - ro > 0.01)
    lo, hi = np.searchsorted(run.t, [start, start + HOLD])
    t, lat = run.t[lo:hi], run.lat[lo:hi]
    can, orig = run.canary[lo:hi], run.original[lo:hi]
    for h in range(1, HOLD + 1):
        if over[h - 1]:
            return h, "max-error-rate"
        if weight == 100:
            continue
        if z[h - 1]:
            return h, "error-rate-comparison"
        k = int(np.searchsorted(t, start + h))
        a, b = lat[:k][can[:k]], lat[:k][orig[:k]]
        if min(a.size, b.size) >= 100:
            p = float(mannwhitneyu(a, b, alternative="greater").pvalue)
            if p < 0.01 and float(np.median(a)) / float(np.median(b)) > 1.5:
                return h, "latency-comparison"
    return None


# -- one rollout ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    new_s: float | None
    """Seconds from the first step to the first failure (None: promoted)."""
    new_gate: str
    legacy_s: float | None
    legacy_gate: str
    looks: int
    """Looks of the new gates, and the seconds they took."""
    look_s: float


def gate_set(bonferroni: bool) -> list[g.Gate]:
    specs = [GATES] * len(STEPS)
    if bonferroni:
        return g.from_spec(GATES, alpha=g.split_alpha(ALPHA, len(STEPS), len(g.from_spec(GATES))))
    return g.from_spec(GATES, alpha=g.alpha_levels(ALPHA, specs))


def rollout(sc: Scenario, seed: list[int], bonferroni: bool = False) -> Result:
    """One simulated stream, judged by the new gates and by today's."""
    rng = np.random.default_rng(seed)
    weights = [0] * BASELINE_S + [w for w in STEPS for _ in range(MAX_HOLD)]
    samples, requests = frames(*simulate(rng, sc, weights))
    snaps = Snapshots(samples, requests)
    gates = gate_set(bonferroni)
    base_end = T0 + pd.Timedelta(seconds=BASELINE_S)
    baseline = g.Baseline.from_traffic(snaps.at(BASELINE_S), base_end)
    # The new gates, as the runner judges them.
    new_s: float | None = None
    new_gate, elapsed, looks, spent = "", 0, 0, 0.0
    for i, weight in enumerate(STEPS):
        start = BASELINE_S + i * MAX_HOLD
        since = T0 + pd.Timedelta(seconds=start)
        window = g.Window("v2", "v1", since=since, weight=weight, baseline=baseline)
        step_gates = gates if weight < 100 else [x for x in gates if not g.compares_original(x)]
        for held in range(1, MAX_HOLD + 1):
            traffic = snaps.at(start + held)
            t0 = time.perf_counter()
            verdicts = g.judge_all(step_gates, traffic, window)
            spent += time.perf_counter() - t0
            looks += 1
            bad = g.first_failure(verdicts)
            if bad is not None:
                new_s, new_gate = elapsed + held, bad.gate
                break
            if held >= HOLD and all(v.outcome == "pass" for v in verdicts):
                break
        else:
            new_s, new_gate = elapsed + MAX_HOLD, "InsufficientEvidence"
        if new_s is not None:
            break
        elapsed += held
    # Today's gates on the same stream: a step is its 30 s hold, never extended.
    legacy_s: float | None = None
    legacy_gate = ""
    run = legacy_inputs(samples, requests)
    for i, weight in enumerate(STEPS):
        hit = legacy_step(run, BASELINE_S + i * MAX_HOLD, weight)
        if hit is not None:
            legacy_s, legacy_gate = i * HOLD + hit[0], hit[1]
            break
    return Result(new_s, new_gate, legacy_s, legacy_gate, looks, spent)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def fastest_possible(ratio: float, alpha: float) -> int:
    """A lower bound on the median time to detect an error-rate ``ratio`` canary.

    Any test that rolls back by second ``t`` with probability ≥ 1/2 while keeping false
    alarms ≤ ``alpha`` is a level-``alpha`` test on the data up to ``t``; none is more
    powerful than the Neyman-Pearson test that even *knows* both error rates (a
    randomised cut on the canary's failure count, Poisson at the expected canary
    requests of the demo's steps). The answer is the first ``t`` where that test's power
    reaches 1/2: no anytime-valid gate can have a smaller median.
    """
    weights = [w for w in STEPS for _ in range(HOLD)]
    lam0 = np.cumsum(np.asarray(weights) / 100 * RATE * (1 - P_UNVERSIONED) * P_ORIGINAL)
    for t, l0 in enumerate(lam0, start=1):
        k = int(poisson.isf(alpha, l0)) + 1  # smallest k with P0(X >= k) <= alpha
        while k > 0 and poisson.sf(k - 2, l0) <= alpha:
            k -= 1
        tail0 = float(poisson.sf(k - 1, l0))  # P0(X >= k)
        at0 = float(poisson.pmf(k - 1, l0))  # P0(X = k - 1): randomised
        gamma = (alpha - tail0) / at0 if at0 > 0 else 0.0
        l1 = l0 * ratio
        power = float(poisson.sf(k - 1, l1)) + gamma * float(poisson.pmf(k - 1, l1))
        if power >= 0.5:
            return t
    return len(weights) + 1


def _run(task: tuple[int, Scenario, int, int, bool]) -> tuple[int, Result]:
    index, sc, seed, i, bonferroni = task
    return index, rollout(sc, [seed, index, i], bonferroni)


def _tasks(
    scenarios: list[tuple[Scenario, int]], seed: int, bonferroni: bool
) -> Iterator[tuple[int, Scenario, int, int, bool]]:
    for index, (sc, n) in enumerate(scenarios):
        for i in range(n):
            yield index, sc, seed, i, bonferroni


def _progress(results: list[list[Result]], t0: float) -> None:
    done = sum(len(rs) for rs in results)
    if done % 100 == 0:
        print(f"  {done} rollouts, {time.perf_counter() - t0:.0f} s, load {_load()}", flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument(
        "--rollouts", type=int, default=1000, help="healthy rollouts (3x and 1.5x: a quarter)"
    )
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="processes (2: this machine's cores)")
    ap.add_argument(
        "--bonferroni",
        action="store_true",
        help="spend alpha as split_alpha does (every step and gate alike) instead of alpha_levels",
    )
    args = ap.parse_args()
    scenarios = [
        (Scenario("healthy"), args.rollouts),
        (Scenario("3x error rate", error_ratio=3), max(20, args.rollouts // 4)),
        (Scenario("1.5x latency", latency_ratio=1.5), max(20, args.rollouts // 4)),
        (Scenario("hanging (all timeouts)", hanging=True), 20),
        (Scenario("zero share", share=0.0), 20),
    ]
    gates = gate_set(args.bonferroni)
    levels = ", ".join(f"{x.name} {getattr(x, 'alpha', math.nan):.3g}" for x in gates)
    print(f"load average at start {_load()}; {args.workers} worker(s); levels: {levels}")
    t0 = time.perf_counter()
    results: list[list[Result]] = [[] for _ in scenarios]
    tasks = _tasks(scenarios, args.seed, args.bonferroni)
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            for index, r in pool.imap_unordered(_run, tasks, chunksize=4):
                results[index].append(r)
                _progress(results, t0)
    else:
        for index, r in map(_run, tasks):
            results[index].append(r)
            _progress(results, t0)
    duration = time.perf_counter() - t0
    print(
        f"{'scenario':24} {'gates':7} {'n':>5} {'rolled back':>12} {'95% CI':>17} "
        f"{'median s':>9} {'p90 s':>6}  deciding gates"
    )
    for (sc, n), rs in zip(scenarios, results, strict=True):
        for legacy in (False, True):
            got = [(r.legacy_s, r.legacy_gate) if legacy else (r.new_s, r.new_gate) for r in rs]
            times = [float(s) for s, _ in got if s is not None]
            why: dict[str, int] = {}
            for s_, gate in got:
                if s_ is not None:
                    why[gate] = why.get(gate, 0) + 1
            lo, hi = wilson(len(times), n)
            med = f"{np.median(times):9.0f}" if times else f"{'-':>9}"
            p90 = f"{np.percentile(times, 90):6.0f}" if times else f"{'-':>6}"
            top = ", ".join(f"{k} {v}" for k, v in sorted(why.items(), key=lambda kv: -kv[1]))
            print(
                f"{sc.name:24} {'legacy' if legacy else 'new':7} {n:5d} {len(times) / n:12.2%} "
                f"[{lo:6.2%}, {hi:6.2%}] {med} {p90}  {top}",
                flush=True,
            )
    looks = sum(r.looks for rs in results for r in rs)
    spent = sum(r.look_s for rs in results for r in rs)
    print(
        f"new gates: {looks} looks, {spent / max(looks, 1) * 1e3:.2f} ms per look (all gates "
        f"of a step on a fresh snapshot), {spent:.0f} s of {duration:.0f} s"
    )
    print(
        f"fastest possible median for the 3x canary at total alpha {ALPHA} (Neyman-Pearson, "
        f"both rates known): {fastest_possible(3.0, ALPHA)} s"
    )
    print(
        f"alpha {ALPHA} total ({'split_alpha' if args.bonferroni else 'alpha_levels'}); "
        f"{duration:.0f} s; load average at end {_load()}"
    )


if __name__ == "__main__":
    main()
