"""Walking a plan: create → steps with gates → replace → delete, resumable.

``run_plan`` reads where the resource is (``plan.resume_point``), so a re-run after a
killed kernel continues instead of starting over. A failing gate aborts the rollout
(weight 0, then delete) and only then raises :class:`GateFailed`, whose message names
the gate and its numbers. Traffic comes from anything with a ``traffic()`` method (the
probe adapter in ``canarylab.rollout.traffic``); the clock is injected.

This module must never compute statistics itself (that is ``canarylab.gates``) nor
build a Kubernetes client (that is ``canarylab.kube``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import pandas as pd

from canarylab import gates as g
from canarylab.rollout.manifest import RolloutError
from canarylab.rollout.plan import Plan, StepResult, resume_point, step_summary
from canarylab.rollout.resource import Rollout


class TrafficSource(Protocol):
    """Anything that can hand over the traffic seen so far."""

    def traffic(self) -> g.Traffic: ...


class GateFailed(RolloutError):
    """A gate failed; the rollout was rolled back before this was raised."""

    def __init__(
        self,
        verdict: g.Verdict,
        step: int,
        weight: int,
        rolled_back: bool,
        others: tuple[g.Verdict, ...] = (),
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        self.verdict = verdict
        self.summary = dict(summary or {})
        """The failed step's summary-table row."""
        self.step = step
        self.weight = weight
        self.rolled_back = rolled_back
        self.verdicts = (verdict, *others)
        numbers = ", ".join(f"{k}={g._fmt(v)}" for k, v in verdict.numbers.items())
        p_values = "; ".join(
            f"{v.gate} {v.outcome}, p-value {g._fmt(v.numbers['p_value'])}"
            for v in self.verdicts
            if v.numbers.get("p_value") is not None
        )
        super().__init__(
            f"gate {verdict.gate} failed at step {step + 1} (weight {weight}%): "
            f"{verdict.reason} ({numbers})"
            + (f"; comparisons: {p_values}" if p_values else "")
            + "; "
            + (
                "the canary was rolled back (route 100% parent, canary deleted)"
                if rolled_back
                else "the rollback did NOT complete: run `canarylab abort` for this canary"
            )
        )


@dataclass(frozen=True)
class Clock:
    """Time as the runner sees it; tests pass a fake."""

    now: Callable[[], pd.Timestamp] = field(default=lambda: pd.Timestamp.now(tz="UTC"))
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class Canary:
    """What to roll out (the arguments of ``Rollout.create_canary``)."""

    version: str
    image: str | None = None
    template: Mapping[str, Any] | None = None
    replicas: int = 1
    env: Mapping[str, str] | None = None
    router: str = "apisix"
    route: str | None = None

    def create(self, rollout: Rollout) -> None:
        rollout.create_canary(
            version=self.version,
            image=self.image,
            template=self.template,
            replicas=self.replicas,
            env=self.env,
            router=self.router,
            route=self.route,
        )


@dataclass(frozen=True)
class PlanOutcome:
    steps: tuple[StepResult, ...]
    resumed_from: int
    """Index of the first step this run executed (0 on a fresh start)."""
    promoted: bool


def run_plan(
    rollout: Rollout,
    plan: Plan,
    canary: Canary,
    traffic: TrafficSource | None = None,
    *,
    original_version: str | None = None,
    clock: Clock | None = None,
    ready_timeout: float = 120,
    weight_timeout: float = 60,
    replace_timeout: float = 300,
    on_step: Callable[[StepResult], None] | None = None,
) -> PlanOutcome:
    """Run (or resume) ``plan`` for ``canary``; see the module docstring."""
    clock = clock or Clock()
    rec = rollout.recorder
    status = rollout.status()
    if status.exists and status.version and status.version != canary.version:
        raise RolloutError(
            f"{rollout.namespace}/{rollout.name} rolls out version {status.version!r}, not "
            f"{canary.version!r}: abort it first (`canarylab abort {rollout.name}`)"
        )
    start = resume_point(plan, status)
    rec.event(
        "run",
        state="resumed" if status.exists else "started",
        message=(
            f"resuming at step {start.first_step + 1} ({status.brief()})"
            if status.exists
            else f"starting a rollout of {canary.version}"
        ),
        first_step=start.first_step,
    )
    if start.create:
        canary.create(rollout)
    results: list[StepResult] = []
    if not start.promoting:
        rollout.wait_ready(timeout=ready_timeout)
        for index in range(start.first_step, len(plan.steps)):
            result = _run_step(
                rollout, plan, index, canary, traffic, original_version, clock, weight_timeout
            )
            results.append(result)
            if on_step is not None:
                on_step(result)
    promoted = False
    if plan.promote:
        if not start.replaced:
            rollout.replace(timeout=replace_timeout)
        rollout.delete(timeout=weight_timeout)
        promoted = True
    rec.event("run", state="finished", outcome="succeeded", message="rollout finished")
    return PlanOutcome(tuple(results), start.first_step, promoted)


def _run_step(
    rollout: Rollout,
    plan: Plan,
    index: int,
    canary: Canary,
    traffic: TrafficSource | None,
    original_version: str | None,
    clock: Clock,
    weight_timeout: float,
) -> StepResult:
    rec = rollout.recorder
    step = plan.steps[index]
    rollout.set_weight(step.weight, timeout=weight_timeout)
    started = clock.now()
    window = g.Window(canary=canary.version, original=original_version, since=started)
    rec.event(
        "step",
        step=index,
        weight=step.weight,
        hold_s=step.hold_s,
        state="started",
        since=started,
        message=f"step {index + 1}: weight {step.weight}%, holding {step.hold_s:g}s",
    )
    gates = step.gates
    if step.weight == 100:
        # At 100% the original only gets requests the gateway had in flight; comparing
        # against those would judge noise, so only the canary's own limits apply.
        gates = tuple(gate for gate in gates if not g.compares_original(gate))
    t0 = clock.monotonic()
    verdicts: list[g.Verdict] = []
    while True:
        elapsed = clock.monotonic() - t0
        if elapsed >= step.hold_s:
            break
        clock.sleep(min(plan.check_every_s, step.hold_s - elapsed))
        seen = traffic.traffic() if traffic is not None else _no_traffic()
        verdicts = g.judge_all(gates, seen, window)
        failed = g.first_failure(verdicts)
        if failed is not None:
            return _fail(
                rollout, index, step.weight, window, seen, verdicts, failed, started, clock
            )
    seen = traffic.traffic() if traffic is not None else _no_traffic()
    verdicts = g.judge_all(gates, seen, window)
    failed = g.first_failure(verdicts)
    if failed is not None:
        return _fail(rollout, index, step.weight, window, seen, verdicts, failed, started, clock)
    ended = clock.now()
    for v in verdicts:
        rec.event("verdict", step=index, message=str(v), **v.as_dict())
    summary = step_summary(index, step.weight, seen, window, verdicts, until=ended)
    rec.event(
        "step",
        step=index,
        weight=step.weight,
        hold_s=step.hold_s,
        state="passed",
        summary=summary,
        since=started,
        until=ended,
        message=f"step {index + 1} passed ({summary['verdict']})",
    )
    return StepResult(index, step.weight, started, ended, tuple(verdicts), summary)


def _fail(
    rollout: Rollout,
    index: int,
    weight: int,
    window: g.Window,
    seen: g.Traffic,
    verdicts: list[g.Verdict],
    failed: g.Verdict,
    started: pd.Timestamp,
    clock: Clock,
) -> NoReturn:
    rec = rollout.recorder
    ended = clock.now()
    for v in verdicts:
        rec.event("verdict", step=index, message=str(v), **v.as_dict())
    summary = step_summary(index, weight, seen, window, verdicts, until=ended)
    rec.event(
        "step",
        step=index,
        weight=weight,
        state="failed",
        summary=summary,
        since=started,
        until=ended,
        message=f"step {index + 1} failed: {failed}",
    )
    rolled_back = True
    try:
        rollout.abort()
    except RolloutError as err:
        rolled_back = False
        rec.event("run", state="rollback-failed", message=str(err))
    rec.event(
        "run",
        state="finished",
        outcome="rolled-back" if rolled_back else "failed",
        message=f"gate {failed.gate} failed at step {index + 1}",
    )
    others = tuple(v for v in verdicts if v is not failed)
    raise GateFailed(failed, index, weight, rolled_back, others, summary)


def _no_traffic() -> g.Traffic:
    return g.Traffic(pd.DataFrame(columns=["second", "version", "requests", *g.FAILURE_COLUMNS]))
