"""Writing a record incrementally (see the package docstring and docs/record.md).

Must never rewrite what is already on disk except ``metadata.json`` (replaced
atomically): events are appended, sample parts are added.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import socket
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from canarylab.record.events import Kind

SCHEMA_VERSION = 1
_PART = re.compile(r"part-(\d+)\.parquet$")


def default_actor() -> str:
    """``user@host`` of whoever runs this process (a runbook, a notebook, the CLI)."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = os.environ.get("USER", "unknown")
    return f"{user}@{socket.gethostname()}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Recorder:
    """Appends to one rollout's record directory; safe to share between threads.

    Opening an existing directory continues it (a re-run after an interruption adds to
    the same record instead of starting a second one).
    """

    def __init__(
        self,
        path: str | Path,
        metadata: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.actor = actor or default_actor()
        self._lock = threading.Lock()
        (self.path / "samples").mkdir(parents=True, exist_ok=True)
        (self.path / "requests").mkdir(exist_ok=True)
        meta_file = self.path / "metadata.json"
        existing: dict[str, Any] = {}
        if meta_file.exists():
            existing = json.loads(meta_file.read_text())
        meta = {
            "schema": SCHEMA_VERSION,
            "created_at": existing.get("created_at", now()),
            "runs": [*existing.get("runs", []), {"started_at": now(), "by": self.actor}],
            **{k: v for k, v in existing.items() if k not in ("schema", "created_at", "runs")},
            **dict(metadata or {}),
        }
        self._meta = meta
        self._write_metadata()
        self._events = (self.path / "events.jsonl").open("a", encoding="utf-8")
        self._next = {
            kind: 1
            + max((_part_no(p) for p in (self.path / kind).glob("part-*.parquet")), default=-1)
            for kind in ("samples", "requests")
        }

    # -- metadata -----------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._meta)

    def update_metadata(self, **fields: Any) -> None:
        """Merge ``fields`` into ``metadata.json`` (e.g. the outcome at the end)."""
        with self._lock:
            self._meta.update(fields)
            self._write_metadata()

    def _write_metadata(self) -> None:
        tmp = self.path / "metadata.json.tmp"
        text = json.dumps(_plain(self._meta), indent=2, default=_json_default)
        tmp.write_text(text + "\n")
        os.replace(tmp, self.path / "metadata.json")

    # -- events -------------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one event (``t`` and ``kind`` first) and flush it to disk."""
        fields.setdefault("message", kind)
        record = {"t": fields.pop("t", None) or now(), "kind": kind, **fields}
        line = json.dumps(_plain(record), default=_json_default, allow_nan=False)
        with self._lock:
            self._events.write(line + "\n")
            self._events.flush()
        return record

    def action(self, what: str, result: str, who: str | None = None, **details: Any) -> None:
        """An operator action: who did what, and what came of it."""
        details.setdefault("message", f"{what}: {result}")
        self.event(Kind.ACTION, who=who or self.actor, what=what, result=result, **details)

    # -- samples ------------------------------------------------------------------

    def samples(self, frame: pd.DataFrame) -> None:
        """Add per-second samples (probe schema) as one new Parquet part."""
        self._part("samples", frame)

    def requests(self, frame: pd.DataFrame) -> None:
        """Add per-request results as one new Parquet part."""
        self._part("requests", frame)

    def _part(self, kind: str, frame: pd.DataFrame) -> None:
        if frame is None or not len(frame):
            return
        with self._lock:
            n = self._next[kind]
            self._next[kind] = n + 1
            final = self.path / kind / f"part-{n:06d}.parquet"
            tmp = final.with_suffix(".parquet.tmp")
            frame.reset_index(drop=True).to_parquet(tmp, engine="pyarrow", index=False)
            os.replace(tmp, final)

    def close(self) -> None:
        with self._lock:
            if not self._events.closed:
                self._events.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _part_no(path: Path) -> int:
    m = _PART.search(path.name)
    return int(m.group(1)) if m else -1


def _plain(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "as_dict"):
        return _plain(value.as_dict())
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return str(value)
