"""Plans (steps of weight, hold and gates) and the pure decisions about them.

Which step a re-run resumes from, and the per-step summary row, are pure functions
of the resource's status and the probe's traffic. This module must never do I/O or
read a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from canarylab import gates as g
from canarylab.rollout.status import RolloutStatus


class PlanError(ValueError):
    """A plan given as data (runbook parameters) is not usable."""


@dataclass(frozen=True)
class Step:
    """Shift to ``weight`` percent, then hold ``hold_s`` seconds while ``gates`` judge."""

    weight: int
    hold_s: float = 30.0
    gates: tuple[g.Gate, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A list of steps; after the last one, ``promote`` replaces the parent and deletes the canary."""

    steps: tuple[Step, ...]
    promote: bool = True
    check_every_s: float = 1.0
    """How often gates judge during a hold (a failing gate stops the hold at once)."""

    def describe(self) -> list[str]:
        lines = [
            f"step {i + 1}: weight {s.weight}%, hold {s.hold_s:g}s, gates: "
            + (", ".join(gate.name for gate in s.gates) or "none")
            for i, s in enumerate(self.steps)
        ]
        if self.promote:
            lines.append("then: replace the parent with the canary, wait, delete the canary")
        return lines


def plan_from(
    steps: Sequence[int | Mapping[str, Any]],
    hold_s: float = 30.0,
    gates: Mapping[str, Any] | None = None,
    promote: bool = True,
    check_every_s: float = 1.0,
) -> Plan:
    """A plan from runbook parameters.

    ``steps`` is a list of weights (``[5, 25, 50, 100]``) or of mappings
    ``{"weight": 5, "hold": 60, "gates": {...}}``; ``hold_s`` and ``gates`` are the
    defaults for steps that do not say.
    """
    if not steps:
        raise PlanError("a plan needs at least one step, e.g. steps=[5, 25, 50, 100]")
    default_gates = tuple(g.from_spec(gates or {}))
    out: list[Step] = []
    previous = -1
    for i, raw in enumerate(steps):
        if isinstance(raw, Mapping):
            weight = raw.get("weight")
            hold = float(raw.get("hold", hold_s))
            step_gates = tuple(g.from_spec(raw["gates"])) if "gates" in raw else default_gates
        else:
            weight, hold, step_gates = raw, float(hold_s), default_gates
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= 100:
            raise PlanError(
                f"step {i + 1}: weight must be an integer from 1 to 100, got {weight!r}"
            )
        if weight <= previous:
            raise PlanError(
                f"step {i + 1}: weights must increase (got {weight} after {previous}); "
                "a plan only moves traffic towards the canary"
            )
        if hold < 0 or math.isnan(hold):
            raise PlanError(f"step {i + 1}: hold must be ≥ 0 seconds, got {hold}")
        previous = weight
        out.append(Step(weight, hold, step_gates))
    return Plan(tuple(out), promote=promote, check_every_s=check_every_s)


@dataclass(frozen=True)
class Resume:
    """Where a (re-)run of a plan starts."""

    create: bool
    """The canary does not exist yet."""
    first_step: int
    """Index of the first step to (re-)run; ``len(steps)`` means only promotion is left."""
    promoting: bool = False
    """A replace was already requested: only wait for it and clean up."""
    replaced: bool = False
    """Already replaced: only the clean-up (delete) is left."""


def resume_point(plan: Plan, status: RolloutStatus) -> Resume:
    """Where to pick up, given the resource's status (``absent`` means a fresh start).

    The step at the current weight is held again in full: its gates must see their own
    traffic, and a kernel killed mid-hold has not seen it all.
    """
    if not status.exists:
        return Resume(create=True, first_step=0)
    if status.phase == "Replaced":
        return Resume(False, len(plan.steps), promoting=True, replaced=True)
    if status.replace:
        return Resume(False, len(plan.steps), promoting=True)
    for i, step in enumerate(plan.steps):
        if step.weight >= status.desired_weight:
            return Resume(False, i)
    return Resume(False, len(plan.steps))


@dataclass(frozen=True)
class StepResult:
    """One step as it ended: its summary row and every gate's last verdict."""

    index: int
    weight: int
    started: pd.Timestamp
    ended: pd.Timestamp
    verdicts: tuple[g.Verdict, ...]
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> g.Verdict | None:
        return g.first_failure(self.verdicts)


def worst(verdicts: Sequence[g.Verdict]) -> str:
    """``fail`` beats ``insufficient`` beats ``pass``; no gates at all is ``no gates``."""
    outcomes = {v.outcome for v in verdicts}
    for outcome in ("fail", "insufficient", "pass"):
        if outcome in outcomes:
            return outcome
    return "no gates"


def step_summary(
    index: int,
    weight: int,
    traffic: g.Traffic,
    window: g.Window,
    verdicts: Sequence[g.Verdict],
    until: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """One summary-table row: requests by version, canary share, error rates, p99s, verdict."""
    t = traffic.since(window.since)
    if until is not None:
        s = t.samples
        t = g.Traffic(
            s[s["second"] <= until] if len(s) else s,
            None if t.requests is None else t.requests[t.requests["t"] <= until],
        )
    s = t.samples
    by_version: dict[str, int] = {}
    if len(s):
        counts = s.groupby("version")["requests"].sum()
        by_version = {str(k): int(v) for k, v in counts.items()}
    canary = g.side(t, [window.canary])
    original = (
        g.side(t, [window.original])
        if window.original is not None
        else g.side(t, None, exclude=[window.canary, "unknown"])
    )
    total = sum(by_version.values())
    return {
        "step": index + 1,
        "weight": weight,
        "requests": by_version,
        "canary_share": canary.requests / total if total else math.nan,
        "canary_error_rate": canary.error_rate,
        "original_error_rate": original.error_rate,
        "canary_p99_ms": canary.p99_ms,
        "original_p99_ms": original.p99_ms,
        "verdict": worst(verdicts),
    }


def summary_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The summary rows as a display table (requests by version spread into columns)."""
    if not rows:
        return pd.DataFrame(columns=["step", "weight", "verdict"])
    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k != "requests"}
        for version, n in sorted((row.get("requests") or {}).items()):
            item[f"requests {version}"] = n
        flat.append(item)
    frame = pd.DataFrame(flat)
    first = ["step", "weight"]
    req = sorted(c for c in frame.columns if c.startswith("requests "))
    rest = [c for c in frame.columns if c not in first and c not in req]
    return frame[first + req + rest]
