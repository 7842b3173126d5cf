"""Replay and live-chart costs: ``python benchmarks/replay.py [--runs N]``.

1. Replay of a 24 h record (two versions, one row per second each: 172,800 sample
   rows, plus 10,000 events): ``canarylab.plots.replay.load`` + the timeline, the
   per-step bars and the latency figure. Target: ≤ 2 s.
2. The same for a 1 h record.
3. The live chart's update cost per tick (median and p95 over ``--ticks`` redraws
   of a 300 s window, two versions).

Records are written with the real ``canarylab.record.Recorder``. Its live layout is
one Parquet part per second; a 24 h record in that layout has 86,400 files, so the
24 h case is measured with hourly parts and the 1 h case in both layouts, to show
what part count costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from canarylab.plots import (
    latency_distribution,
    replay,
    step_bars,
    step_table,
    synthetic,
    timeline,
)
from canarylab.widgets import LiveChart

STEPS = (10, 25, 50, 75, 90)  # canary never at 0 or 100, so both versions have a row every second


def replay_once(path: Path) -> tuple[float, float, int, int]:
    """Seconds to load and to build the three figures; rows and events loaded."""
    t0 = time.perf_counter()
    r = replay.load(path)
    t1 = time.perf_counter()
    timeline(r.samples, r.events, title=r.title)
    step_bars(step_table(r.samples, r.events))
    latency_distribution(r.samples, r.requests if len(r.requests) else None)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(r.samples), len(r.events)


def bench_replay(
    label: str, duration_s: int, events: int, seconds_per_part: int, runs: int
) -> None:
    made = synthetic.rollout(duration_s=duration_s, steps=STEPS, rps=200, events=events)
    with tempfile.TemporaryDirectory() as tmp:
        path = synthetic.write_record(made, Path(tmp) / "record", seconds_per_part=seconds_per_part)
        parts = len(list((path / "samples").glob("part-*.parquet")))
        loads, builds, totals = [], [], []
        rows = n_events = 0
        for _ in range(runs):
            load_s, build_s, rows, n_events = replay_once(path)
            loads.append(load_s)
            builds.append(build_s)
            totals.append(load_s + build_s)
    print(
        f"{label}: {rows:,} sample rows, {n_events:,} events, {parts:,} parquet parts — "
        f"load median {statistics.median(loads):.2f}s, figures median {statistics.median(builds):.2f}s, "
        f"total median {statistics.median(totals):.2f}s (max {max(totals):.2f}s, {runs} runs)"
    )


def bench_live(ticks: int) -> None:
    chart = LiveChart(window_s=300)
    t0 = pd.Timestamp("2026-11-27T12:00:00Z")
    rng = np.random.default_rng(1)

    def second(i: int) -> pd.DataFrame:
        n = int(rng.poisson(500))
        canary = int(rng.binomial(n, 0.25))
        return pd.DataFrame(
            {
                "second": [t0 + pd.Timedelta(seconds=i)] * 2,
                "version": ["v1", "v2"],
                "requests": [n - canary, canary],
                "ok": [n - canary, canary],
                "http_errors": [0, 0],
                "timeouts": [0, 0],
                "conn_errors": [0, 0],
                "p50_ms": [3.0, 3.2],
                "p95_ms": [6.0, 6.5],
                "p99_ms": [9.0, 9.5],
            }
        )

    for i in range(300):  # a full window first: the steady state of a long run
        chart.window.push_samples(second(i))
        chart.window.push_weight(t0 + pd.Timedelta(seconds=i), 25, 25)
    pushes, redraws = [], []
    for i in range(300, 300 + ticks):
        batch = second(i)
        start = time.perf_counter()
        chart.window.push_samples(batch)
        chart.window.push_weight(t0 + pd.Timedelta(seconds=i), 25, 25)
        pushes.append(time.perf_counter() - start)
        redraws.append(chart.refresh().seconds)
    q = lambda xs, p: float(np.percentile(xs, p)) * 1000  # noqa: E731
    print(
        f"live chart tick (300 s window, 2 versions): push median {q(pushes, 50):.1f} ms, "
        f"redraw median {q(redraws, 50):.1f} ms, p95 {q(redraws, 95):.1f} ms over {ticks} ticks"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=100)
    args = parser.parse_args()
    bench_replay("24 h record, hourly parts", 86_400, 10_000, 3600, args.runs)
    bench_replay("1 h record, hourly parts", 3600, 10_000, 3600, args.runs)
    bench_replay("1 h record, live layout (1 part/s)", 3600, 10_000, 1, 1)
    bench_live(args.ticks)


if __name__ == "__main__":
    main()
