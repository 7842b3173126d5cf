"""The live chart's bounded memory: the last N seconds of samples and weights.

Pure and thread-safe; it knows nothing about plotly or widgets. A probe thread
pushes into it, the chart's refresh reads a snapshot. Whatever runs for an hour
holds no more than ``window_s`` seconds, so a refresh costs the same after a
minute and after a day. It must never grow without bound or block a pusher for
longer than a list copy.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from canarylab.model.samples import SAMPLE_COLUMNS

MERGE_EVERY = 16
"""Pushed frames kept apart before they are merged into one."""


def sample_rows(
    batch: pd.DataFrame | Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> pd.DataFrame:
    """Normalise one push (a DataFrame, one row as a mapping, or rows) to a samples frame."""
    if isinstance(batch, pd.DataFrame):
        frame = batch
    elif isinstance(batch, Mapping):
        frame = pd.DataFrame([dict(batch)])
    else:
        frame = pd.DataFrame([dict(row) for row in batch])
    missing = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"live chart got samples without {', '.join(missing)}; feed it the probe's "
            "per-second samples (docs/architecture.md)"
        )
    frame = frame.loc[:, list(SAMPLE_COLUMNS)].copy()
    frame["second"] = pd.to_datetime(frame["second"], utc=True)
    return frame


class LiveWindow:
    """The last ``window_s`` seconds of samples and weight readings."""

    def __init__(self, window_s: int = 300) -> None:
        if window_s < 2:
            raise ValueError("window_s must be at least 2 seconds")
        self.window_s = window_s
        self._lock = threading.Lock()
        self._samples: deque[pd.DataFrame] = deque()
        self._weights: deque[tuple[pd.Timestamp, float, float]] = deque()
        self._newest: pd.Timestamp | None = None
        self.pushed = 0
        """Sample rows received in total (not only those still in the window)."""

    def push_samples(
        self, batch: pd.DataFrame | Mapping[str, Any] | Iterable[Mapping[str, Any]]
    ) -> int:
        """Add samples; returns how many rows were added."""
        frame = sample_rows(batch)
        if frame.empty:
            return 0
        newest = frame["second"].max()
        with self._lock:
            self._samples.append(frame)
            self.pushed += len(frame)
            if self._newest is None or newest > self._newest:
                self._newest = newest
            self._trim()
        return len(frame)

    def push_weight(self, at: pd.Timestamp, desired: float | None, applied: float | None) -> None:
        """Record the resource's desired and applied weight as read at ``at``."""
        reading = (
            pd.Timestamp(at).tz_convert("UTC")
            if pd.Timestamp(at).tzinfo
            else pd.Timestamp(at, tz="UTC"),
            np.nan if desired is None else float(desired),
            np.nan if applied is None else float(applied),
        )
        with self._lock:
            self._weights.append(reading)
            if self._newest is None or reading[0] > self._newest:
                self._newest = reading[0]
            self._trim()

    def _trim(self) -> None:
        assert self._newest is not None
        cutoff = self._newest - pd.Timedelta(seconds=self.window_s)
        while self._samples and self._samples[0]["second"].max() < cutoff:
            self._samples.popleft()
        if len(self._samples) > MERGE_EVERY:  # one frame, not 300: a snapshot stays cheap
            merged = pd.concat(self._samples, ignore_index=True)
            self._samples = deque([merged[merged["second"] >= cutoff]])
        while len(self._weights) > 1 and self._weights[1][0] < cutoff:
            self._weights.popleft()

    def snapshot(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(samples, weights) inside the window, as frames."""
        with self._lock:
            parts = list(self._samples)
            weights = list(self._weights)
            newest = self._newest
        if parts:
            samples = pd.concat(parts, ignore_index=True)
            if newest is not None:
                cutoff = newest - pd.Timedelta(seconds=self.window_s)
                samples = samples[samples["second"] >= cutoff]
        else:
            samples = pd.DataFrame({c: [] for c in SAMPLE_COLUMNS})
            samples["second"] = pd.to_datetime(samples["second"], utc=True)
        frame = pd.DataFrame(weights, columns=["time", "desired_weight", "applied_weight"])
        return samples.reset_index(drop=True), frame
