"""Walking a plan: create → steps with gates → replace → delete, resumable, fail-closed.

``run_plan`` reads where the resource is (``plan.resume_point``), so a re-run after a
killed kernel continues instead of starting over. A step passes only when every gate
has enough evidence and passes: a gate still collecting at the end of the hold extends
it up to the step's ``max_hold``, then fails the step (``InsufficientEvidence``) unless
the step opts out. A dead or stalled probe fails the step (``ProbeLost``,
``ProbeStalled``), so does a canary that gets far less than its weight
(``NoCanaryTraffic``). Whatever stops a run before promotion — a gate, missing
evidence, an interrupt, a failed action — first rolls back (weight 0, then delete) and
only then raises :class:`RolloutStopped` (:class:`GateFailed` when a gate decided),
whose message names the reason and its numbers.

Before the first step the unversioned failure rate is measured while the canary has no
traffic (``Baseline``): during the steps only an excess over it is the canary's.
Traffic comes from anything with a ``traffic()`` method (the probe adapter in
``canarylab.rollout.traffic``), whose optional ``health()`` is checked on every look;
the clock is injected.

This module must never compute statistics itself (that is ``canarylab.gates``) nor
build a Kubernetes client (that is ``canarylab.kube``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from canarylab import gates as g
from canarylab.record.events import (
    BaselineEvent,
    ExitCode,
    ExtensionEvent,
    Kind,
    Outcome,
    Reason,
    RunEvent,
    RunState,
    StepEvent,
    StepState,
    verdict_fields,
)
from canarylab.rollout.manifest import RolloutError
from canarylab.rollout.plan import Plan, Step, StepResult, resume_point, step_summary
from canarylab.rollout.resource import Rollout

BASELINE_WAIT_S = 10.0
"""Longest wait, before the first step, for the probe to close a second of the
original's traffic (the baseline of unversioned failures)."""


SETTLE_MAX_S = 30.0
"""Longest wait, after the route applied a step's weight, for the canary's first answers
at that share before the step's window starts anyway (see ``_Run._await_route``)."""


class TrafficSource(Protocol):
    """Anything that can hand over the traffic seen so far."""

    def traffic(self) -> g.Traffic: ...


@runtime_checkable
class Health(Protocol):
    """What ``TrafficSource.health()`` returns (``canarylab.rollout.traffic.ProbeHealth``)."""

    @property
    def ok(self) -> bool: ...

    @property
    def reason(self) -> Reason | None: ...

    def describe(self) -> str: ...


@runtime_checkable
class WatchedSource(Protocol):
    """A traffic source that can say whether it still delivers (the probe feed)."""

    def traffic(self) -> g.Traffic: ...

    def health(self) -> Health: ...


class RolloutStopped(RolloutError):
    """The run stopped before promotion; the rollback was attempted before this was raised.

    ``outcome`` is ``rolled-back`` (the canary is at weight 0, or was never created) or
    ``failed`` (the rollback failed or the state is unknown); ``exit_code`` maps it.
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        rolled_back: bool,
        step: int | None = None,
        weight: int | None = None,
        summary: Mapping[str, Any] | None = None,
        verdicts: tuple[g.Verdict, ...] = (),
        outcome: Outcome | None = None,
        changed: bool = True,
    ) -> None:
        """``changed=False``: the run stopped before it changed anything (no canary)."""
        self.reason = reason
        self.rolled_back = rolled_back
        self.outcome = outcome or (Outcome.ROLLED_BACK if rolled_back else Outcome.FAILED)
        self.step = step
        self.weight = weight
        self.summary = dict(summary or {})
        """The stopped step's summary-table row (empty when no step was running)."""
        self.verdicts = verdicts
        where = f" at step {step + 1} (weight {weight}%)" if step is not None else ""
        after = _after(self.outcome) if changed else "nothing was changed (no canary exists)"
        super().__init__(f"{reason}{where}: {message}; {after}")

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.for_outcome(self.outcome)


class GateFailed(RolloutStopped):
    """A gate failed (``GateFailed``, or ``NoCanaryTraffic`` from the traffic-share gate)."""

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
        numbers = ", ".join(f"{k}={g._fmt(v)}" for k, v in verdict.numbers.items())
        every = (verdict, *others)
        p_values = "; ".join(
            f"{v.gate} {v.outcome}, p-value {g._fmt(v.numbers['p_value'])}"
            for v in every
            if v.numbers.get("p_value") is not None
        )
        super().__init__(
            reason_of(verdict),
            f"gate {verdict.gate} failed: {verdict.reason} ({numbers})"
            + (f"; comparisons: {p_values}" if p_values else ""),
            rolled_back=rolled_back,
            step=step,
            weight=weight,
            summary=summary,
            verdicts=every,
        )


def reason_of(failed: g.Verdict) -> Reason:
    """Why a failed verdict stops a run: the traffic-share gate's is ``NoCanaryTraffic``."""
    return Reason.NO_CANARY_TRAFFIC if failed.gate == g.TrafficShare.name else Reason.GATE_FAILED


def _after(outcome: Outcome) -> str:
    if outcome == Outcome.ROLLED_BACK:
        return "the canary was rolled back (route 100% parent, canary deleted)"
    return "the rollback did NOT complete: run `canarylab abort` for this canary now"


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
    on_look: Callable[[int, list[g.Verdict]], None] | None = None,
) -> PlanOutcome:
    """Run (or resume) ``plan`` for ``canary``; see the module docstring.

    ``on_look(step, verdicts)`` sees every look's verdicts (a panel's running state).
    """
    return _Run(
        rollout,
        plan,
        canary,
        traffic,
        original_version,
        clock or Clock(),
        ready_timeout,
        weight_timeout,
        replace_timeout,
        on_step,
        on_look,
    ).run()


@dataclass
class _Run:
    """One run of a plan: the state a run carries between its steps."""

    rollout: Rollout
    plan: Plan
    canary: Canary
    source: TrafficSource | None
    original_version: str | None
    clock: Clock
    ready_timeout: float
    weight_timeout: float
    replace_timeout: float
    on_step: Callable[[StepResult], None] | None
    on_look: Callable[[int, list[g.Verdict]], None] | None
    baseline: g.Baseline | None = None
    first_step: int = 0
    """The first step this run judges (a resumed run starts later)."""
    results: list[StepResult] = field(default_factory=list)

    def run(self) -> PlanOutcome:
        rollout, plan, canary = self.rollout, self.plan, self.canary
        if self.source is None and any(step.gates for step in plan.steps):
            raise RolloutError(
                "the plan's steps have gates but no traffic source was given: start the probe "
                "first (RolloutSession.start_probe, ProbeFeed.start), or pass gates "
                "{'traffic_share': False} and no others to roll out unjudged"
            )
        status = rollout.status()
        if status.exists and status.version and status.version != canary.version:
            raise RolloutError(
                f"{rollout.namespace}/{rollout.name} rolls out version {status.version!r}, not "
                f"{canary.version!r}: delete it first (`canarylab delete {rollout.name}`)"
            )
        start = resume_point(plan, status)
        self.first_step = start.first_step
        message = (
            f"resuming at step {start.first_step + 1} ({status.brief()})"
            if status.exists
            else f"starting a rollout of {canary.version}"
        )
        state = RunState.RESUMED if status.exists else RunState.STARTED
        self._event(RunEvent(message=message, state=state, first_step=start.first_step))
        index: int | None = None
        try:
            if start.create:
                canary.create(rollout)
            if not start.promoting:
                try:
                    rollout.wait_ready(timeout=self.ready_timeout)
                except RolloutError as err:
                    self._stop(Reason.CANARY_NOT_READY, str(err), index)
                if status.desired_weight == 0 and self.source is not None:
                    self.baseline = self._measure_baseline()
                for index in range(start.first_step, len(plan.steps)):
                    result = self._step(index)
                    self.results.append(result)
                    if self.on_step is not None:
                        self.on_step(result)
                index = None
        except RolloutStopped:
            raise
        except KeyboardInterrupt:
            self._stop(Reason.INTERRUPTED, "interrupted (SIGINT/SIGTERM)", index)
        except Exception as err:  # an API error, a timeout, a bug: never leave traffic on it
            text = str(err) if isinstance(err, RolloutError) else f"{type(err).__name__}: {err}"
            self._stop(Reason.ROLLOUT_ERROR, text, index)
        promoted = False
        if plan.promote:
            try:
                if not start.replaced:
                    rollout.replace(timeout=self.replace_timeout)
                rollout.delete(timeout=self.weight_timeout)
            except (RolloutError, KeyboardInterrupt) as err:
                # The parent may already run the canary's template: rolling back now
                # could leave neither version whole, so say so and leave it to a human.
                text = str(err) or "interrupted (SIGINT/SIGTERM)"
                reason = (
                    Reason.ROLLOUT_ERROR if isinstance(err, RolloutError) else Reason.INTERRUPTED
                )
                self._finish(Outcome.FAILED, reason, f"promotion did not complete: {text}")
                raise RolloutStopped(
                    reason, f"promotion did not complete: {text}", rolled_back=False
                ) from err
            promoted = True
        self._finish(Outcome.SUCCEEDED, None, "rollout finished")
        return PlanOutcome(tuple(self.results), start.first_step, promoted)

    # -- one step -------------------------------------------------------------------

    def _step(self, index: int) -> StepResult:
        clock, step = self.clock, self.plan.steps[index]
        self.rollout.set_weight(step.weight, timeout=self.weight_timeout)
        settled = self._await_route(index, step)
        started = clock.now()
        window = g.Window(
            canary=self.canary.version,
            original=self.original_version,
            since=started,
            weight=step.weight,
            baseline=self.baseline,
        )
        self._event(
            StepEvent(
                message=(
                    f"step {index + 1}: weight {step.weight}%, holding {step.hold_s:g}s "
                    f"(up to {step.hold_limit_s:g}s while gates collect)"
                    + ("" if settled is None else f"; the gateway applied it in {settled:.1f}s")
                ),
                step=index,
                weight=step.weight,
                hold_s=step.hold_s,
                max_hold_s=step.hold_limit_s,
                since=started,
                settled_s=settled,
            )
        )
        gates = step.gates
        if self.baseline is None:
            gates = self._per_step_comparisons(gates)
        if step.weight == 100:
            # At 100% the original only gets requests the gateway had in flight; comparing
            # against those would judge noise, so only the canary's own limits apply.
            gates = tuple(gate for gate in gates if not g.compares_original(gate))
        t0 = clock.monotonic()
        look = 0
        seen = _no_traffic()
        verdicts: list[g.Verdict] = []
        shown: dict[str, str] = {}
        extended = False
        while True:
            elapsed = clock.monotonic() - t0
            target = step.hold_s if elapsed < step.hold_s else step.hold_limit_s
            clock.sleep(max(0.0, min(self.plan.check_every_s, target - elapsed)))
            elapsed = clock.monotonic() - t0
            look += 1
            self._check_health(index, step, window)
            seen = self.source.traffic() if self.source is not None else _no_traffic()
            verdicts = g.judge_all(gates, seen, window)
            for v in verdicts:  # every change of a gate's outcome is recorded
                if shown.get(v.gate) != v.outcome:
                    shown[v.gate] = v.outcome
                    self.rollout.recorder.event(Kind.VERDICT, **verdict_fields(index, v, look))
            if self.on_look is not None:
                self.on_look(index, verdicts)
            failed = g.first_failure(verdicts)
            if failed is not None:
                self._fail_gate(index, step, window, seen, verdicts, failed, started)
            if elapsed < step.hold_s:
                continue
            collecting = tuple(v.gate for v in verdicts if v.outcome == "insufficient")
            if not collecting:
                break
            if elapsed >= step.hold_limit_s:
                if step.on_insufficient == "pass":
                    break
                names = ", ".join(str(v) for v in verdicts if v.outcome == "insufficient")
                self._stop(
                    Reason.INSUFFICIENT_EVIDENCE,
                    f"after {elapsed:.0f}s (max_hold {step.hold_limit_s:g}s) still collecting: "
                    f"{names}",
                    index,
                    self._summary(index, step, seen, window, verdicts),
                    tuple(verdicts),
                )
            if not extended:
                extended = True
                self._event(
                    ExtensionEvent(
                        message=(
                            f"step {index + 1}: extending the hold beyond {step.hold_s:g}s "
                            f"(up to {step.hold_limit_s:g}s): {', '.join(collecting)} "
                            "still collecting evidence"
                        ),
                        step=index,
                        weight=step.weight,
                        held_s=round(elapsed, 3),
                        max_hold_s=step.hold_limit_s,
                        collecting=collecting,
                    )
                )
        ended = clock.now()
        for v in verdicts:
            self.rollout.recorder.event(Kind.VERDICT, **verdict_fields(index, v, look))
        summary = step_summary(index, step.weight, seen, window, verdicts, until=ended)
        held = round(clock.monotonic() - t0, 3)
        summary["held_s"] = held
        self._event(
            StepEvent(
                message=f"step {index + 1} passed ({summary['verdict']}) after {held:g}s",
                step=index,
                weight=step.weight,
                state=StepState.PASSED,
                hold_s=step.hold_s,
                max_hold_s=step.hold_limit_s,
                summary=summary,
                since=started,
                until=ended,
            )
        )
        return StepResult(index, step.weight, started, ended, tuple(verdicts), summary)

    def _await_route(self, index: int, step: Step) -> float | None:
        """Seconds until the probe saw the canary answer its share (at most ``SETTLE_MAX_S``).

        The route object says the weight is applied; a gateway (the sandbox's data plane
        on a loaded machine) can take a few seconds more to send it traffic. The step's
        window starts after that, so the gates judge the weight as served. A canary
        that never answers ends the wait at the limit, and the gates then fail it.
        """
        if self.source is None or not step.gates:
            return None
        t0 = self.clock.monotonic()
        window = g.Window(canary=self.canary.version, since=self.clock.now(), weight=step.weight)
        while self.clock.monotonic() - t0 < SETTLE_MAX_S:
            self._check_health(index, step, window)
            if g.route_took_effect(self.source.traffic(), window):
                break
            self.clock.sleep(0.25)
        return round(self.clock.monotonic() - t0, 3)

    def _per_step_comparisons(self, gates: tuple[g.Gate, ...]) -> tuple[g.Gate, ...]:
        """Without a baseline (a resumed run) comparisons restart at every step: each
        step's test then gets the gate's level divided by the steps this run judges, so
        their sum stays within the level the plan gave the whole-run test."""
        remaining = max(1, len(self.plan.steps) - self.first_step)
        return tuple(
            dataclasses.replace(gate, alpha=gate.alpha / remaining)
            if g.compares_original(gate) and dataclasses.is_dataclass(gate)
            else gate
            for gate in gates
        )

    def _check_health(self, index: int, step: Step, window: g.Window) -> None:
        """Stop the run (ProbeLost, ProbeStalled) when the probe no longer delivers."""
        source = self.source
        if not isinstance(source, WatchedSource):
            return
        health = source.health()
        if health.ok:
            return
        seen = source.traffic()  # what it delivered before it died: the step's row shows it
        self._stop(
            health.reason or Reason.PROBE_LOST,
            health.describe(),
            index,
            self._summary(index, step, seen, window, []),
        )

    def _measure_baseline(self) -> g.Baseline:
        """Unversioned failures before the canary takes traffic (at least one closed second)."""
        assert self.source is not None
        t0 = self.clock.monotonic()
        until = self.clock.now()
        baseline = g.Baseline.from_traffic(self.source.traffic(), until)
        while baseline.requests == 0 and self.clock.monotonic() - t0 < BASELINE_WAIT_S:
            self.clock.sleep(0.5)
            if isinstance(self.source, WatchedSource) and not self.source.health().ok:
                break
            until = self.clock.now()
            baseline = g.Baseline.from_traffic(self.source.traffic(), until)
        rate = "no requests" if not baseline.requests else f"rate {baseline.rate:.4g}"
        self._event(
            BaselineEvent(
                message=(
                    f"baseline before the canary's traffic: {baseline.failures} of "
                    f"{baseline.requests} requests failed without a version ({rate})"
                ),
                until=baseline.until,
                requests=baseline.requests,
                failures=baseline.failures,
                waited_s=round(self.clock.monotonic() - t0, 3),
            )
        )
        return baseline

    # -- stopping ---------------------------------------------------------------------

    def _summary(
        self, index: int, step: Step, seen: g.Traffic, window: g.Window, verdicts: list[g.Verdict]
    ) -> dict[str, Any]:
        """The summary row of a step that stops now."""
        return step_summary(index, step.weight, seen, window, verdicts, until=self.clock.now())

    def _fail_gate(
        self,
        index: int,
        step: Step,
        window: g.Window,
        seen: g.Traffic,
        verdicts: list[g.Verdict],
        failed: g.Verdict,
        started: Any,
    ) -> None:
        summary = self._summary(index, step, seen, window, verdicts)
        reason = reason_of(failed)
        rolled_back = self._step_failed(index, step.weight, summary, str(failed), started, reason)
        others = tuple(v for v in verdicts if v is not failed)
        err = GateFailed(failed, index, step.weight, rolled_back, others, summary)
        self._finish(err.outcome, err.reason, str(err), index)
        raise err

    def _stop(
        self,
        reason: Reason,
        message: str,
        index: int | None,
        summary: Mapping[str, Any] | None = None,
        verdicts: tuple[g.Verdict, ...] = (),
    ) -> None:
        """Record why, roll back, record the outcome, raise :class:`RolloutStopped`."""
        weight = self.plan.steps[index].weight if index is not None else None
        for v in verdicts:  # every gate's last word on the step that stopped
            self.rollout.recorder.event(Kind.VERDICT, **verdict_fields(index or 0, v))
        if index is not None:
            rolled_back = self._step_failed(index, weight or 0, summary, message, None, reason)
        else:
            rolled_back = self._rollback()
        err = RolloutStopped(
            reason,
            message,
            rolled_back=rolled_back,
            step=index,
            weight=weight,
            summary=summary,
            verdicts=verdicts,
        )
        self._finish(err.outcome, reason, str(err), index)
        raise err

    def _step_failed(
        self,
        index: int,
        weight: int,
        summary: Mapping[str, Any] | None,
        message: str,
        started: Any,
        reason: Reason | None = None,
    ) -> bool:
        self._event(
            StepEvent(
                message=f"step {index + 1} failed: {message}",
                step=index,
                weight=weight,
                state=StepState.FAILED,
                summary=dict(summary) if summary else None,
                since=started,
                until=self.clock.now(),
                reason=reason,
            )
        )
        return self._rollback()

    def _rollback(self) -> bool:
        """Weight 0 and delete; False (recorded) when that did not complete."""
        try:
            self.rollout.abort()
        except (RolloutError, KeyboardInterrupt) as err:
            self._event(
                RunEvent(
                    message=f"the rollback failed: {err or 'interrupted'}",
                    state=RunState.ROLLBACK_FAILED,
                )
            )
            return False
        return True

    def _finish(
        self, outcome: Outcome, reason: Reason | None, message: str, index: int | None = None
    ) -> None:
        record_finished(self.rollout.recorder, outcome, reason, message, index)

    def _event(self, event: Any) -> None:
        self.rollout.recorder.event(event.kind, **event.fields())


def record_finished(
    recorder: Any,
    outcome: Outcome,
    reason: Reason | None,
    message: str,
    step: int | None = None,
) -> None:
    """The run's last event: ``run`` finished, with outcome, reason and exit code."""
    event = RunEvent(
        message=message,
        state=RunState.FINISHED,
        outcome=outcome,
        reason=reason,
        step=step,
        exit_code=int(ExitCode.for_outcome(outcome)),
    )
    recorder.event(event.kind, **event.fields())


def _no_traffic() -> g.Traffic:
    return g.Traffic(pd.DataFrame(columns=["second", "version", "requests", *g.FAILURE_COLUMNS]))
