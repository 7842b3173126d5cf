"""Rollout primitives and plans: the library behind runbooks, notebooks and the CLI.

``Rollout`` drives one CanaryDeployment (create, weight, wait, replace, abort, delete,
status), idempotently and recorded. ``plan_from``/``run_plan`` walk steps of weight,
hold and gates, rolling back when a gate fails. This package must never import the
operator, plotly or ipywidgets.
"""

from __future__ import annotations

from canarylab.rollout.manifest import RolloutError
from canarylab.rollout.plan import (
    Plan,
    PlanError,
    Resume,
    Step,
    StepResult,
    plan_from,
    resume_point,
    step_summary,
    summary_table,
)
from canarylab.rollout.resource import Rollout
from canarylab.rollout.runner import (
    Canary,
    Clock,
    GateFailed,
    PlanOutcome,
    RolloutStopped,
    TrafficSource,
    run_plan,
)
from canarylab.rollout.status import Condition, RolloutStatus

__all__ = [
    "Canary",
    "Clock",
    "Condition",
    "GateFailed",
    "Plan",
    "PlanError",
    "PlanOutcome",
    "Resume",
    "Rollout",
    "RolloutError",
    "RolloutStatus",
    "RolloutStopped",
    "Step",
    "StepResult",
    "TrafficSource",
    "plan_from",
    "resume_point",
    "run_plan",
    "step_summary",
    "summary_table",
]
