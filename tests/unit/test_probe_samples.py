"""Per-request results → per-second samples and the JSON summary (pure)."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from canarylab.probe import SAMPLE_COLUMNS, ProbeSettings, summarize, to_samples
from canarylab.probe.samples import classify_body, requests_frame, shares

T0 = 1_800_000_000.0


def frame(rows: list[tuple[float, str, int, float, str | None]]) -> pd.DataFrame:
    columns = {
        name: [row[i] for row in rows]
        for i, name in enumerate(("t", "version", "status", "latency_ms", "error"))
    }
    return requests_frame(columns)


ROWS = [
    (T0 + 0.1, "v1", 200, 10.0, None),
    (T0 + 0.2, "v1", 200, 20.0, None),
    (T0 + 0.3, "v2", 500, 30.0, "http_error"),
    (T0 + 0.9, "unknown", 0, 5000.0, "timeout"),
    (T0 + 1.5, "unknown", 0, 1.0, "conn_error"),
    (T0 + 1.6, "v2", 200, 40.0, None),
]


def test_samples_have_exactly_the_documented_schema():
    samples = to_samples(frame(ROWS))
    assert tuple(samples.columns) == SAMPLE_COLUMNS
    assert str(samples["second"].dtype) == "datetime64[ns, UTC]"
    assert str(samples["version"].dtype) == "string"
    for col in ("requests", "ok", "http_errors", "timeouts", "conn_errors"):
        assert samples[col].dtype == "int64"
    for col in ("p50_ms", "p95_ms", "p99_ms"):
        assert samples[col].dtype == "float64"


def test_one_row_per_second_and_version_with_failures_by_kind():
    samples = to_samples(frame(ROWS)).set_index(["second", "version"])
    s0, s1 = (
        pd.Timestamp(int(T0), unit="s", tz="UTC"),
        pd.Timestamp(int(T0) + 1, unit="s", tz="UTC"),
    )
    assert samples.loc[(s0, "v1"), "requests"] == 2
    assert samples.loc[(s0, "v1"), "ok"] == 2
    assert samples.loc[(s0, "v1"), "p50_ms"] == pytest.approx(15.0)
    assert samples.loc[(s0, "v2"), "http_errors"] == 1
    assert samples.loc[(s0, "unknown"), "timeouts"] == 1
    # No response arrived: no latency percentile.
    assert math.isnan(samples.loc[(s0, "unknown"), "p50_ms"])
    assert samples.loc[(s1, "unknown"), "conn_errors"] == 1
    assert samples.loc[(s1, "v2"), "ok"] == 1
    assert samples["requests"].sum() == len(ROWS)


def test_summary_is_what_scripts_rely_on():
    summary = summarize(frame(ROWS), elapsed=2.0)
    assert summary["total"] == 6
    assert summary["by_version"] == {"unknown": 2, "v1": 2, "v2": 2}
    assert summary["failed"] == {"http_errors": 1, "timeouts": 1, "conn_errors": 1}
    assert summary["rps"] == 3.0
    assert summary["latency_ms"]["v1"]["p50_ms"] == pytest.approx(15.0)
    assert "unknown" not in summary["latency_ms"]


def test_empty_results_give_empty_samples_and_zero_summary():
    empty = requests_frame({name: [] for name in ("t", "version", "status", "latency_ms", "error")})
    assert tuple(to_samples(empty).columns) == SAMPLE_COLUMNS
    assert summarize(empty, 1.0)["total"] == 0


def test_shares_count_successful_responses_only():
    assert shares(frame(ROWS)) == {"v1": pytest.approx(2 / 3), "v2": pytest.approx(1 / 3)}


def test_body_regex_classifies_like_the_seed_script():
    pattern = re.compile(r"hello (world|Hongbo)")
    assert classify_body(pattern, "hello Hongbo (version v2)") == "Hongbo"
    assert classify_body(re.compile("hello world"), "hello world") == "hello world"
    assert classify_body(pattern, "bye") == "unknown"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "localhost:8080"}, "must start with http"),
        ({"url": "http://x", "duration": 0}, "duration"),
        ({"url": "http://x", "rate": -1}, "rate"),
        ({"url": "http://x", "connections": 0}, "connection"),
    ],
)
def test_bad_settings_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProbeSettings(**kwargs)
