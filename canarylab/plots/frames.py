"""Turn probe samples and record events into the small tables a chart draws.

Everything here is pure pandas: no plotly, no I/O, no clock. The same functions
feed the static report figures, the replay notebook's time slider and the live
chart, so what a user sees live and in a postmortem is computed the same way.

Inputs follow the probe sample schema in docs/architecture.md (``second``,
``version``, ``requests``, ``ok``, ``http_errors``, ``timeouts``, ``conn_errors``,
``p50_ms``, ``p95_ms``, ``p99_ms``) and the normalised event frame of
:data:`EVENT_COLUMNS`. This module must never reach a cluster or draw anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from canarylab.model.samples import FAILURE_KINDS, SAMPLE_COLUMNS
from canarylab.record.events import Kind

EVENT_COLUMNS = ("time", "kind", "message", "desired_weight", "applied_weight", "phase")
"""The event frame the figures read: one row per recorded event.

``kind`` is ``action`` for an operator action (a button, a runbook step), ``status``
for a phase or weight change seen on the resource, ``event`` for a Kubernetes
Event; weights and phase are NaN/empty where an event does not carry them.
"""
FAILURE_COLUMNS = FAILURE_KINDS
DEFAULT_MAX_POINTS = 1500
"""Buckets per trace for display: a screen is ~1,500 px wide, more points only cost."""


class SampleSchemaError(ValueError):
    """A samples frame lacks a column of the probe schema."""


def check_samples(samples: pd.DataFrame) -> None:
    """Raise :class:`SampleSchemaError` naming the columns missing from ``samples``."""
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise SampleSchemaError(
            f"samples lack column(s) {', '.join(missing)}; expected the probe sample schema "
            f"({', '.join(SAMPLE_COLUMNS)}) described in docs/architecture.md"
        )


def first_seen(values: pd.Series) -> list[str]:
    """Distinct values as strings, in the order they first appear (fast on Arrow strings)."""
    return [str(v) for v in pd.unique(values.to_numpy(dtype=object))]


def naive_utc(times: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC times as ``datetime64[ns]`` without a zone: what plotly copies and serialises fast.

    A tz-aware column becomes an object array of Timestamps, which plotly deep-copies
    one by one; axes are labelled UTC instead.
    """
    index = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    return index.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")


def empty_events() -> pd.DataFrame:
    """An event frame with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            "time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "kind": pd.Series([], dtype=object),
            "message": pd.Series([], dtype=object),
            "desired_weight": pd.Series([], dtype=float),
            "applied_weight": pd.Series([], dtype=float),
            "phase": pd.Series([], dtype=object),
        }
    )


def bucket_seconds(start: pd.Timestamp, end: pd.Timestamp, max_points: int) -> int:
    """The smallest whole-second bucket that fits ``[start, end]`` in ``max_points``."""
    span = max(1.0, (end - start).total_seconds() + 1)
    return max(1, math.ceil(span / max(1, max_points)))


@dataclass(frozen=True)
class Traffic:
    """Per-bucket traffic by version, ready to draw (one column per version)."""

    bucket_s: int
    """Width of a bucket in seconds (1 for undecimated data)."""
    time: pd.DatetimeIndex
    """Start of each bucket."""
    share: pd.DataFrame
    """Percent of the bucket's responses answered by each version (0-100)."""
    requests_per_s: pd.DataFrame
    """Responses per second by version, averaged over the bucket."""
    failures_per_s: pd.DataFrame
    """Failures (http errors + timeouts + connection errors) per second by version."""
    p99_ms: pd.DataFrame
    """Worst per-second p99 in the bucket, by version (NaN where no response)."""

    @property
    def versions(self) -> list[str]:
        return [str(v) for v in self.share.columns]


def traffic(
    samples: pd.DataFrame,
    max_points: int = DEFAULT_MAX_POINTS,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> Traffic:
    """Aggregate samples into at most ``max_points`` buckets per version.

    Shares are summed over the bucket (so a decimated share is the true share of
    the bucket's traffic, not an average of ratios); p99 keeps the bucket's worst
    second so latency spikes survive decimation.
    """
    check_samples(samples)
    if samples.empty:
        empty = pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC"))
        return Traffic(1, empty.index, empty, empty, empty, empty)
    seconds = pd.to_datetime(samples["second"], utc=True)
    lo = start if start is not None else seconds.min()
    hi = end if end is not None else seconds.max()
    bucket = bucket_seconds(lo, hi, max_points)
    ns = seconds.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    width = bucket * 1_000_000_000
    origin = pd.Timestamp(lo).as_unit("ns").value
    key = origin + ((ns - origin) // width) * width  # buckets start at the first second
    failures = samples["http_errors"] + samples["timeouts"] + samples["conn_errors"]
    frame = pd.DataFrame(
        {
            "bucket": key,
            "version": samples["version"].astype(str).to_numpy(),
            "requests": samples["requests"].to_numpy(dtype=np.float64),
            "failures": failures.to_numpy(dtype=np.float64),
            "p99": samples["p99_ms"].to_numpy(dtype=np.float64),
        }
    )
    grouped = frame.groupby(["bucket", "version"], sort=True).agg(
        requests=("requests", "sum"), failures=("failures", "sum"), p99=("p99", "max")
    )
    wide = grouped.unstack("version")
    index = pd.DatetimeIndex(pd.to_datetime(wide.index.to_numpy(), utc=True))
    requests = wide["requests"].fillna(0.0)
    requests.index = index
    total = requests.sum(axis=1).replace(0.0, np.nan)
    share = requests.div(total, axis=0).mul(100.0)
    failures_wide = wide["failures"].fillna(0.0)
    failures_wide.index = index
    p99 = wide["p99"]
    p99.index = index
    for f in (share, requests, failures_wide, p99):
        f.columns = [str(c) for c in f.columns]
        f.columns.name = None
    return Traffic(
        bucket_s=bucket,
        time=index,
        share=share,
        requests_per_s=requests / bucket,
        failures_per_s=failures_wide / bucket,
        p99_ms=p99,
    )


@dataclass(frozen=True)
class WeightLine:
    """Desired and applied canary weight as step lines (value holds until the next)."""

    time: pd.DatetimeIndex
    desired: np.ndarray
    applied: np.ndarray


def weight_line(events: pd.DataFrame, max_points: int = DEFAULT_MAX_POINTS) -> WeightLine:
    """The desired/applied weight over time from the events that carry a weight.

    Missing values carry the last known one forward, so a phase-only event does
    not draw a gap. Long histories keep the last value per display bucket.
    """
    carrying = events[events["desired_weight"].notna() | events["applied_weight"].notna()]
    if carrying.empty:
        return WeightLine(pd.DatetimeIndex([], tz="UTC"), np.array([]), np.array([]))
    carrying = carrying.sort_values("time", kind="stable")
    times = pd.to_datetime(carrying["time"], utc=True)
    desired = carrying["desired_weight"].astype(float).ffill()
    applied = carrying["applied_weight"].astype(float).ffill()
    frame = pd.DataFrame(
        {"desired": desired.to_numpy(), "applied": applied.to_numpy()},
        index=pd.DatetimeIndex(times),
    )
    if len(frame) > max_points:
        bucket = bucket_seconds(frame.index[0], frame.index[-1], max_points)
        frame = frame.resample(f"{bucket}s").last().dropna(how="all").ffill()
    return WeightLine(
        pd.DatetimeIndex(frame.index), frame["desired"].to_numpy(), frame["applied"].to_numpy()
    )


def actions(events: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """Operator actions (``kind == "action"``) sorted by time; the last ``limit`` if given."""
    picked = events[events["kind"] == Kind.ACTION].sort_values("time", kind="stable")
    if limit is not None and len(picked) > limit:
        picked = picked.iloc[-limit:]
    return picked.reset_index(drop=True)


def state_at(
    samples: pd.DataFrame, events: pd.DataFrame, at: pd.Timestamp, window_s: int = 10
) -> dict[str, object]:
    """What a replay shows at one second: weights, phase, last action, recent traffic.

    Traffic is summed over the ``window_s`` seconds ending at ``at`` so a
    scrubbed-to second with little traffic still shows a stable share.
    """
    return states_at(samples, events, [at], window_s)[0]


def states_at(
    samples: pd.DataFrame,
    events: pd.DataFrame,
    times: Sequence[pd.Timestamp],
    window_s: int = 10,
) -> list[dict[str, object]]:
    """:func:`state_at` for many seconds at once (cumulative sums and binary search)."""
    at = pd.DatetimeIndex([_utc(t) for t in times])
    at_ns = at.as_unit("ns").asi8
    ev = events.sort_values("time", kind="stable")
    ev_ns = pd.DatetimeIndex(pd.to_datetime(ev["time"], utc=True)).as_unit("ns").asi8
    seen = np.searchsorted(ev_ns, at_ns, side="right")  # events at or before each time

    def last_known(values: pd.Series) -> list[object]:
        keep = values.notna().to_numpy().copy()
        if values.dtype == object:
            keep &= values.astype(str).ne("").to_numpy()
        carried = values.where(keep).ffill().to_numpy(dtype=object)
        # nothing known yet is None, never a NaN that a caption would print as "nan"
        return [None if i == 0 or pd.isna(carried[i - 1]) else carried[i - 1] for i in seen]

    desired = last_known(ev["desired_weight"].astype(float))
    applied = last_known(ev["applied_weight"].astype(float))
    phase = last_known(ev["phase"].astype(object))
    acted = ev["message"].where(ev["kind"] == Kind.ACTION).astype(object)
    last_action = last_known(acted)

    versions = first_seen(samples["version"]) if len(samples) else []
    sec_ns = pd.DatetimeIndex(pd.to_datetime(samples["second"], utc=True)).as_unit("ns").asi8
    order = np.argsort(sec_ns, kind="stable")
    sec_sorted = sec_ns[order]
    req = samples["requests"].to_numpy(dtype=np.float64)[order]
    fail = samples[list(FAILURE_COLUMNS)].to_numpy(dtype=np.float64).sum(axis=1)[order]
    ver = samples["version"].astype(str).to_numpy()[order]
    hi = np.searchsorted(sec_sorted, at_ns, side="right")
    lo = np.searchsorted(sec_sorted, at_ns - window_s * 1_000_000_000, side="right")
    cum_fail = np.concatenate([[0.0], np.cumsum(fail)])
    cum_by_version = {
        v: np.concatenate([[0.0], np.cumsum(np.where(ver == v, req, 0.0))]) for v in versions
    }
    out: list[dict[str, object]] = []
    for i, t in enumerate(at):
        counts = {v: cum[hi[i]] - cum[lo[i]] for v, cum in cum_by_version.items()}
        counts = {v: n for v, n in counts.items() if n > 0}
        total = float(sum(counts.values()))
        out.append(
            {
                "time": t,
                "phase": "" if phase[i] is None else str(phase[i]),
                "desired_weight": math.nan if desired[i] is None else float(desired[i]),  # type: ignore[arg-type]
                "applied_weight": math.nan if applied[i] is None else float(applied[i]),  # type: ignore[arg-type]
                "last_action": "" if last_action[i] is None else str(last_action[i]),
                "requests": int(total),
                "failures": int(cum_fail[hi[i]] - cum_fail[lo[i]]),
                "share": {v: 100.0 * n / total for v, n in counts.items()},
            }
        )
    return out


def _utc(t: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def step_table(
    samples: pd.DataFrame, events: pd.DataFrame, canary: str | None = None
) -> pd.DataFrame:
    """One row per weight step: when it ran, traffic by version, error rates, worst p99.

    A step starts where the desired weight changes and ends where the next one
    starts (the last ends at the last sample). ``canary`` names the canary's
    version; by default it is the version that first appears after the first one.
    """
    check_samples(samples)
    line = weight_line(events, max_points=10**9)
    seconds = pd.to_datetime(samples["second"], utc=True)
    versions = list(first_seen(samples.sort_values("second", kind="stable")["version"]))
    canary = canary or (versions[1] if len(versions) > 1 else None)
    columns = ["step", "weight", "start", "end", "requests", "canary_share", "error_rate", "p99_ms"]
    if len(line.time) == 0:
        return pd.DataFrame(columns=columns)
    changes = pd.Series(line.desired, index=line.time)
    changes = changes[changes.ne(changes.shift())].dropna()
    end_of_data = (
        seconds.max() + pd.Timedelta(seconds=1) if not samples.empty else changes.index[-1]
    )
    rows = []
    for i, (begin, w) in enumerate(changes.items()):
        stop = changes.index[i + 1] if i + 1 < len(changes) else end_of_data
        part = samples[(seconds >= begin) & (seconds < stop)]
        by_version = part.groupby(part["version"].astype(str))
        req = by_version["requests"].sum()
        fail = by_version[list(FAILURE_COLUMNS)].sum().sum(axis=1)
        total = float(req.sum())
        row: dict[str, object] = {
            "step": i + 1,
            "weight": float(w),
            "start": begin,
            "end": stop,
            "requests": int(total),
            "canary_share": 100.0 * float(req.get(canary, 0)) / total
            if total and canary
            else math.nan,
            "error_rate": float(fail.sum()) / total if total else math.nan,
            "p99_ms": float(part["p99_ms"].max()) if not part.empty else math.nan,
        }
        for v in versions:
            row[f"requests[{v}]"] = int(req.get(v, 0))
            n = float(req.get(v, 0))
            row[f"error_rate[{v}]"] = float(fail.get(v, 0)) / n if n else math.nan
        rows.append(row)
    return pd.DataFrame(rows)
