"""Reading a record back into DataFrames (``canarylab.record.load``).

Tolerates what a crash leaves behind: a half-written last line of ``events.jsonl``
and ``*.tmp`` parts are skipped, never an error. Never writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from canarylab.errors import CanarylabError
from canarylab.model.samples import REQUEST_COLUMNS, SAMPLE_COLUMNS
from canarylab.record.events import Kind


class RecordError(CanarylabError):
    """A path is not a canarylab record."""


@dataclass(frozen=True)
class Record:
    """A loaded record: metadata plus one DataFrame per stream."""

    path: Path
    metadata: dict[str, Any]
    events: pd.DataFrame
    samples: pd.DataFrame
    requests: pd.DataFrame = field(repr=False)

    def events_of(self, kind: Kind | str) -> pd.DataFrame:
        """The events of one kind (``Kind.VERDICT``, ``Kind.ACTION``, ...), as a frame."""
        return self.events[self.events["kind"] == str(kind)].reset_index(drop=True)

    def rows_of(self, kind: Kind | str) -> list[dict[str, Any]]:
        """The events of one kind as dicts holding only the keys each event has."""
        return rows(self.events, kind)

    @property
    def totals(self) -> dict[str, int]:
        """``requests`` and ``failed`` over the whole record."""
        s = self.samples
        failed = sum(int(s[c].sum()) for c in ("http_errors", "timeouts", "conn_errors"))
        return {"requests": int(s["requests"].sum()), "failed": failed}


def load(path: str | Path) -> Record:
    """Load the record in directory ``path``."""
    root = Path(path)
    meta_file = root / "metadata.json"
    if not meta_file.is_file():
        raise RecordError(
            f"{root} is not a canarylab record (no metadata.json); "
            "pass the directory a runbook or Recorder wrote"
        )
    metadata = json.loads(meta_file.read_text())
    return Record(
        path=root,
        metadata=metadata,
        events=_events(root / "events.jsonl"),
        samples=_parts(root / "samples", SAMPLE_COLUMNS, "second"),
        requests=_parts(root / "requests", REQUEST_COLUMNS, "t"),
    )


def rows(events: pd.DataFrame, kind: Kind | str | None = None) -> list[dict[str, Any]]:
    """Events (of ``kind``, or all) as dicts, in time order, without the gaps of the frame.

    An event frame has a column for every key any event has, so an event lacks a key as
    NaN; here it simply lacks the key. Readers then ask ``e.get("step")`` of old and new
    records alike.
    """
    if events.empty or "kind" not in events:
        return []
    picked = events if kind is None else events[events["kind"] == str(kind)]
    return [
        {k: v for k, v in row.items() if not _missing(v)}
        for row in picked.to_dict(orient="records")
    ]


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NaT


def _events(file: Path) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    if file.exists():
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the line a crash cut short
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["t", "kind"])
    frame["t"] = pd.to_datetime(frame["t"], utc=True, format="ISO8601")
    return frame.sort_values("t", kind="stable").reset_index(drop=True)


def _parts(folder: Path, columns: tuple[str, ...], time_column: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    # One Arrow table and a single conversion: a live record has a part per second,
    # and per-part pandas reads cost ~3x more than Arrow's.
    tables = [t for t in (pq.read_table(f) for f in files) if t.num_rows]
    if not tables:
        empty = pd.DataFrame({c: [] for c in columns})
        empty[time_column] = pd.to_datetime(empty[time_column], utc=True)
        return empty
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return frame.sort_values(time_column, kind="stable").reset_index(drop=True)
