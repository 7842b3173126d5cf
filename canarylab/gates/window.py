"""What gates judge: the probe's traffic, the window of it, and who failed.

:class:`Traffic` holds the probe's frames; :class:`Window` says which versions and
which time a gate judges; :class:`Baseline` is the rate of failures without a version
measured before the canary took traffic. :func:`per_second` reduces a window to
per-second counts (memoised on the Traffic object, so every gate of one look shares the
work), and :func:`attributed` decides how many of the unversioned failures are the
canary's (see docs/runbooks.md, "Failures without a version").

This module must never do I/O or read a clock: it takes DataFrames in the schema of
docs/architecture.md and returns frozen values and numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from canarylab.model.samples import FAILURE_KINDS, UNKNOWN_VERSION

from .evidence import clopper_pearson_upper, excess_over

if TYPE_CHECKING:
    from .metric import MetricEvidence

#: columns whose sum is the failures of a sample row
FAILURE_COLUMNS = FAILURE_KINDS

Ints = NDArray[np.int64]

ATTRIBUTION_SHARE = 0.1
"""The part of a gate's alpha spent on deciding which unversioned failures are the
canary's; the gate's own test gets the rest (so the two together stay within alpha)."""


@dataclass(frozen=True)
class Baseline:
    """Failures without a version, measured while the canary had no traffic.

    Timeouts, refused connections and gateway errors carry no version. Measured before
    the canary takes traffic, their rate is what the original (and the network) cost
    anyway; during a step only an excess over it is put on the canary.
    """

    requests: int
    """Requests of every version in the baseline period."""
    failures: int
    """Of those, the failures without a version (``version == "unknown"``)."""
    until: pd.Timestamp | None = None
    """End of the baseline period: when the canary first took traffic. Comparison gates
    accumulate their evidence from here."""

    @property
    def rate(self) -> float:
        return self.failures / self.requests if self.requests else math.nan

    def rate_upper(self, delta: float) -> float:
        """The exact upper ``1 − delta`` confidence bound of the baseline rate."""
        return clopper_pearson_upper(self.failures, self.requests, delta)

    @classmethod
    def from_traffic(cls, traffic: Traffic, until: pd.Timestamp | None) -> Baseline:
        """The baseline from the probe's seconds that closed at or before ``until``.

        ``until`` is when the canary took traffic (the first step's start); ``None``
        takes every second seen so far.
        """
        s = traffic.samples
        if len(s) and until is not None:
            s = s[s["second"] + pd.Timedelta(seconds=1) <= until]
        if not len(s):
            return cls(0, 0, until)
        unknown = (s["version"] == UNKNOWN_VERSION).to_numpy(dtype=bool)
        failures = sum(s[c].to_numpy(dtype=np.int64) for c in FAILURE_COLUMNS)
        end = until if until is not None else s["second"].max() + pd.Timedelta(seconds=1)
        return cls(
            int(s["requests"].to_numpy(dtype=np.int64).sum()),
            int(np.asarray(failures)[unknown].sum()),
            end,
        )


@dataclass(frozen=True)
class Window:
    """Which traffic a gate judges: the versions to compare, from when, at what weight."""

    canary: str
    """The canary's version as the probe's classifier reports it."""
    original: str | None = None
    """The original (parent) version; ``None`` means every version except the canary
    and ``unknown``."""
    since: pd.Timestamp | None = None
    """Start of the step; only traffic at or after it is judged by the step's gates
    (comparison gates start at ``baseline.until`` when there is one)."""
    weight: int | None = None
    """The canary's applied weight in percent during this window (traffic-share gate)."""
    baseline: Baseline | None = None
    """Unversioned failures before the canary took traffic; ``None``: every unversioned
    failure in the window is put on the canary (fail-safe)."""

    def comparison_start(self) -> pd.Timestamp | None:
        """Where canary-vs-original evidence starts: the whole run when it is known."""
        if self.baseline is not None and self.baseline.until is not None:
            return self.baseline.until
        return self.since


@dataclass(frozen=True, eq=False)
class Traffic:
    """The probe's output: per-second samples and, when kept, per-request results; and
    the gateway's metrics as queried at this look (template name → evidence)."""

    samples: pd.DataFrame
    requests: pd.DataFrame | None = None
    metrics: Mapping[str, MetricEvidence] = field(default_factory=dict)
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)
    """Reductions already computed for this snapshot (one per window and start)."""

    def since(self, start: pd.Timestamp | None) -> Traffic:
        """Only the traffic from the first whole second at or after ``start``.

        Per-second buckets that begin before ``start`` are dropped, and so are the
        per-request results in them, so counts and latencies describe the same requests.
        """
        if start is None:
            return self
        samples = self.samples
        if len(samples):
            samples = samples[samples["second"] >= start]
        requests = self.requests
        if requests is not None and len(requests):
            t = requests["t"]
            # The same boundary as the samples: the first whole second at or after start.
            first = start.ceil("s")
            # The probe keeps ``t`` as Unix seconds; records keep timestamps. Accept both.
            bound: Any = first.timestamp() if pd.api.types.is_numeric_dtype(t) else first
            requests = requests[t >= bound]
        return Traffic(samples, requests, self.metrics)


@dataclass(frozen=True)
class Side:
    """Counts of one side (canary or original) in a window."""

    requests: int
    failures: int
    latencies_ms: tuple[float, ...] | None
    """Per-request latencies of responses, when per-request results were kept."""
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else math.nan


def side(traffic: Traffic, versions: Sequence[str] | None, exclude: Sequence[str] = ()) -> Side:
    """Aggregate the rows of ``versions`` (or all but ``exclude`` when ``versions`` is None).

    Labelled counts only: this is what the summary table shows; gates add the
    unversioned failures they attribute (see :func:`attributed`).
    """
    s = traffic.samples
    if len(s):
        mask = s["version"].isin(versions) if versions is not None else ~s["version"].isin(exclude)
        s = s[mask]
    n = int(s["requests"].sum()) if len(s) else 0
    failures = int(sum(s[c].sum() for c in FAILURE_COLUMNS)) if len(s) else 0
    latencies: tuple[float, ...] | None = None
    p99 = math.nan
    r = traffic.requests
    if r is not None:
        if len(r):
            rmask = (
                r["version"].isin(versions) if versions is not None else ~r["version"].isin(exclude)
            )
            ok = r[rmask & r["latency_ms"].notna() & r["error"].isna()]
            latencies = tuple(float(x) for x in ok["latency_ms"])
        else:
            latencies = ()
        if latencies:
            p99 = float(pd.Series(latencies).quantile(0.99))
    elif len(s) and "p99_ms" in s and s["p99_ms"].notna().any():
        # Without per-request data the worst per-second p99 is the honest upper bound.
        p99 = float(s["p99_ms"].max())
    return Side(n, failures, latencies, p99)


# -- per-second reductions (numpy) ---------------------------------------------------


@dataclass(frozen=True)
class PerSecond:
    """Counts of one window, one entry per second that had traffic, oldest first."""

    second: Ints
    canary_requests: Ints
    canary_failures: Ints
    original_requests: Ints
    original_failures: Ints
    unknown_requests: Ints
    unknown_failures: Ints

    @property
    def all_requests(self) -> Ints:
        return self.canary_requests + self.original_requests + self.unknown_requests


@dataclass(frozen=True)
class Responses:
    """Successful responses of one window (per-request results), in time order."""

    second: Ints
    latency_ms: NDArray[np.float64]
    canary: NDArray[np.bool_]
    original: NDArray[np.bool_]


def unix_seconds(values: pd.Series | pd.Index) -> NDArray[np.float64]:
    """Unix seconds of timestamps (or of numbers that already are)."""
    if pd.api.types.is_numeric_dtype(values):
        return np.asarray(values, dtype=np.float64)
    return _unix_ns(values).astype(np.float64) / 1e9


def _unix_ns(values: pd.Series | pd.Index) -> Ints:
    """Unix nanoseconds of timestamps (exact: no float rounding at second boundaries).

    Naive timestamps are taken as UTC, as ``pd.to_datetime(..., utc=True)`` does.
    """
    array = values.array
    if isinstance(array, pd.arrays.DatetimeArray):  # the usual case: no parsing
        return np.asarray(array.as_unit("ns").asi8, dtype=np.int64)
    stamps = pd.to_datetime(values, utc=True)
    stamps = stamps.dt.as_unit("ns") if isinstance(stamps, pd.Series) else stamps.as_unit("ns")
    return np.asarray(stamps.astype("int64"), dtype=np.int64)


@dataclass(frozen=True)
class _Columns:
    """One snapshot's columns as numpy arrays, converted once and shared by every gate."""

    codes: Ints
    """Version of each row as an index into ``versions``."""
    versions: NDArray[Any]
    key: NDArray[Any]
    """What ``start`` is compared with: Unix ns (timestamps) or Unix seconds (numbers)."""
    numeric: bool


def _columns(
    traffic: Traffic, name: str, frame: pd.DataFrame, time: str, extra: Sequence[str]
) -> tuple[_Columns, dict[str, NDArray[Any]]]:
    """``frame``'s version codes, time key and ``extra`` columns (memoised on ``traffic``)."""
    memo_key = ("columns", name)
    if memo_key not in traffic._memo:
        codes, versions = pd.factorize(frame["version"], use_na_sentinel=False)
        numeric = bool(pd.api.types.is_numeric_dtype(frame[time]))
        key = frame[time].to_numpy(dtype=np.float64) if numeric else _unix_ns(frame[time])
        cols = _Columns(
            np.asarray(codes, dtype=np.int64), np.asarray(versions, dtype=object), key, numeric
        )
        values: dict[str, NDArray[Any]] = {}
        for c in extra:
            if c == "failures":
                values[c] = np.asarray(
                    sum(frame[k].to_numpy(dtype=np.int64) for k in FAILURE_COLUMNS),
                    dtype=np.int64,
                ).reshape(len(frame))
            elif c == "error":  # no error: a response
                values[c] = frame[c].isna().to_numpy(dtype=bool)
            elif c == "latency_ms":
                values[c] = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                values[c] = frame[c].to_numpy(dtype=np.int64)
        traffic._memo[memo_key] = (cols, values)
    out: tuple[_Columns, dict[str, NDArray[Any]]] = traffic._memo[memo_key]
    return out


def _code_sides(
    cols: _Columns, window: Window, rows: NDArray[np.bool_] | None = None
) -> tuple[NDArray[np.bool_], ...]:
    """Per row (of ``rows``, or all): canary, original and unknown, decided once per
    distinct version."""
    codes = cols.codes if rows is None else cols.codes[rows]
    canary, original, unknown = _sides(cols.versions, window)
    return canary[codes], original[codes], unknown[codes]


def _sides(versions: NDArray[Any], window: Window) -> tuple[NDArray[np.bool_], ...]:
    canary = versions == window.canary
    unknown = versions == UNKNOWN_VERSION
    named = window.original is not None
    original = versions == window.original if named else ~(canary | unknown)
    return (
        np.asarray(canary, dtype=bool),
        np.asarray(original, dtype=bool),
        np.asarray(unknown, dtype=bool),
    )


def per_second(traffic: Traffic, window: Window, start: pd.Timestamp | None) -> PerSecond:
    """The window's per-second counts from ``start`` on (memoised on ``traffic``).

    The same rows as ``traffic.since(start).samples``: buckets that begin at or after
    ``start``. The snapshot's columns are converted to numpy once and shared by every
    gate and start of one look.
    """
    key = ("per_second", window.canary, window.original, start)
    if key in traffic._memo:
        cached: PerSecond = traffic._memo[key]
        return cached
    s = traffic.samples
    if not len(s):
        empty = np.zeros(0, dtype=np.int64)
        out = PerSecond(empty, empty, empty, empty, empty, empty, empty)
    else:
        cols, values = _columns(traffic, "samples", s, "second", ("requests", "failures"))
        ns = cols.key.astype(np.int64) if not cols.numeric else (cols.key * 1e9).astype(np.int64)
        keep = ns >= pd.Timestamp(start).value if start is not None else np.ones(len(ns), bool)
        seconds = ns[keep] // 1_000_000_000
        n, f = values["requests"][keep], values["failures"][keep]
        canary, original, unknown = _code_sides(cols, window, keep)
        uniq, inv = np.unique(seconds, return_inverse=True)

        def by_second(values: Ints, mask: NDArray[np.bool_]) -> Ints:
            return np.bincount(inv, weights=values * mask, minlength=len(uniq)).astype(np.int64)

        out = PerSecond(
            uniq,
            by_second(n, canary),
            by_second(f, canary),
            by_second(n, original),
            by_second(f, original),
            by_second(n, unknown),
            by_second(f, unknown),
        )
    traffic._memo[key] = out
    return out


def responses(traffic: Traffic, window: Window, start: pd.Timestamp | None) -> Responses | None:
    """Successful responses from ``start`` on; ``None`` without per-request results.

    The same requests as ``traffic.since(start).requests``: from the first whole second
    at or after ``start``.
    """
    key = ("responses", window.canary, window.original, start)
    if key in traffic._memo:
        cached: Responses | None = traffic._memo[key]
        return cached
    r = traffic.requests
    out: Responses | None = None
    if r is not None:
        if not len(r):
            none = np.zeros(0, dtype=bool)
            out = Responses(np.zeros(0, dtype=np.int64), np.zeros(0), none, none)
        else:
            cols, values = _columns(traffic, "requests", r, "t", ("latency_ms", "error"))
            latency = values["latency_ms"]
            ok = values["error"] & ~np.isnan(latency)
            if start is not None:
                first = pd.Timestamp(start).ceil("s")
                ok &= cols.key >= (first.timestamp() if cols.numeric else first.value)
            canary, original, _ = _code_sides(cols, window, ok)
            t = cols.key[ok]
            sec = np.floor(t) if cols.numeric else t // 1_000_000_000
            out = Responses(sec.astype(np.int64), latency[ok], canary, original)
    traffic._memo[key] = out
    return out


def attributed(counts: PerSecond, baseline: Baseline | None, delta: float) -> Ints:
    """Per second, the unversioned failures put on the canary (requests and failures).

    Without a baseline (or an empty one), all of them: missing evidence must not let a
    hanging canary through. With one, only the excess over the most the baseline rate
    can explain: the baseline's exact upper bound (at ``delta/2``), then an
    anytime-valid upper bound on the window's count at that rate (``delta/2``). A canary
    no worse than the baseline is blamed for nothing, at every second together, with
    probability ``1 − delta``.
    """
    unknown = np.cumsum(counts.unknown_failures)
    if baseline is None or baseline.requests <= 0:
        return counts.unknown_failures.copy()
    p0 = baseline.rate_upper(delta / 2)
    excess = excess_over(unknown, np.cumsum(counts.all_requests), p0, math.log(2 / delta))
    # Attribution never shrinks: a second's share once put on the canary stays there.
    total = np.maximum.accumulate(excess) if excess.size else excess
    return np.diff(total, prepend=0).astype(np.int64)


def with_attribution(
    traffic: Traffic, window: Window, start: pd.Timestamp | None, alpha: float
) -> tuple[PerSecond, Ints]:
    """The window's counts and the canary's attributed failures per second."""
    counts = per_second(traffic, window, start)
    delta = alpha * ATTRIBUTION_SHARE
    key = ("attributed", window.canary, window.original, start, window.baseline, delta)
    if key not in traffic._memo:
        traffic._memo[key] = attributed(counts, window.baseline, delta)
    extra: Ints = traffic._memo[key]
    return counts, extra
