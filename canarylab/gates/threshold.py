"""Threshold gates: the canary on its own, against a fixed limit, on confidence bounds.

A threshold gate keeps two anytime-valid tests of one proportion (failures among
requests, or responses slower than a limit among responses) running at once:

- **fail** when the lower confidence bound of the proportion is above the limit (the
  test of "proportion ≤ limit" reached ``1/alpha``; a false alarm has probability at
  most ``alpha`` however often it is judged);
- **pass** when the upper confidence bound, at the separate level ``pass_alpha``, is
  below it and at least ``min_requests`` were seen (passing a canary that is really at
  or above the limit has probability at most ``pass_alpha``);
- **insufficient** in between: still collecting.

The limit applies at every weight, so these gates judge the current step only.

This module must never do I/O or read a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .evidence import log_e_above, log_e_below, lower_bound, upper_bound
from .verdict import Outcome, Verdict
from .window import ATTRIBUTION_SHARE, Traffic, Window, responses, with_attribution


@dataclass(frozen=True)
class _Bounded:
    """What the two tests said about one proportion."""

    count: int
    n: int
    e_fail: float
    e_pass: float
    lower: float
    upper: float
    outcome: Outcome


def _judge_proportion(
    counts: np.ndarray,
    totals: np.ndarray,
    limit: float,
    alpha: float,
    pass_alpha: float,
    min_n: int,
) -> _Bounded:
    """The fail test over every prefix (its running maximum), the pass test now."""
    count = int(counts[-1]) if counts.size else 0
    n = int(totals[-1]) if totals.size else 0
    log_fail = float(np.max(log_e_above(counts, totals, limit))) if counts.size else 0.0
    log_pass = float(log_e_below(count, n, limit)) if n else 0.0
    if log_fail >= math.log(1 / alpha):
        outcome: Outcome = "fail"
    elif n >= min_n and log_pass >= math.log(1 / pass_alpha):
        outcome = "pass"
    else:
        outcome = "insufficient"
    return _Bounded(
        count,
        n,
        math.exp(min(log_fail, 700.0)),
        math.exp(min(log_pass, 700.0)),
        lower_bound(count, n, alpha),
        upper_bound(count, n, pass_alpha),
        outcome,
    )


def _e_numbers(b: _Bounded, alpha: float, pass_alpha: float) -> dict[str, float | int | str | None]:
    return {
        "lower_bound": b.lower,
        "upper_bound": b.upper,
        "e_value": b.e_fail,
        "threshold": 1 / alpha,
        "pass_e_value": b.e_pass,
        "pass_threshold": 1 / pass_alpha,
        "alpha": alpha,
        "pass_alpha": pass_alpha,
    }


def _why(b: _Bounded, what: str, limit: str, need: int, alpha: float, pass_alpha: float) -> str:
    if b.outcome == "fail":
        return (
            f"{what}: its lower {1 - alpha:.4%} bound {b.lower:.3%} exceeds the limit {limit} "
            f"(e-value {b.e_fail:.3g} ≥ {1 / alpha:.3g})"
        )
    if b.outcome == "pass":
        return (
            f"{what}: its upper {1 - pass_alpha:.2%} bound {b.upper:.3%} is within the limit "
            f"{limit}"
        )
    if b.n < need:
        return f"{what}: only {b.n} since the step began; need {need} (still collecting)"
    return (
        f"{what}: bounds {b.lower:.3%} to {b.upper:.3%} still straddle the limit {limit} "
        "(still collecting)"
    )


@dataclass(frozen=True)
class MaxErrorRate:
    """The canary's error rate (attributed unversioned failures included) ≤ ``limit``."""

    limit: float
    min_requests: int = 50
    """Requests needed before the gate may pass (it may fail earlier)."""
    alpha: float = 0.01
    """False-alarm level of the fail test (a share of the rollout's alpha)."""
    pass_alpha: float = 0.01
    """Level of the pass test: the chance of passing a canary at or above the limit."""
    name: str = "max-error-rate"

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        counts, extra = with_attribution(traffic, window, window.since, self.alpha)
        n = np.cumsum(counts.canary_requests + extra)
        f = np.cumsum(counts.canary_failures + extra)
        test_alpha = self.alpha * (1 - ATTRIBUTION_SHARE)
        b = _judge_proportion(f, n, self.limit, test_alpha, self.pass_alpha, self.min_requests)
        numbers: dict[str, float | int | str | None] = {
            "canary_requests": b.n,
            "canary_failures": b.count,
            "attributed_failures": int(extra.sum()),
            "canary_error_rate": b.count / b.n if b.n else math.nan,
            "limit": self.limit,
            **_e_numbers(b, test_alpha, self.pass_alpha),
        }
        rate = f"{numbers['canary_error_rate']:.2%}" if b.n else "n/a"
        what = f"canary error rate {rate} over {b.n} requests"
        reason = _why(b, what, f"{self.limit:.2%}", self.min_requests, test_alpha, self.pass_alpha)
        return Verdict(self.name, b.outcome, reason, numbers)


@dataclass(frozen=True)
class MaxP99Latency:
    """The canary's p99 latency ≤ ``limit_ms``: at most 1% of its responses slower.

    Judged as a proportion (responses slower than the limit), so the same bounds apply.
    Needs per-request results. To pass, it needs about 460 canary responses even when
    none is slow (fewer cannot show that under 1% are).
    """

    limit_ms: float
    min_requests: int = 50
    alpha: float = 0.01
    pass_alpha: float = 0.01
    name: str = "max-p99-latency"
    quantile: float = 0.99

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        r = responses(traffic, window, window.since)
        if r is None:
            return Verdict(
                self.name,
                "insufficient",
                "no per-request latencies: run the probe with per-request results kept",
                {"limit_ms": self.limit_ms},
            )
        lat = r.latency_ms[r.canary]
        sec = r.second[r.canary]
        share = 1 - self.quantile
        if lat.size:
            uniq, inv = np.unique(sec, return_inverse=True)
            n = np.cumsum(np.bincount(inv, minlength=len(uniq))).astype(np.float64)
            slow = np.cumsum(np.bincount(inv, weights=lat > self.limit_ms, minlength=len(uniq)))
        else:
            n = slow = np.zeros(0, dtype=np.float64)
        b = _judge_proportion(slow, n, share, self.alpha, self.pass_alpha, self.min_requests)
        numbers: dict[str, float | int | str | None] = {
            "canary_responses": b.n,
            "slow_responses": b.count,
            "slow_fraction": b.count / b.n if b.n else math.nan,
            "canary_p99_ms": float(np.quantile(lat, self.quantile)) if lat.size else math.nan,
            "limit_ms": self.limit_ms,
            "allowed_fraction": share,
            **_e_numbers(b, self.alpha, self.pass_alpha),
        }
        what = f"{b.count} of {b.n} canary responses slower than {self.limit_ms:g} ms"
        reason = _why(b, what, f"{share:.2%}", self.min_requests, self.alpha, self.pass_alpha)
        return Verdict(self.name, b.outcome, reason, numbers)
