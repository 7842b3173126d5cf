"""Synthetic rollouts in the probe sample schema, for benchmarks, tests and offline demos.

A seeded generator, so a benchmark and a test see the same data every run. It
draws traffic that follows a step plan (canary share close to the weight),
latency with a little noise, rare failures, and an event stream with operator
actions, weight changes and filler Kubernetes Events. It must never be used to
stand in for a real probe in an integration test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from canarylab.plots.frames import EVENT_COLUMNS


@dataclass(frozen=True)
class SyntheticRollout:
    """Samples and events of one made-up rollout."""

    samples: pd.DataFrame
    events: pd.DataFrame
    steps: tuple[int, ...]
    start: pd.Timestamp


def rollout(
    duration_s: int = 3600,
    steps: Sequence[int] = (0, 5, 25, 50, 100),
    rps: float = 50.0,
    events: int = 200,
    original: str = "v1",
    canary: str = "v2",
    canary_error_rate: float = 0.0,
    start: str = "2026-11-27T12:00:00Z",
    seed: int = 7,
) -> SyntheticRollout:
    """One rollout over ``duration_s`` seconds: two versions, a row per (second, version)."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start)
    n = int(duration_s)
    step_len = max(1, n // len(steps))
    step_index = np.minimum(np.arange(n) // step_len, len(steps) - 1)
    weight = np.asarray(steps, dtype=float)[step_index]
    total = rng.poisson(rps, n)
    canary_n = rng.binomial(total, weight / 100.0)
    original_n = total - canary_n
    seconds = pd.date_range(t0, periods=n, freq="s")

    def version_rows(version: str, count: np.ndarray, error_rate: float) -> pd.DataFrame:
        errors = rng.binomial(count, error_rate + 0.0005)
        p50 = rng.gamma(9.0, 1.0, n) + 5.0
        return pd.DataFrame(
            {
                "second": seconds,
                "version": version,
                "requests": count,
                "ok": count - errors,
                "http_errors": errors,
                "timeouts": np.zeros(n, dtype=np.int64),
                "conn_errors": np.zeros(n, dtype=np.int64),
                "p50_ms": np.where(count > 0, p50, np.nan),
                "p95_ms": np.where(count > 0, p50 * 1.8, np.nan),
                "p99_ms": np.where(count > 0, p50 * 2.5 + rng.exponential(3.0, n), np.nan),
            }
        )

    samples = pd.concat(
        [
            version_rows(original, original_n, 0.0),
            version_rows(canary, canary_n, canary_error_rate),
        ],
        ignore_index=True,
    ).sort_values(["second", "version"], ignore_index=True)
    samples = samples[samples["requests"] > 0].reset_index(drop=True)
    return SyntheticRollout(samples, _events(rng, t0, n, steps, step_len, events), tuple(steps), t0)


def _events(
    rng: np.random.Generator,
    t0: pd.Timestamp,
    n: int,
    steps: Sequence[int],
    step_len: int,
    count: int,
) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    for i, w in enumerate(steps):
        at = t0 + pd.Timedelta(seconds=i * step_len)
        verb = "create canary" if i == 0 else f"set weight {w}"
        rows.append(_row(at, "action", verb, w, None, None))
        rows.append(
            _row(at + pd.Timedelta(seconds=1), "status", f"applied {w}", w, w, "Progressing")
        )
    rows.append(_row(t0 + pd.Timedelta(seconds=n - 1), "action", "replace", None, None, None))
    rows.append(
        _row(t0 + pd.Timedelta(seconds=n - 1), "status", "Replaced", None, None, "Replaced")
    )
    filler = max(0, count - len(rows))
    offsets = np.sort(rng.integers(0, n, filler))
    for off in offsets:
        rows.append(
            _row(t0 + pd.Timedelta(seconds=int(off)), "event", "Pulled image", None, None, None)
        )
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["desired_weight"] = frame["desired_weight"].astype(float)
    frame["applied_weight"] = frame["applied_weight"].astype(float)
    return frame.sort_values("time", kind="stable", ignore_index=True)


def _row(
    at: pd.Timestamp,
    kind: str,
    message: str,
    desired: float | None,
    applied: float | None,
    phase: str | None,
) -> dict[str, object]:
    return {
        "time": at,
        "kind": kind,
        "message": message,
        "desired_weight": np.nan if desired is None else float(desired),
        "applied_weight": np.nan if applied is None else float(applied),
        "phase": phase,
    }


def write_record(made: SyntheticRollout, path: str | Path, seconds_per_part: int = 60) -> Path:
    """Write ``made`` as a canarylab record (docs/record.md) at ``path``; returns the path.

    Samples go in Parquet parts of ``seconds_per_part`` seconds (the live recorder
    writes about one a second); events go through the recorder, weights as
    ``status`` events and operator actions as ``action`` events.
    """
    from canarylab.record import Recorder
    from canarylab.record.events import Kind

    out = Path(path)
    with Recorder(out, metadata={"kind": "synthetic", "version": "v2", "name": "demo"}) as rec:
        s = made.samples
        key = (s["second"] - made.start).dt.total_seconds().astype(int) // seconds_per_part
        for _, part in s.groupby(key, sort=True):
            rec.samples(part)
        for e in made.events.itertuples(index=False):
            t = e.time.isoformat()
            if e.kind == Kind.ACTION:
                rec.event(
                    Kind.ACTION, t=t, message=e.message, what=e.message.split(" ")[0], result="ok"
                )
            elif e.kind == Kind.STATUS:
                rec.event(
                    Kind.STATUS,
                    t=t,
                    message=e.message,
                    phase=e.phase,
                    desired_weight=None if np.isnan(e.desired_weight) else int(e.desired_weight),
                    applied_weight=None if np.isnan(e.applied_weight) else int(e.applied_weight),
                )
            else:
                rec.event(Kind.EVENT, t=t, message=e.message, reason="Pulled", type="Normal")
    return out
