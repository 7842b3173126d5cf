"""Per-request results → per-second samples and a summary (pure pandas).

The sample schema is the contract in docs/architecture.md: one row per (second,
version) with ``requests``, ``ok``, ``http_errors``, ``timeouts``, ``conn_errors`` and
latency percentiles. Every engine (asyncio, wrk) produces per-request results in the
``REQUEST_COLUMNS`` shape and goes through ``to_samples``.

This module must never do network I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

# Re-exported: the probe is where most readers look for its schema.
from canarylab.model.samples import FAILURE_KINDS as FAILURE_KINDS
from canarylab.model.samples import REQUEST_COLUMNS as REQUEST_COLUMNS
from canarylab.model.samples import SAMPLE_COLUMNS as SAMPLE_COLUMNS

UNKNOWN = "unknown"
"""The version of a response that carried none, or of a request with no response."""


def classify_body(pattern: re.Pattern[str], body: str) -> str:
    """The version a body regex finds: its first group, else the whole match."""
    found = pattern.search(body)
    if not found:
        return UNKNOWN
    return found.group(1) if found.groups() else found.group(0)


def empty_requests() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "t": pd.Series(dtype="float64"),
            "version": pd.Series(dtype="string"),
            "status": pd.Series(dtype="int64"),
            "latency_ms": pd.Series(dtype="float64"),
            "error": pd.Series(dtype="object"),
        }
    )


def requests_frame(columns: Mapping[str, Any]) -> pd.DataFrame:
    """A per-request DataFrame from column lists (the engines' storage)."""
    if not len(columns["t"]):
        return empty_requests()
    frame = pd.DataFrame({name: columns[name] for name in REQUEST_COLUMNS})
    return frame.astype({"t": "float64", "version": "string", "status": "int64"})


def empty_samples() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="int64") for c in SAMPLE_COLUMNS})
    frame["second"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["version"] = pd.Series(dtype="string")
    for col in ("p50_ms", "p95_ms", "p99_ms"):
        frame[col] = pd.Series(dtype="float64")
    return frame


def to_samples(requests: pd.DataFrame) -> pd.DataFrame:
    """One row per (second, version), in the schema of docs/architecture.md."""
    if requests.empty:
        return empty_samples()
    frame = requests.assign(
        second=pd.to_datetime(np.floor(requests["t"]).astype("int64"), unit="s", utc=True).astype(
            "datetime64[ns, UTC]"
        ),
        ok=(requests["error"].isna()).astype("int64"),
        http_errors=(requests["error"] == "http_error").astype("int64"),
        timeouts=(requests["error"] == "timeout").astype("int64"),
        conn_errors=(requests["error"] == "conn_error").astype("int64"),
        answered=requests["status"] > 0,
    )
    grouped = frame.groupby(["second", "version"], sort=True, observed=True)
    counts = grouped.agg(
        requests=("t", "size"),
        ok=("ok", "sum"),
        http_errors=("http_errors", "sum"),
        timeouts=("timeouts", "sum"),
        conn_errors=("conn_errors", "sum"),
    )
    answered = frame[frame["answered"]].groupby(["second", "version"], observed=True)["latency_ms"]
    quantiles = answered.quantile([0.5, 0.95, 0.99]).unstack()
    quantiles.columns = ["p50_ms", "p95_ms", "p99_ms"]
    out = counts.join(quantiles, how="left").reset_index()
    out = out.astype(
        {
            "version": "string",
            "requests": "int64",
            "ok": "int64",
            "http_errors": "int64",
            "timeouts": "int64",
            "conn_errors": "int64",
            "p50_ms": "float64",
            "p95_ms": "float64",
            "p99_ms": "float64",
        }
    )
    return out.loc[:, list(SAMPLE_COLUMNS)]


def summarize(requests: pd.DataFrame, elapsed: float) -> dict[str, Any]:
    """The JSON summary scripts rely on: total, by_version, failed, rps, latency."""
    total = len(requests)
    failed = {kind: 0 for kind in FAILURE_KINDS}
    by_version: dict[str, int] = {}
    latency: dict[str, dict[str, float]] = {}
    if total:
        errors = requests["error"].value_counts()
        failed = {
            "http_errors": int(errors.get("http_error", 0)),
            "timeouts": int(errors.get("timeout", 0)),
            "conn_errors": int(errors.get("conn_error", 0)),
        }
        by_version = {str(k): int(v) for k, v in requests["version"].value_counts().items()}
        answered = requests[requests["status"] > 0]
        for version, group in answered.groupby("version", observed=True):
            q = group["latency_ms"].quantile([0.5, 0.95, 0.99])
            latency[str(version)] = {
                "p50_ms": round(float(q[0.5]), 3),
                "p95_ms": round(float(q[0.95]), 3),
                "p99_ms": round(float(q[0.99]), 3),
            }
    return {
        "total": total,
        "by_version": dict(sorted(by_version.items())),
        "failed": failed,
        "failed_total": sum(failed.values()),
        "rps": round(total / elapsed, 1) if elapsed > 0 else 0.0,
        "duration_s": round(elapsed, 3),
        "latency_ms": latency,
    }


def shares(requests: pd.DataFrame) -> dict[str, float]:
    """Each version's share of successful responses (0..1)."""
    ok = requests[requests["error"].isna()]
    if ok.empty:
        return {}
    counts = ok["version"].value_counts()
    return {str(k): float(v) / len(ok) for k, v in counts.items()}
