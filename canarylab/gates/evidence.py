"""Anytime-valid evidence from counts: e-processes and confidence bounds.

Every gate reduces the probe's traffic to counts (failures among requests, slow
responses among responses, canary requests among all requests) and asks one of two
questions of them, with a false-alarm level ``alpha`` that must hold however often the
runner looks:

- **One proportion against a fixed value** (:func:`log_e_above`, :func:`log_e_below`):
  the likelihood ratio of the binomial counts, mixed over a uniform prior on the
  alternative side of ``p0``. For every true proportion on the null side the ratio is a
  non-negative supermartingale, so by Ville's inequality it ever reaches ``1/alpha`` with
  probability at most ``alpha`` — at any number of looks, at any stopping time. The
  confidence bounds (:func:`lower_bound`, :func:`upper_bound`) are the values of ``p0``
  the same test does not reject: a confidence sequence.
- **Canary against original** (:func:`log_e_split`): the events of each second (failures,
  or slow responses) are split between the two sides. If the canary is no worse, the
  canary's share of a second's events is (given that second's counts) hypergeometric,
  which is less spread than a binomial with the canary's share of the second's traffic;
  under the alternative "the canary's rate is ``r`` times the original's" that share is
  ``share·r / (share·r + 1 − share)``. The product over seconds of these likelihood
  ratios, mixed over a fixed grid of ratios ``r > 1``, is again a test supermartingale.
  This is Lindon & Malek's inhomogeneous-process construction for canary tests, made
  one-sided and conditioned on each second's counts.

Because each statistic is a function of the cumulative counts per second, a gate can
recompute it from the window at every look and keep no state.

This module is numpy and scipy.special only: it must never see a DataFrame, a clock or
a cluster.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special as sc

Floats = NDArray[np.float64]

RATIO_GRID: Floats = np.geomspace(1.5, 10.0, 12)
"""Alternatives of the error-rate comparison: canary rate = ratio × original rate,
equally weighted on a log scale from 1.5× to 10× (wider grids, or grids narrowed
around 3×, detected a 3× canary within a second or two of this one in
benchmarks/gates.py; the level, not the prior, is what sets the speed)."""

LATENCY_RATIO_GRID: Floats = np.geomspace(1.1, 4.0, 12)
"""Alternatives of the latency comparison. Its events are responses slower than the
second's pooled median, and about half of all responses are: at a small canary share
the original's chance of being slow stays near 1/2, so the ratio of the canary's chance
to the original's cannot exceed about 2 (4 at an even split). Mass beyond that is
wasted; 1.1×–4× puts it where latency regressions are."""


def _arrays(*xs: ArrayLike) -> list[Floats]:
    return [np.asarray(x, dtype=np.float64) for x in np.broadcast_arrays(*xs)]


def log_e_above(count: ArrayLike, n: ArrayLike, p0: ArrayLike) -> Floats:
    """log e-value against ``H0: p ≤ p0`` (large when the proportion is above ``p0``).

    The binomial likelihood ratio of ``count`` events in ``n`` mixed over ``p``
    uniform on ``(p0, 1]``, relative to ``p0``.
    """
    f, m, p = _arrays(count, n, p0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a, b = f + 1.0, m - f + 1.0
        out = (
            sc.betaln(a, b)
            + np.log(sc.betaincc(a, b, np.clip(p, 0.0, 1.0)))
            - np.log1p(-p)
            - sc.xlogy(f, p)
            - sc.xlog1py(m - f, -p)
        )
    out = np.where(p >= 1.0, -np.inf, out)
    return np.asarray(np.where(m <= 0, 0.0, out), dtype=np.float64)


def log_e_below(count: ArrayLike, n: ArrayLike, p0: ArrayLike) -> Floats:
    """log e-value against ``H0: p ≥ p0`` (large when the proportion is below ``p0``).

    The mirror of :func:`log_e_above`: the mixture is uniform on ``[0, p0)``.
    """
    k, m, p = _arrays(count, n, p0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a, b = k + 1.0, m - k + 1.0
        out = (
            sc.betaln(a, b)
            + np.log(sc.betainc(a, b, np.clip(p, 0.0, 1.0)))
            - np.log(p)
            - sc.xlogy(k, p)
            - sc.xlog1py(m - k, -p)
        )
    out = np.where(p <= 0.0, -np.inf, out)
    return np.asarray(np.where(m <= 0, 0.0, out), dtype=np.float64)


def _scalar_log_e(count: float, n: float, p0: float, above: bool) -> float:
    """:func:`log_e_above` / :func:`log_e_below` for one value (no array overhead)."""
    a, b = count + 1.0, n - count + 1.0
    tail = float(sc.betaincc(a, b, p0) if above else sc.betainc(a, b, p0))
    if tail <= 0.0:
        return -math.inf
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    norm = math.log1p(-p0) if above else math.log(p0)
    return log_beta + math.log(tail) - norm - count * math.log(p0) - (n - count) * math.log1p(-p0)


def _boundary(count: int, n: int, alpha: float, above: bool, lo: float, hi: float) -> float:
    """The ``p0`` in ``(lo, hi)`` (logits) where the test's log e-value meets ``log(1/alpha)``.

    Regula falsi (Illinois) on the logit of ``p0``; the e-value is monotone there.
    """
    c = math.log(1 / alpha)

    def g(x: float) -> float:
        return _scalar_log_e(count, n, float(sc.expit(x)), above) - c

    g_lo, g_hi = g(lo), g(hi)
    if (g_lo >= 0) == (g_hi >= 0):
        return float(sc.expit(lo if abs(g_lo) < abs(g_hi) else hi))
    side = 0
    for _ in range(60):
        if not (math.isfinite(g_lo) and math.isfinite(g_hi)):
            x = (lo + hi) / 2
        else:
            x = hi - g_hi * (hi - lo) / (g_hi - g_lo)
        gx = g(x)
        if abs(gx) < 1e-3 or hi - lo < 1e-4:
            break
        if (gx >= 0) == (g_lo >= 0):
            lo, g_lo = x, gx
            if side == -1:
                g_hi /= 2
            side = -1
        else:
            hi, g_hi = x, gx
            if side == 1:
                g_lo /= 2
            side = 1
    return float(sc.expit(x))


_EDGE = float(sc.logit(1e-12))


def lower_bound(failures: int, n: int, alpha: float) -> float:
    """The anytime-valid lower ``1 − alpha`` confidence bound of a proportion.

    The smallest ``p0`` that :func:`log_e_above` does not reject at ``alpha`` (0 when
    even a proportion of 0 is not rejected).
    """
    if n <= 0 or failures <= 0:
        return 0.0
    if failures >= n:
        return _boundary(failures, n, alpha, True, _EDGE, -_EDGE)
    if _scalar_log_e(failures, n, 1e-12, True) < math.log(1 / alpha):
        return 0.0
    return _boundary(failures, n, alpha, True, _EDGE, float(sc.logit(failures / n)))


def upper_bound(count: int, n: int, alpha: float) -> float:
    """The anytime-valid upper ``1 − alpha`` confidence bound of a proportion."""
    if n <= 0 or count >= n:
        return 1.0
    if _scalar_log_e(count, n, 1 - 1e-12, False) < math.log(1 / alpha):
        return 1.0
    start = float(sc.logit(count / n)) if count > 0 else _EDGE
    return _boundary(count, n, alpha, False, start, -_EDGE)


def clopper_pearson_upper(failures: int, n: int, delta: float) -> float:
    """The exact one-sided upper ``1 − delta`` bound of a proportion from one fixed sample."""
    if n <= 0 or failures >= n:
        return 1.0
    return float(sc.betaincinv(failures + 1, n - failures, 1 - delta))


def log_e_split(
    events_canary: ArrayLike,
    events_original: ArrayLike,
    share: ArrayLike,
    ratios: Floats = RATIO_GRID,
) -> Floats:
    """log e-value, after each second, against "the canary's event rate is no higher".

    Arguments are per-second arrays: the canary's and the original's events and the
    canary's share of that second's exposure (requests or responses); ``ratios`` are
    the alternatives, equally weighted. Returns the cumulative log e-value after each
    second (see the module docstring). Seconds without events contribute nothing and
    are skipped.
    """
    ec, eo, s = _arrays(events_canary, events_original, share)
    if ec.size == 0:
        return np.zeros(0)
    s = np.clip(np.nan_to_num(s, nan=0.0), 0.0, 1.0)
    grid = np.asarray(ratios, dtype=np.float64)
    out: Floats = np.zeros(ec.size)
    events = np.flatnonzero(ec + eo > 0)
    if events.size == 0:
        return out
    ec, eo, s = ec[events], eo[events], s[events]
    per_second = np.outer(ec, np.log(grid)) - (ec + eo)[:, None] * np.log1p(np.outer(s, grid - 1.0))
    cumulative = np.cumsum(per_second, axis=0)
    at_events = sc.logsumexp(cumulative, axis=1) - math.log(grid.size)
    # Between events the e-process stays where the last event left it.
    last = np.searchsorted(events, np.arange(out.size), side="right") - 1
    out = np.where(last >= 0, at_events[np.maximum(last, 0)], 0.0)
    return out


def excess_over(
    failures: ArrayLike, n: ArrayLike, p0: float, log_threshold: float
) -> NDArray[np.int64]:
    """Failures beyond the most a rate of ``p0`` explains, after each prefix.

    ``failures`` and ``n`` are cumulative counts. At each prefix the answer is
    ``failures − U`` where ``U`` is the largest count :func:`log_e_above` would not
    reject at ``log_threshold``; 0 when the count itself is not rejected. Under a rate of
    at most ``p0`` every answer is 0 with probability ``1 − exp(−log_threshold)``, at
    every prefix together.
    """
    f, m = (np.asarray(x, dtype=np.float64) for x in np.broadcast_arrays(failures, n))
    out = np.zeros(f.shape, dtype=np.int64)
    over = log_e_above(f, m, p0) >= log_threshold
    if not over.any():
        return out
    idx = np.flatnonzero(over)
    lo = np.zeros(idx.size)  # not rejected (0 failures never is)
    hi = f[idx].copy()  # rejected
    nn = m[idx]
    while True:
        gap = hi - lo > 1
        if not gap.any():
            break
        mid = np.floor((lo + hi) / 2)
        rejected = log_e_above(mid, nn, p0) >= log_threshold
        hi = np.where(gap & rejected, mid, hi)
        lo = np.where(gap & ~rejected, mid, lo)
    out[idx] = (f[idx] - lo).astype(np.int64)
    return out


def running_max(x: Any) -> Floats:
    """The running maximum of a 1-d array (empty stays empty)."""
    arr = np.asarray(x, dtype=np.float64)
    return np.maximum.accumulate(arr) if arr.size else arr
