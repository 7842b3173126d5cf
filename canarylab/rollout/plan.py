"""Plans (steps of weight, hold and gates) and the pure decisions about them.

Which step a re-run resumes from, and the per-step summary row, are pure functions
of the resource's status and the probe's traffic. This module must never do I/O or
read a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from canarylab import gates as g
from canarylab.rollout.status import RolloutStatus


class PlanError(ValueError):
    """A plan given as data (runbook parameters) is not usable."""


OnInsufficient = Literal["fail", "pass"]
ON_INSUFFICIENT: tuple[OnInsufficient, ...] = ("fail", "pass")


def default_max_hold(hold_s: float) -> float:
    """How long a step may hold while gates still collect: 4x the hold, at least +60 s."""
    return max(4 * hold_s, hold_s + 60.0)


@dataclass(frozen=True)
class Step:
    """Shift to ``weight`` percent, then hold ``hold_s`` seconds while ``gates`` judge.

    A gate still collecting evidence (``insufficient``) at the end of the hold extends
    it, up to ``max_hold_s``; then the step fails (``InsufficientEvidence``) unless
    ``on_insufficient`` is ``"pass"``. A step passes only when every gate passed.
    """

    weight: int
    hold_s: float = 30.0
    gates: tuple[g.Gate, ...] = ()
    max_hold_s: float | None = None
    """``None``: :func:`default_max_hold` of ``hold_s``."""
    on_insufficient: OnInsufficient = "fail"

    @property
    def hold_limit_s(self) -> float:
        return default_max_hold(self.hold_s) if self.max_hold_s is None else self.max_hold_s


@dataclass(frozen=True)
class Plan:
    """A list of steps; after the last one, ``promote`` replaces the parent and deletes the canary."""

    steps: tuple[Step, ...]
    promote: bool = True
    check_every_s: float = 1.0
    """How often gates judge during a hold (a failing gate stops the hold at once)."""

    def describe(self) -> list[str]:
        lines = [
            f"step {i + 1}: weight {s.weight}%, hold {s.hold_s:g}s (up to {s.hold_limit_s:g}s "
            f"while gates collect, then {'pass' if s.on_insufficient == 'pass' else 'fail'}), "
            "gates: " + (", ".join(gate.name for gate in s.gates) or "none")
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
    *,
    alpha: float | None = None,
    max_hold_s: float | None = None,
    on_insufficient: str = "fail",
) -> Plan:
    """A plan from runbook parameters.

    ``steps`` is a list of weights (``[5, 25, 50, 100]``) or of mappings
    ``{"weight": 5, "hold": 60, "max_hold": 240, "on_insufficient": "fail",
    "gates": {...}}``; ``hold_s``, ``max_hold_s``, ``on_insufficient`` and ``gates`` are
    the defaults for steps that do not say. ``alpha`` is the whole rollout's
    false-alarm probability: every gate that does not set its own gets its share from
    ``alpha_levels`` (docs/runbooks.md, "How alpha is spent"); the comparisons' share
    holds for a run that measured a baseline, and the runner narrows it on a resumed run.
    """
    if not steps:
        raise PlanError("a plan needs at least one step, e.g. steps=[5, 25, 50, 100]")
    specs = [
        raw["gates"] if isinstance(raw, Mapping) and "gates" in raw else gates or {}
        for raw in steps
    ]
    try:
        levels = None if alpha is None else g.alpha_levels(alpha, specs)
        built = [tuple(g.from_spec(spec, alpha=levels)) for spec in specs]
    except g.GateSpecError as err:
        raise PlanError(str(err)) from None
    out: list[Step] = []
    previous = -1
    for i, raw in enumerate(steps):
        item: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {"weight": raw}
        unknown = set(item) - {"weight", "hold", "max_hold", "on_insufficient", "gates"}
        if unknown:
            raise PlanError(
                f"step {i + 1}: unknown field(s) {', '.join(sorted(unknown))}; a step has "
                "weight, hold, max_hold, on_insufficient and gates"
            )
        weight = item.get("weight")
        hold = _seconds(i, "hold", item.get("hold", hold_s))
        limit = item.get("max_hold", max_hold_s)
        max_hold = None if limit is None else _seconds(i, "max_hold", limit)
        policy = item.get("on_insufficient", on_insufficient)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= 100:
            raise PlanError(
                f"step {i + 1}: weight must be an integer from 1 to 100, got {weight!r}"
            )
        if weight <= previous:
            raise PlanError(
                f"step {i + 1}: weights must increase (got {weight} after {previous}); "
                "a plan only moves traffic towards the canary"
            )
        if max_hold is not None and max_hold < hold:
            raise PlanError(
                f"step {i + 1}: max_hold ({max_hold:g}s) must be at least hold ({hold:g}s)"
            )
        if policy not in ON_INSUFFICIENT:
            raise PlanError(
                f"step {i + 1}: on_insufficient must be 'fail' (the default: a step without "
                f"enough evidence fails) or 'pass', got {policy!r}"
            )
        previous = weight
        out.append(Step(weight, hold, built[i], max_hold, policy))
    return Plan(tuple(out), promote=promote, check_every_s=check_every_s)


def _seconds(index: int, name: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"step {index + 1}: {name} must be seconds, got {value!r}") from None
    if seconds < 0 or math.isnan(seconds):
        raise PlanError(f"step {index + 1}: {name} must be ≥ 0 seconds, got {value!r}")
    return seconds


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
