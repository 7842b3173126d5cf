"""The recorder writes a directory that load() reads back, and survives crashes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from canarylab import record
from canarylab.record.reader import RecordError

T0 = pd.Timestamp("2026-11-27T12:00:00Z")


def second(i: int, version: str = "v1", n: int = 10, errors: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "second": [T0 + pd.Timedelta(seconds=i)],
            "version": [version],
            "requests": [n],
            "ok": [n - errors],
            "http_errors": [errors],
            "timeouts": [0],
            "conn_errors": [0],
            "p50_ms": [1.0],
            "p95_ms": [2.0],
            "p99_ms": [float("nan")],
        }
    )


def test_round_trip(tmp_path: Path) -> None:
    with record.Recorder(
        tmp_path / "r", {"parent": "hello", "parameters": {"steps": [5, 50]}}
    ) as rec:
        rec.action("create_canary", "created", version="v2", weight=0)
        rec.event("weight", desired=5, applied=5)
        for i in range(3):
            rec.samples(pd.concat([second(i), second(i, "v2", 2, 1)]))
        rec.requests(
            pd.DataFrame(
                {
                    "t": [T0],
                    "version": ["v1"],
                    "status": [200],
                    "latency_ms": [1.5],
                    "error": [None],
                }
            )
        )
        rec.update_metadata(outcome="succeeded")
    r = record.load(tmp_path / "r")
    assert r.metadata["parent"] == "hello"
    assert r.metadata["parameters"] == {"steps": [5, 50]}
    assert r.metadata["outcome"] == "succeeded"
    assert r.metadata["schema"] == record.SCHEMA_VERSION
    assert list(r.events["kind"]) == ["action", "weight"]
    action = r.events_of("action").iloc[0]
    assert action["what"] == "create_canary"
    assert action["result"] == "created"
    assert "@" in action["who"]
    assert str(r.events["t"].dtype).startswith("datetime64")
    assert len(r.samples) == 6
    assert r.totals == {"requests": 36, "failed": 3}
    assert len(r.requests) == 1
    assert len(list((tmp_path / "r" / "samples").glob("part-*.parquet"))) == 3


def test_a_crash_loses_at_most_the_unfinished_part(tmp_path: Path) -> None:
    rec = record.Recorder(tmp_path / "r")
    rec.samples(second(0))
    rec.event("phase", phase="Progressing")
    # What a kill -9 in the middle of writing leaves: a torn JSON line, a temp part.
    with (tmp_path / "r" / "events.jsonl").open("a") as f:
        f.write('{"t": "2026-11-27T12:00:01Z", "kind": "pha')
    (tmp_path / "r" / "samples" / "part-000001.parquet.tmp").write_bytes(b"PAR1 garbage")
    r = record.load(tmp_path / "r")
    assert len(r.samples) == 1
    assert list(r.events["kind"]) == ["phase"]


def test_reopening_continues_the_same_record(tmp_path: Path) -> None:
    with record.Recorder(tmp_path / "r", {"parent": "hello"}) as rec:
        rec.samples(second(0))
        rec.action("set_weight", "applied", weight=5)
    with record.Recorder(tmp_path / "r", {"rerun": True}) as rec:
        rec.samples(second(1))
        rec.action("set_weight", "unchanged", weight=5)
    r = record.load(tmp_path / "r")
    assert len(r.samples) == 2
    assert len(r.metadata["runs"]) == 2
    assert r.metadata["parent"] == "hello"
    assert r.metadata["rerun"] is True
    assert list(r.events_of("action")["result"]) == ["applied", "unchanged"]


def test_events_are_json_lines_without_nan(tmp_path: Path) -> None:
    with record.Recorder(tmp_path / "r") as rec:
        rec.event("verdict", numbers={"p_value": float("nan"), "n": 3}, at=T0)
    line = (tmp_path / "r" / "events.jsonl").read_text().splitlines()[0]
    data = json.loads(line)
    assert data["numbers"] == {"p_value": None, "n": 3}
    assert data["at"].startswith("2026-11-27T12:00:00")


def test_empty_record_has_the_documented_columns(tmp_path: Path) -> None:
    record.Recorder(tmp_path / "r").close()
    r = record.load(tmp_path / "r")
    assert list(r.samples.columns)[:3] == ["second", "version", "requests"]
    assert r.totals == {"requests": 0, "failed": 0}


def test_loading_something_else_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="not a canarylab record"):
        record.load(tmp_path)


def test_rows_of_a_kind_hold_only_the_keys_each_event_has(tmp_path: Path) -> None:
    from canarylab.record.events import Kind, StepEvent, StepState

    with record.Recorder(tmp_path / "r") as rec:
        rec.event(Kind.STEP, **StepEvent(step=0, weight=5).fields())
        rec.event(Kind.STEP, **StepEvent(step=0, weight=5, state=StepState.PASSED).fields())
        rec.event(Kind.PROBE, message="probe started", url="http://gw/")
    r = record.load(tmp_path / "r")
    steps = r.rows_of(Kind.STEP)
    assert [e["state"] for e in steps] == ["started", "passed"]
    assert all("url" not in e for e in steps)  # a NaN column of the frame, not a key here
    assert "summary" not in steps[1]
    assert len(r.events_of(Kind.PROBE)) == 1
    assert r.rows_of(Kind.VERDICT) == []
