"""A recorded rollout, ready to replay: the outcome and why, one step table, verdicts.

Reads a record with ``canarylab.record.load`` (layout in docs/record.md) and turns
its event stream into what a postmortem reads first: :meth:`Replay.decision` (how the
run ended, which gate decided, on which numbers, at which step), then
:meth:`Replay.step_table` (one row a step, replayed from the recorded samples with the
function the runbook printed its summary with, ``canarylab.rollout.step_summary``, and a
note wherever that differs from what the runbook judged), every verdict, and the
extensions, probe and lease events. Every reader here takes the record's vocabulary
from :mod:`canarylab.record.events` and copes with records that lack the newer events.
This module reads files only; it never writes and never reaches a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from canarylab.plots.frames import EVENT_COLUMNS, empty_events
from canarylab.plots.verdicts import fmt, gate_state, readable
from canarylab.record.events import Kind, Outcome, ProbeState, Reason, RunState, StepState
from canarylab.record.reader import rows

KIND_MAP: dict[str, str] = {Kind.ACTION: "action", Kind.STATUS: "status", Kind.EVENT: "event"}

INCIDENT_KINDS = (Kind.EXTENSION, Kind.BASELINE, Kind.PROBE, Kind.LEASE, Kind.CHART)
"""Kinds the report lists beside the steps: what held, measured or went wrong."""

OUTCOME_WORDS: dict[str, str] = {
    Outcome.SUCCEEDED: "promoted",
    Outcome.ROLLED_BACK: "rolled back (canary at weight 0)",
    Outcome.FAILED: "FAILED: rollback failed or state unknown",
}


@dataclass(frozen=True)
class Decision:
    """How a recorded run ended and why: what the report leads with."""

    outcome: str | None
    """``succeeded``, ``rolled-back``, ``failed``; None while running or when unrecorded."""
    reason: str | None = None
    """A :class:`~canarylab.record.events.Reason`, when the run stopped before promotion."""
    step: int | None = None
    """1-based step that decided (the failed one), when one did."""
    weight: int | None = None
    at: pd.Timestamp | None = None
    message: str = ""
    """The runner's own sentence (the failed step's, else the finished run's)."""
    verdicts: tuple[Mapping[str, Any], ...] = ()
    """The deciding verdicts: the failing gate, or those still collecting at max_hold, or
    (promoted) the last step's."""
    exit_code: int | None = None

    @property
    def headline(self) -> str:
        """One line: the outcome, and the reason and step when there is one."""
        if self.outcome is None:
            return "no outcome recorded (still running, or the driver died before the end)"
        text = OUTCOME_WORDS.get(self.outcome, self.outcome)
        if self.reason:
            text += f" — {self.reason}"
        if self.step is not None:
            text += f" at step {self.step}"
            if self.weight is not None:
                text += f" (weight {self.weight}%)"
        if self.exit_code is not None:
            text += f" · exit code {self.exit_code}"
        return text

    @property
    def why(self) -> list[str]:
        """Sentences: which gate decided and on which numbers (or the runner's message)."""
        lines = []
        for v in self.verdicts:
            s = gate_state(v)
            look = _int(v.get("look"))
            at = f" (look {look})" if look is not None else ""
            lines.append(
                f"gate {s.gate} {s.state}{at}: {s.reason} [{s.evidence}; {s.statistic}]"
                if s.reason
                else f"gate {s.gate} {s.state}{at} [{s.evidence}; {s.statistic}]"
            )
        failing = any(v.get("outcome") == "fail" for v in self.verdicts)
        if self.message and (not lines or not failing):
            # the runner's sentence carries the final numbers of gates still collecting
            lines.insert(0, readable(self.message))
        return lines


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
        what = _text(m.get("name")) or _text(m.get("parent")) or self.path.name
        where = _text(m.get("namespace"))
        version = _text(m.get("version"))
        outcome = _text(m.get("outcome"))
        parts = [f"{where}/{what}" if where else what]
        if version:
            parts.append(f"→ {version}")
        if outcome:
            parts.append(f"({outcome})")
        return " ".join(parts)

    def rows_of(self, kind: Kind) -> list[dict[str, Any]]:
        """The record's events of ``kind`` as dicts with only the keys each one has."""
        return rows(self.raw_events, kind)

    # -- the outcome and why --------------------------------------------------------

    def decision(self) -> Decision:
        """How the run ended, which gate decided, on which numbers, at which step."""
        runs = [e for e in self.rows_of(Kind.RUN) if e.get("state") == RunState.FINISHED]
        last_start = max(
            (
                e["t"]
                for e in self.rows_of(Kind.RUN)
                if e.get("state") in (RunState.STARTED, RunState.RESUMED)
            ),
            default=None,
        )
        finished = runs[-1] if runs else {}
        outcome = _text(finished.get("outcome")) or _text(self.metadata.get("outcome")) or None
        reason = _text(finished.get("reason")) or _text(self.metadata.get("reason")) or None
        exit_code = _int(finished.get("exit_code", self.metadata.get("exit_code")))
        failed = [
            e
            for e in self.rows_of(Kind.STEP)
            if e.get("state") == StepState.FAILED and (last_start is None or e["t"] >= last_start)
        ]
        verdicts = self.rows_of(Kind.VERDICT)
        step_index = _int(finished.get("step"))
        if failed:
            end = failed[-1]
            step_index = _int(end.get("step"))
            reason = reason or _text(end.get("reason")) or None
            in_step = [v for v in verdicts if _int(v.get("step")) == step_index]
            deciding: list[dict[str, Any]] = [v for v in in_step if v.get("outcome") == "fail"][:1]
            if not deciding and reason == Reason.INSUFFICIENT_EVIDENCE:
                deciding = [v for v in _last_per_gate(in_step) if v.get("outcome") != "pass"]
            weight = _int(end.get("weight"))
            return Decision(
                outcome,
                reason,
                None if step_index is None else step_index + 1,
                weight,
                end["t"],
                _text(end.get("message")),
                tuple(deciding),
                exit_code,
            )
        passed = [e for e in self.rows_of(Kind.STEP) if e.get("state") == StepState.PASSED]
        last = _int(passed[-1].get("step")) if passed else None
        deciding = (
            [v for v in _last_per_gate(verdicts) if _int(v.get("step")) == last]
            if outcome == Outcome.SUCCEEDED and last is not None
            else []
        )
        message = _text(finished.get("message"))
        if outcome != Outcome.SUCCEEDED:
            deciding = [v for v in verdicts if v.get("outcome") == "fail"][:1]
            problems = [e for e in rows(_notable(self.raw_events)) if _is_problem(e)]
            if not message and problems:  # e.g. a probe that never reached its target
                message = _text(problems[-1].get("message")) or _text(problems[-1].get("error"))
        return Decision(
            outcome,
            reason,
            None if step_index is None else step_index + 1,
            None,
            finished.get("t"),
            message,
            tuple(deciding),
            exit_code,
        )

    # -- verdicts and what else happened --------------------------------------------

    def verdicts(self) -> pd.DataFrame:
        """Every recorded verdict: time, step (1-based), look, gate, state, evidence, numbers."""
        columns = ["t", "step", "look", "gate", "outcome", "state", "evidence", "statistic"]
        columns += ["p_value", "reason"]
        out = []
        for e in self.rows_of(Kind.VERDICT):
            numbers = e.get("numbers") if isinstance(e.get("numbers"), dict) else {}
            assert isinstance(numbers, dict)
            s = gate_state(e)
            p_values = [
                x for k, x in numbers.items() if "p_value" in k and isinstance(x, int | float)
            ]
            step = _int(e.get("step"))
            out.append(
                {
                    "t": e["t"],
                    "step": None if step is None else step + 1,
                    "look": _int(e.get("look")),
                    "gate": s.gate,
                    "outcome": s.outcome,
                    "state": s.state,
                    "evidence": s.evidence,
                    "statistic": s.statistic,
                    "p_value": min(p_values, default=math.nan),
                    "reason": s.reason,
                    **{f"n.{k}": x for k, x in numbers.items()},
                }
            )
        return pd.DataFrame(out, columns=columns if not out else None)

    def metric_series(self) -> pd.DataFrame:
        """Every point of every metric series the gates judged (``evidence: metrics|both``):
        template, key (``<side>.<what>``), PromQL, series labels, time and value."""
        columns = ["template", "key", "query", "series", "t", "value"]
        out = []
        for e in self.rows_of(Kind.METRICS):
            for judged in e.get("evidence") or []:
                for labels, points in (judged.get("series") or {}).items():
                    for t, value in points:
                        out.append(
                            {
                                "template": judged.get("template"),
                                "key": judged.get("key"),
                                "query": judged.get("query"),
                                "series": labels,
                                "t": pd.Timestamp(t, unit="s", tz="UTC"),
                                "value": number_or_nan(value),
                            }
                        )
        return pd.DataFrame(out, columns=columns)

    def metric_queries(self) -> pd.DataFrame:
        """One row per judged query: its PromQL, series, points and last value (summed)."""
        points = self.metric_series()
        if points.empty:
            return pd.DataFrame(columns=["template", "key", "series", "points", "last", "query"])
        last = points.sort_values("t").groupby(["template", "key", "query", "series"]).last()
        grouped = points.groupby(["template", "key", "query"])
        return pd.DataFrame(
            {
                "series": grouped["series"].nunique(),
                "points": grouped.size(),
                "last": last.groupby(["template", "key", "query"])["value"].sum(),
            }
        ).reset_index()[["template", "key", "series", "points", "last", "query"]]

    def incidents(self) -> pd.DataFrame:
        """Extensions, the baseline, probe and lease events, chart problems, failed rollbacks."""
        picked = []
        for e in rows(_notable(self.raw_events)):
            kind = e.get("kind")
            if kind in INCIDENT_KINDS or _is_problem(e):
                step = _int(e.get("step"))
                picked.append(
                    {
                        "time": e["t"],
                        "kind": kind,
                        "state": _text(e.get("state")) or _text(e.get("what")),
                        "step": None if step is None else step + 1,
                        "problem": _is_problem(e),
                        "message": _text(e.get("message")) or _text(e.get("error")),
                    }
                )
        return pd.DataFrame(picked, columns=["time", "kind", "state", "step", "problem", "message"])

    # -- steps ----------------------------------------------------------------------

    def recorded_steps(self) -> pd.DataFrame:
        """The summary table as the runbook printed it live (from ``step`` events)."""
        from canarylab.rollout import summary_table

        return summary_table([s["summary"] for s in self._step_ends() if s["summary"]])

    def replayed_steps(self) -> pd.DataFrame:
        """The summary table recomputed from the recorded samples and verdicts."""
        from canarylab.rollout import summary_table

        pairs = zip(self._replayed_rows(), self._step_ends(), strict=True)
        return summary_table([row for row, end in pairs if end["summary"]])

    def step_table(self) -> pd.DataFrame:
        """The report's one per-step table: replayed counts, how each step ended, and why
        they differ from what the runbook judged (``note``) when they do."""
        from canarylab.rollout import summary_table

        ends = self._step_ends()
        if not ends:
            return pd.DataFrame(columns=["step", "weight", "result", "note"])
        extensions = self._extensions()
        replayed = self._replayed_rows()
        table = summary_table(replayed)
        results, held, extended, judged, notes = [], [], [], [], []
        stopped_by = {  # a failed step's reason, when only its run's end event says it
            _int(e.get("step")): _text(e.get("reason"))
            for e in self.rows_of(Kind.RUN)
            if e.get("state") == RunState.FINISHED and _int(e.get("step")) is not None
        }
        for end, row in zip(ends, replayed, strict=True):
            state = str(end["state"])
            reason = end.get("reason")
            if state == StepState.FAILED and not reason:
                reason = stopped_by.get(int(end["step"])) or None
            results.append(f"{state} ({reason})" if reason else state)
            summary = end["summary"] or {}
            held.append(number_or_nan(summary.get("held_s", end["held_s"])))
            extended.append(extensions.get(int(end["step"]), ""))
            judged.append(_judged(summary))
            notes.append(_difference(row, summary, end, self._gates_saw(end)))
        table.insert(2, "result", results)
        table.insert(3, "held_s", held)
        table.insert(4, "extended", extended)
        table["judged"] = judged
        table["note"] = notes
        return table

    def _gates_saw(self, end: Mapping[str, Any]) -> int:
        """The most requests any gate of the step judged at its last look (0: unknown)."""
        index = int(end["step"])
        last = _last_per_gate(
            [
                v
                for v in self.rows_of(Kind.VERDICT)
                if _int(v.get("step")) == index and v["t"] <= end["t"]
            ]
        )
        counts = [0]
        for v in last:
            n = v.get("numbers") if isinstance(v.get("numbers"), dict) else {}
            assert isinstance(n, dict)
            pair = (_int(n.get("canary_requests")) or 0) + (_int(n.get("original_requests")) or 0)
            counts.append(max(pair, _int(n.get("requests")) or 0))
        return max(counts)

    def _replayed_rows(self) -> list[dict[str, Any]]:
        from canarylab import gates as g
        from canarylab.rollout import step_summary

        traffic = g.Traffic(self.samples, self.requests if len(self.requests) else None)
        verdicts = self.rows_of(Kind.VERDICT)
        canary = _text(self.metadata.get("version"))
        original = _text(self.metadata.get("original_version")) or None
        out = []
        for end in self._step_ends():
            index = int(end["step"])
            window = g.Window(canary=canary, original=original, since=end["started"])
            last = _last_per_gate(
                [v for v in verdicts if _int(v.get("step")) == index and v["t"] <= end["t"]]
            )
            judged = [
                g.Verdict(str(v.get("gate")), v.get("outcome", "insufficient"), "") for v in last
            ]
            row = step_summary(index, end["weight"], traffic, window, judged, until=end["ended"])
            if end["summary"] and "verdict" in end["summary"]:
                row["verdict"] = end["summary"]["verdict"]  # what the runbook decided on
            out.append(row)
        return out

    def _extensions(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for e in self.rows_of(Kind.EXTENSION):
            step = _int(e.get("step"))
            if step is None:
                continue
            collecting = e.get("collecting") or ()
            names = ", ".join(str(c) for c in collecting) if isinstance(collecting, list) else ""
            out[step] = f"after {fmt(e.get('held_s'))}s, up to {fmt(e.get('max_hold_s'))}s" + (
                f" ({names} collecting)" if names else ""
            )
        return out

    def _step_ends(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        started: dict[int, pd.Timestamp] = {}
        for e in self.rows_of(Kind.STEP):
            index = _int(e.get("step"))
            if index is None:
                continue
            state = e.get("state")
            if state in (StepState.STARTED, "resumed"):
                started[index] = _ts(e.get("since")) or e["t"]
            elif state in (StepState.PASSED, StepState.FAILED):
                summary = e.get("summary") if isinstance(e.get("summary"), dict) else None
                begin = started.get(index) or _ts(e.get("since"))
                ended = _ts(e.get("until")) or e["t"]
                out.append(
                    {
                        "step": index,
                        "weight": _int(e.get("weight")) or _int((summary or {}).get("weight")) or 0,
                        "state": state,
                        "reason": _text(e.get("reason")) or None,
                        "t": e["t"],
                        "started": begin,
                        "ended": ended,
                        "held_s": (ended - begin).total_seconds() if begin is not None else None,
                        "summary": summary,
                    }
                )
        return out


def number_or_nan(value: Any) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    )


def _judged(summary: Mapping[str, Any]) -> str:
    """The requests the runbook judged, by version (from the recorded summary row)."""
    requests = summary.get("requests") if isinstance(summary, Mapping) else None
    if not isinstance(requests, Mapping) or not requests:
        return "–"
    return ", ".join(f"{v} {fmt(n, 'int')}" for v, n in sorted(requests.items()))


def _difference(
    replayed: Mapping[str, Any],
    summary: Mapping[str, Any] | None,
    end: Mapping[str, Any],
    gates_saw: int = 0,
) -> str:
    """Why the replayed counts differ from the judged ones ("" when they do not)."""
    if not summary:
        return (
            "the runbook recorded no counts for this step (it stopped before judging); "
            "the counts are the record's samples of the step"
        )
    seen = replayed.get("requests") or {}
    judged = summary.get("requests") or {}
    more = {v: int(seen.get(v, 0)) - int(judged.get(v, 0)) for v in set(seen) | set(judged)}
    total = sum(judged.values()) if judged else 0
    if total == 0 and sum(seen.values()):
        held = end.get("held_s")
        when = f" {held:.1f} s after it began" if isinstance(held, float) else ""
        text = (
            f"the runbook's summary counted no closed second: the step stopped{when}, before "
            "the probe delivered one; the counts are the record's samples of the step"
        )
        if gates_saw:
            text += (
                f"; its gates judged {gates_saw:,} requests (comparison gates count from the "
                "baseline's end, before the step began)"
            )
        return text
    if all(d == 0 for d in more.values()):
        return ""
    extra = {v: d for v, d in more.items() if d > 0}
    fewer = {v: -d for v, d in more.items() if d < 0}
    parts = []
    if extra:
        parts.append(
            "+"
            + ", ".join(f"{n:,} {v}" for v, n in sorted(extra.items()))
            + " requests the gates never saw: seconds that closed after the last look"
        )
    if fewer:
        parts.append(
            "−"
            + ", ".join(f"{n:,} {v}" for v, n in sorted(fewer.items()))
            + " requests missing from the record's samples (a crash loses the last part)"
        )
    return "; ".join(parts)


def _last_per_gate(verdicts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last verdict of each gate, in the order the gates first appear."""
    last: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        last[str(v.get("gate"))] = v
    return list(last.values())


def _notable(raw: pd.DataFrame) -> pd.DataFrame:
    """The events that may be incidents or problems (cheap to pick, before any dicts)."""
    if raw.empty or "kind" not in raw:
        return raw
    kind = raw["kind"].astype(str)
    keep = kind.isin([*INCIDENT_KINDS, Kind.RUN])
    if "reason" in raw:
        keep |= (kind == Kind.EVENT) & (raw["reason"] == Reason.DRIVER_LOST)
    if "phase" in raw:
        keep |= (kind == Kind.STATUS) & (raw["phase"] == "Paused")
    return raw[keep]


LEASE_PROBLEMS = ("renewal-failed", "release-failed", "lost", "lapsed")
"""Lease events (``what``) that mean the driver's lease may not hold."""


def _is_problem(e: Mapping[str, Any]) -> bool:
    """A probe that died, stalled or never reached its target; a lease that failed; a
    rollback that failed; the controller pausing a canary whose driver was lost."""
    kind, state = e.get("kind"), e.get("state")
    if kind == Kind.PROBE:
        return state not in (ProbeState.STARTED, ProbeState.STOPPED) or bool(e.get("error"))
    if kind == Kind.LEASE:
        return (state or e.get("what")) in LEASE_PROBLEMS or bool(e.get("error"))
    if kind == Kind.RUN:
        return state == RunState.ROLLBACK_FAILED
    if kind == Kind.EVENT:
        return e.get("reason") == Reason.DRIVER_LOST
    if kind == Kind.STATUS:
        return e.get("phase") == "Paused"
    return kind == Kind.CHART


def _text(value: Any) -> str:
    """A metadata or event value as text; "" for missing, null and NaN (never ``nan``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    return int(value)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _ts(value: Any) -> pd.Timestamp | None:
    if not _present(value) or value == "":
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


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
    is_action = kind == Kind.ACTION
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
            "phase": col("phase").where(kind == Kind.STATUS, None),
            "source_kind": kind,
        }
    )
    frame.loc[frame["kind"] != Kind.STATUS, "applied_weight"] = np.nan
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
