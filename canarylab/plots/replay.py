"""A recorded rollout, ready to replay: normalised events, the step table, verdicts.

Reads a record with ``canarylab.record.load`` (layout in docs/record.md) and turns
its event stream into the event frame :mod:`canarylab.plots.frames` draws. The
per-step table is recomputed from the recorded samples with the very function the
runbook printed its summary with (``canarylab.rollout.step_summary``), so a
postmortem shows the numbers the operator saw; the recorded summaries are kept
alongside to compare. This module reads files only; it never writes and never
reaches a cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from canarylab.plots.frames import EVENT_COLUMNS, empty_events

KIND_MAP = {"action": "action", "status": "status", "event": "event"}


@dataclass(frozen=True)
class Replay:
    """One record, shaped for the figures and the replay notebook."""

    path: Path
    metadata: dict[str, Any]
    samples: pd.DataFrame
    requests: pd.DataFrame
    events: pd.DataFrame
    """Normalised events (:data:`canarylab.plots.frames.EVENT_COLUMNS`) plus ``source_kind``."""
    raw_events: pd.DataFrame = field(repr=False)
    """The record's events as written (``t``, ``kind``, ``message``, ...)."""

    @property
    def title(self) -> str:
        m = self.metadata
        what = m.get("name") or m.get("parent") or self.path.name
        where = m.get("namespace")
        version = m.get("version")
        outcome = m.get("outcome")
        parts = [f"{where}/{what}" if where else str(what)]
        if version:
            parts.append(f"→ {version}")
        if outcome:
            parts.append(f"({outcome})")
        return " ".join(parts)

    def verdicts(self) -> pd.DataFrame:
        """Gate verdicts: step (1-based), gate, outcome, reason, p-value(s) and the numbers."""
        raw = self.raw_events
        if raw.empty or "kind" not in raw:
            return pd.DataFrame(columns=["t", "step", "gate", "outcome", "p_value", "reason"])
        v = raw[raw["kind"] == "verdict"].copy()
        rows = []
        for _, e in v.iterrows():
            numbers = e.get("numbers") if isinstance(e.get("numbers"), dict) else {}
            p_values = {k: x for k, x in numbers.items() if "p_value" in k or k in ("p", "pvalue")}
            rows.append(
                {
                    "t": e["t"],
                    "step": int(e["step"]) + 1 if _present(e.get("step")) else None,
                    "gate": e.get("gate"),
                    "outcome": e.get("outcome"),
                    "p_value": min(p_values.values(), default=math.nan)
                    if all(isinstance(x, int | float) for x in p_values.values())
                    else math.nan,
                    "reason": e.get("reason"),
                    **{f"n.{k}": x for k, x in numbers.items()},
                }
            )
        return pd.DataFrame(rows)

    def recorded_steps(self) -> pd.DataFrame:
        """The summary table as the runbook printed it live (from ``step`` events)."""
        from canarylab.rollout import summary_table

        return summary_table([s["summary"] for s in self._step_ends()])

    def replayed_steps(self) -> pd.DataFrame:
        """The summary table recomputed from the recorded samples and verdicts."""
        from canarylab import gates as g
        from canarylab.rollout import step_summary, summary_table

        traffic = g.Traffic(self.samples, self.requests if len(self.requests) else None)
        verdicts = self.verdicts()
        canary = str(self.metadata.get("version") or "")
        original = self.metadata.get("original_version")
        rows = []
        for end in self._step_ends():
            index = int(end["step"])
            window = g.Window(
                canary=canary,
                original=str(original) if original else None,
                since=end["started"],
            )
            judged = [
                g.Verdict(str(r["gate"]), r["outcome"], str(r["reason"] or ""))
                for _, r in verdicts[verdicts["step"] == index + 1].iterrows()
                if r["t"] <= end["t"]
            ]
            rows.append(
                step_summary(index, int(end["weight"]), traffic, window, judged, until=end["ended"])
            )
        return summary_table(rows)

    def _step_ends(self) -> list[dict[str, Any]]:
        raw = self.raw_events
        if raw.empty or "state" not in raw:
            return []
        steps = raw[raw["kind"] == "step"]
        out: list[dict[str, Any]] = []
        started: dict[int, pd.Timestamp] = {}
        for _, e in steps.iterrows():
            index = int(e["step"])
            if e["state"] in ("started", "resumed"):
                started[index] = _ts(e.get("since")) or e["t"]
            elif e["state"] in ("passed", "failed") and isinstance(e.get("summary"), dict):
                out.append(
                    {
                        "step": index,
                        "weight": e.get("weight", e["summary"].get("weight")),
                        "t": e["t"],
                        "started": started.get(index),
                        "ended": _ts(e.get("until")) or e["t"],
                        "summary": e["summary"],
                    }
                )
        return out


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _ts(value: Any) -> pd.Timestamp | None:
    if not _present(value) or value == "":
        return None
    return (
        pd.Timestamp(value).tz_convert("UTC")
        if pd.Timestamp(value).tzinfo
        else pd.Timestamp(value, tz="UTC")
    )


def normalise_events(raw: pd.DataFrame) -> pd.DataFrame:
    """The record's event stream as the figures' event frame.

    ``action`` rows keep their verb (and weight) as the message; a ``set_weight``
    request also sets the desired weight at that instant. ``status`` rows carry the
    phase and both weights. Kubernetes Events become ``event`` rows. Other kinds
    (``step``, ``verdict``, ``run``) are kept with their own kind.
    """
    if raw.empty:
        out = empty_events()
        out["source_kind"] = pd.Series([], dtype=object)
        return out
    n = len(raw)

    def col(name: str) -> pd.Series:
        return raw[name] if name in raw else pd.Series([None] * n, index=raw.index, dtype=object)

    kind = col("kind").astype(str)
    message = col("message").astype(object)
    what = col("what")
    weight = pd.to_numeric(col("weight"), errors="coerce")
    result = col("result")
    built = [
        f"{w}{'' if not _present(x) else f' {int(x)}'}{'' if not _present(r) else f' ({r})'}"
        for w, x, r in zip(what, weight, result, strict=True)
    ]
    is_action = kind == "action"
    message = message.where(~(is_action & what.notna()), pd.Series(built, index=raw.index))
    desired = pd.to_numeric(col("desired_weight"), errors="coerce")
    weight_request = (
        is_action
        & what.isin(["set_weight", "weight"])
        & ~result.astype(str).str.startswith("error")
    )
    desired = desired.where(~weight_request, weight)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(raw["t"], utc=True),
            "kind": kind.map(lambda k: KIND_MAP.get(k, k)),
            "message": message.fillna("").astype(str),
            "desired_weight": desired.astype(float),
            "applied_weight": pd.to_numeric(col("applied_weight"), errors="coerce").astype(float),
            "phase": col("phase").where(kind == "status", None),
            "source_kind": kind,
        }
    )
    frame.loc[frame["kind"] != "status", "applied_weight"] = np.nan
    return frame[[*EVENT_COLUMNS, "source_kind"]].reset_index(drop=True)


def load(path: str | Path) -> Replay:
    """Load the record at ``path`` (a record directory, or a run's output dir holding ``record/``)."""
    from canarylab import record

    root = Path(path)
    if not (root / "metadata.json").exists() and (root / "record" / "metadata.json").exists():
        root = root / "record"
    r = record.load(root)
    samples = r.samples.copy()
    if len(samples):
        samples["second"] = pd.to_datetime(samples["second"], utc=True)
    return Replay(
        path=root,
        metadata=dict(r.metadata),
        samples=samples,
        requests=r.requests,
        events=normalise_events(r.events),
        raw_events=r.events,
    )
