"""Comparison gates: canary against original, with sequential tests that allow peeking.

Both gates reduce each second to two event counts and the canary's share of that
second's exposure, and run the one-sided mixture e-process of
``evidence.log_e_split``: failures among requests (:class:`ErrorRateComparison`), and
responses slower than that second's pooled median (:class:`LatencyComparison`, a
sign test against the original in the same second, so load that slows everyone does
not count against the canary).

- **fail** when the e-value has reached ``1/alpha`` *and* the observed effect exceeds
  the minimum effect (``min_difference`` / ``max_ratio``): significant but harmless
  differences do not roll back;
- **pass** once both sides have ``min_requests`` and it has not failed;
- **insufficient** below that.

Evidence accumulates over the whole run, from the moment the canary took traffic
(``window.baseline.until``), not only the current step: a per-step restart would throw
away what earlier steps showed. Without a baseline they judge the current step.

This module must never do I/O or read a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .evidence import LATENCY_RATIO_GRID, log_e_split
from .verdict import Verdict
from .window import ATTRIBUTION_SHARE, Traffic, Window, responses, with_attribution


def _by_second_then_latency(sec: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The order of ``np.lexsort((lat, sec))``, about 5x faster for the usual hour.

    Sort by latency, then stably by second: a radix sort when the seconds span less
    than 2**16 (ties in latency may come out in another order; no statistic here
    depends on it).
    """
    by_latency = np.argsort(lat)
    rel = sec - sec.min() if sec.size else sec
    if sec.size and int(rel.max()) < 2**16:
        within = np.argsort(rel[by_latency].astype(np.uint16), kind="stable")
        out: np.ndarray = by_latency[within]
        return out
    return np.lexsort((lat, sec))


def _median_per_second(
    sec: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each response's second (as 0, 1, ... in time order), the seconds' sizes and medians.

    The median of a second is its middle response by latency (the lower middle for an
    even count). Responses in time order (what the probe keeps) are sorted within each
    second only; otherwise by (second, latency) as a whole.
    """
    if sec.size > 1 and bool(np.all(sec[1:] >= sec[:-1])):
        first = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1]])
        size = np.diff(np.r_[first, sec.size])
        group = np.repeat(np.arange(len(first)), size)
        # One row per second, padded with +inf, sorted along the rows.
        rows = np.full((len(first), int(size.max())), np.inf)
        rows[group, np.arange(sec.size) - first[group]] = lat
        rows.sort(axis=1)
        median = rows[np.arange(len(first)), (size - 1) // 2]
        return group, size, median
    order = _by_second_then_latency(sec, lat)
    _, inverse, size = np.unique(sec, return_inverse=True, return_counts=True)
    first = np.r_[0, np.cumsum(size)[:-1]]
    median = lat[order][first + (size - 1) // 2]
    return inverse.reshape(-1), size, median


def _e_value(log_e: np.ndarray) -> tuple[float, float]:
    """The running maximum of an e-process as (e-value, anytime-valid p-value)."""
    best = float(np.max(log_e)) if log_e.size else 0.0
    e = math.exp(min(best, 700.0))
    return e, min(1.0, 1.0 / e)


@dataclass(frozen=True)
class ErrorRateComparison:
    """The canary's error rate must not be above the original's.

    Fails when the e-value reaches ``1/alpha`` and the canary's rate exceeds the
    original's by more than ``min_difference`` (absolute).
    """

    alpha: float = 0.01
    min_difference: float = 0.005
    min_requests: int = 100
    name: str = "error-rate-comparison"
    compares_original: ClassVar[bool] = True

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        counts, extra = with_attribution(traffic, window, window.comparison_start(), self.alpha)
        nc = counts.canary_requests + extra
        fc = counts.canary_failures + extra
        no, fo = counts.original_requests, counts.original_failures
        exposure = nc + no
        share = np.divide(nc, exposure, out=np.zeros(len(nc)), where=exposure > 0)
        test_alpha = self.alpha * (1 - ATTRIBUTION_SHARE)
        e, p = _e_value(log_e_split(fc, fo, share))
        n_c, f_c, n_o, f_o = int(nc.sum()), int(fc.sum()), int(no.sum()), int(fo.sum())
        rate_c = f_c / n_c if n_c else math.nan
        rate_o = f_o / n_o if n_o else math.nan
        numbers: dict[str, float | int | str | None] = {
            "canary_requests": n_c,
            "canary_failures": f_c,
            "attributed_failures": int(extra.sum()),
            "canary_error_rate": rate_c,
            "original_requests": n_o,
            "original_failures": f_o,
            "original_error_rate": rate_o,
            "e_value": e,
            "threshold": 1 / test_alpha,
            "p_value": p,
            "alpha": test_alpha,
            "min_difference": self.min_difference,
        }
        rates = (
            f"canary error rate {rate_c:.2%} ({f_c}/{n_c}) vs original {rate_o:.2%} "
            f"({f_o}/{n_o}), e-value {e:.3g}"
        )
        diff = rate_c - rate_o if n_c and n_o else math.nan
        if e >= 1 / test_alpha and diff > self.min_difference:
            reason = (
                f"{rates} ≥ {1 / test_alpha:.3g}, difference {diff:.2%} > {self.min_difference:.2%}"
            )
            return Verdict(self.name, "fail", reason, numbers)
        if min(n_c, n_o) < self.min_requests:
            reason = (
                f"{rates}: only {n_c} canary and {n_o} original requests; need "
                f"{self.min_requests} each (still collecting)"
            )
            return Verdict(self.name, "insufficient", reason, numbers)
        below = "below" if e < 1 / test_alpha else "over, but the difference is within"
        return Verdict(self.name, "pass", f"{rates}, {below} {1 / test_alpha:.3g}", numbers)


@dataclass(frozen=True)
class LatencyComparison:
    """The canary's latencies must not be above the original's.

    Each second, the responses slower than that second's pooled median are the
    events: if the canary is no slower, its share of them is its share of the
    responses. Fails when the e-value reaches ``1/alpha`` and the canary's median
    exceeds ``max_ratio`` times the original's **and** the original's by at least
    ``min_difference_ms``: a real but tiny difference (an idle process at a 5% weight
    answers 0.4 ms slower than a busy one) is no regression. Needs per-request results.
    """

    alpha: float = 0.01
    max_ratio: float = 1.2
    min_requests: int = 100
    min_difference_ms: float = 2.0
    """The least slowdown of the median, in milliseconds, that can fail the gate."""
    name: str = "latency-comparison"
    compares_original: ClassVar[bool] = True

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        r = responses(traffic, window, window.comparison_start())
        if r is None:
            return Verdict(
                self.name,
                "insufficient",
                "no per-request latencies: run the probe with per-request results kept",
                {},
            )
        both = r.canary | r.original
        sec, lat, canary = r.second[both], r.latency_ms[both], r.canary[both]
        n_c = int(np.count_nonzero(canary))
        n_o = int(canary.size) - n_c
        if n_c and n_o:
            group, size, median = _median_per_second(sec, lat)
            m = len(size)
            slow = lat > median[group]
            slow_c = np.bincount(group, weights=slow & canary, minlength=m)
            slow_o = np.bincount(group, weights=slow & ~canary, minlength=m)
            share = np.bincount(group, weights=canary, minlength=m) / size
            e, p = _e_value(log_e_split(slow_c, slow_o, share, LATENCY_RATIO_GRID))
            med_c = float(np.median(lat[canary]))
            med_o = float(np.median(lat[~canary]))
            slow_share = float(slow_c.sum() / max(slow_c.sum() + slow_o.sum(), 1))
        else:
            e, p, med_c, med_o, slow_share = 1.0, 1.0, math.nan, math.nan, math.nan
        numbers: dict[str, float | int | str | None] = {
            "canary_responses": n_c,
            "canary_median_ms": med_c,
            "original_responses": n_o,
            "original_median_ms": med_o,
            "canary_share_of_slow": slow_share,
            "canary_share": n_c / (n_c + n_o) if n_c + n_o else math.nan,
            "e_value": e,
            "threshold": 1 / self.alpha,
            "p_value": p,
            "alpha": self.alpha,
            "max_ratio": self.max_ratio,
            "min_difference_ms": self.min_difference_ms,
        }
        ratio = med_c / med_o if med_o > 0 else math.inf
        slower_ms = med_c - med_o if n_c and n_o else math.nan
        medians = (
            f"canary median {med_c:.2f} ms vs original {med_o:.2f} ms (×{ratio:.2f}), "
            f"e-value {e:.3g}"
        )
        if e >= 1 / self.alpha and ratio > self.max_ratio and slower_ms >= self.min_difference_ms:
            return Verdict(
                self.name,
                "fail",
                f"{medians} ≥ {1 / self.alpha:.3g}, ratio > ×{self.max_ratio} and "
                f"{slower_ms:.2f} ms ≥ {self.min_difference_ms:g} ms slower",
                numbers,
            )
        if min(n_c, n_o) < self.min_requests:
            reason = (
                f"{medians}: only {n_c} canary and {n_o} original responses; need "
                f"{self.min_requests} each (still collecting)"
            )
            return Verdict(self.name, "insufficient", reason, numbers)
        if e < 1 / self.alpha:
            below = "below"
        elif ratio <= self.max_ratio:
            below = "over, but the ratio is within"
        else:
            below = f"over, but only {slower_ms:.2f} ms slower (< {self.min_difference_ms:g} ms), within"
        return Verdict(self.name, "pass", f"{medians}, {below} {1 / self.alpha:.3g}", numbers)
