"""What the controller should do next for one CanaryDeployment: a pure function.

``decide(spec, observed)`` takes the spec and what was read from the cluster (the
parent and canary Deployments, the route, the controller's clock) and returns the
actions to take, in order, and the status that holds once they have succeeded. It is
level-triggered: the same inputs always give the same answer, so a restarted
controller simply decides again. It must never do I/O, read a clock (the moment comes
in ``Observed.now``) or import a Kubernetes client.

The dead-man's switch: a canary whose driver's lease (``spec.lease``) has lapsed while
it would get traffic (``weight > 0`` or a ``match``) and no replace is under way is
*paused*: the route gives it 0% and no match route, its Deployment is kept, and the
status says ``Paused``/``DriverLost``. A renewal or removing the lease resumes it; a
replace is never paused (moving everything to the parent is the safe direction).

An abort (``spec.aborted: true``, set by ``canarylab abort``) holds the canary the same
way, whatever the lease: 0% and no match route, the Deployment kept, phase ``Aborted``,
``spec.weight`` untouched so that clearing the flag (``canarylab resume``) goes back to
it. Only a replace whose template is already in the parent goes on: it too ends with
everything on the parent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from canarylab.model.lease import LeaseSpec, format_time
from canarylab.model.spec import CanarySpec, Match, TrafficSplit
from canarylab.model.workload import DeploymentState, rollout_finished, rollout_progress

PHASES = (
    "Pending",
    "Progressing",
    "Serving",
    "Paused",
    "Aborted",
    "Replacing",
    "Replaced",
    "Failed",
    "Terminating",
)
ABORTED = "Aborted"
"""The phase, and the reason of condition ``Aborted``, of a canary held by ``spec.aborted``."""
DRIVER_LOST = "DriverLost"
"""The reason of a pause for a lapsed lease (condition ``Paused``, Event, status)."""


@dataclass(frozen=True)
class EnsureCanary:
    """Create or update the canary Deployment and Service."""


@dataclass(frozen=True)
class SetWeights:
    """Put ``split`` on the route."""

    split: TrafficSplit


@dataclass(frozen=True)
class SetMatch:
    """Create/update the managed match route (an empty match removes it)."""

    match: Match


@dataclass(frozen=True)
class CopyTemplateToParent:
    """Replace step 1: the canary's template goes into the parent Deployment."""


@dataclass(frozen=True)
class Cleanup:
    """Restore the route's recorded shape, delete managed routes and canary objects."""


Action = EnsureCanary | SetWeights | SetMatch | CopyTemplateToParent | Cleanup


@dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition, without its transition time (that is I/O's job)."""

    type: str
    status: str
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Status:
    """``status`` of a CanaryDeployment, as far as decisions go."""

    phase: str
    conditions: tuple[Condition, ...]
    weights: TrafficSplit | None = None
    canary_ready: int = 0
    canary_replicas: int = 0
    message: str = ""

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


@dataclass(frozen=True)
class Observed:
    """What the controller read from the cluster for one CanaryDeployment."""

    parent: DeploymentState | None
    canary: DeploymentState | None = None
    route_found: bool = False
    route_problem: tuple[str, str] | None = None
    """(reason, message) when the route exists but cannot carry the canary."""
    route_split: TrafficSplit | None = None
    conflict: str = ""
    """Name of an older CanaryDeployment on the same parent, if any."""
    phase: str = ""
    """The phase recorded in status so far."""
    now: dt.datetime | None = None
    """The controller's clock at this pass (UTC); required when the spec has a lease."""


@dataclass(frozen=True)
class Decision:
    """The actions, in order, and the status once they succeed."""

    actions: tuple[Action, ...]
    status: Status
    again: bool = field(default=False)
    """Decide again right after acting: the next step needs what these actions change."""
    recheck_at: dt.datetime | None = None
    """Decide again at this moment even if nothing is poked: the lease runs out then."""


def _degraded(phase: str, reason: str, message: str, canary: tuple[int, int] = (0, 0)) -> Status:
    return Status(
        phase=phase,
        conditions=(
            Condition("Ready", "False", reason, message),
            Condition("Degraded", "True", reason, message),
        ),
        canary_ready=canary[0],
        canary_replicas=canary[1],
        message=message,
    )


def failed(status: Status, reason: str, message: str) -> Status:
    """``status`` turned into a failure with ``reason`` (used when an action is refused)."""
    kept = tuple(c for c in status.conditions if c.type not in ("Degraded", "Ready"))
    return Status(
        phase="Failed",
        conditions=(
            Condition("Ready", "False", reason, message),
            *kept,
            Condition("Degraded", "True", reason, message),
        ),
        weights=status.weights,
        canary_ready=status.canary_ready,
        canary_replicas=status.canary_replicas,
        message=message,
    )


def canary_complete(spec: CanarySpec, canary: DeploymentState | None) -> bool:
    """The canary runs the current template on all its replicas, all ready."""
    return (
        canary is not None
        and spec.replicas > 0
        and canary.template_hash == spec.template_hash
        and rollout_finished(canary)
        and canary.ready_replicas >= spec.replicas
    )


def decide(spec: CanarySpec, obs: Observed) -> Decision:
    """The next actions and the resulting status (see the module docstring)."""
    ready = obs.canary.ready_replicas if obs.canary else 0
    counts = (ready, spec.replicas)
    if obs.phase == "Replaced":
        return Decision((Cleanup(),), _replaced(spec, obs))
    if obs.conflict:
        return Decision(
            (),
            _degraded(
                "Failed",
                "Conflict",
                f"CanaryDeployment {obs.conflict} already manages Deployment {spec.parent}; "
                "only one canary per parent: delete one of them",
            ),
        )
    if obs.parent is None:
        return Decision(
            (),
            _degraded(
                "Pending",
                "ParentNotFound",
                f"Deployment {spec.parent} does not exist in this namespace; "
                "waiting for it (create it or fix spec.parentDeployment)",
            ),
        )
    if not obs.route_found:
        return Decision(
            (),
            _degraded(
                "Pending",
                "RouteNotFound",
                f"{spec.router.kind} route {spec.router.route!r} does not exist in this "
                "namespace; waiting for it (create it or fix spec.trafficRouter)",
            ),
        )
    if obs.route_problem is not None:
        reason, message = obs.route_problem
        return Decision((), _degraded("Failed", reason, message, counts))

    nothing = TrafficSplit(100, 0)
    promoted = spec.replace and obs.parent.template_hash == spec.template_hash
    if spec.aborted and not promoted:
        return Decision(
            (EnsureCanary(), SetWeights(nothing), SetMatch(Match())),
            _aborted(spec, _serving(spec, obs, nothing)),
        )

    lease = spec.lease
    if lease is not None and obs.now is None:
        raise ValueError("decide() needs Observed.now to judge spec.lease")
    lapsed = lease is not None and obs.now is not None and lease.lapsed(obs.now)
    recheck_at = lease.expires if lease is not None and not lapsed else None
    if lease is not None and lapsed and (spec.weight > 0 or spec.match) and not spec.replace:
        return Decision(
            (EnsureCanary(), SetWeights(nothing), SetMatch(Match())),
            _paused(spec, lease, _serving(spec, obs, nothing)),
        )

    applied = spec.weight if ready > 0 else 0
    split = TrafficSplit.for_canary(applied)
    shifting = (EnsureCanary(), SetWeights(split), SetMatch(spec.match if ready > 0 else Match()))
    base = _serving(spec, obs, split)
    if lease is not None:
        base = _with(base, _not_paused(spec, lease, lapsed))
    if not spec.replace:
        return Decision(shifting, base, recheck_at=recheck_at)

    parent = obs.parent
    if parent.template_hash == spec.template_hash:
        if not rollout_finished(parent):
            return Decision(
                shifting,
                _replacing(base, "ParentRollingOut", f"parent rollout: {rollout_progress(parent)}"),
            )
        everything_to_parent = TrafficSplit(100, 0)
        if obs.route_split != everything_to_parent:
            return Decision(
                (SetWeights(everything_to_parent), SetMatch(Match())),
                _replacing(
                    _serving(spec, obs, everything_to_parent),
                    "ShiftingToParent",
                    "parent rolled out; moving all traffic to it",
                ),
                again=True,
            )
        return Decision((Cleanup(),), _replaced(spec, obs))
    if not canary_complete(spec, obs.canary):
        why = (
            "spec.replicas is 0, so the canary can never be ready"
            if spec.replicas == 0
            else f"{ready} of {spec.replicas} canary replicas ready"
        )
        waiting = Condition("Replaced", "False", "WaitingForCanary", f"replace waits: {why}")
        return Decision(shifting, _with(base, waiting, message=waiting.message))
    return Decision(
        (*shifting, CopyTemplateToParent()),
        _replacing(base, "CopyingTemplate", f"copying the canary's template into {spec.parent}"),
    )


def _with(status: Status, condition: Condition, *, phase: str = "", message: str = "") -> Status:
    others = tuple(c for c in status.conditions if c.type != condition.type)
    return Status(
        phase=phase or status.phase,
        conditions=(*others, condition),
        weights=status.weights,
        canary_ready=status.canary_ready,
        canary_replicas=status.canary_replicas,
        message=message or status.message,
    )


def _paused(spec: CanarySpec, lease: LeaseSpec, serving: Status) -> Status:
    """``serving`` (computed for a 0% split) turned into the DriverLost pause.

    The messages name only stored moments, never "seconds ago": the status stays the
    same on every pass while paused, so it is written once.
    """
    message = (
        f"{DRIVER_LOST}: driver {lease.holder} stopped renewing its lease "
        f"(last renewal {format_time(lease.renew_time)}, {lease.duration_s}s lease, "
        f"lapsed {format_time(lease.expires)}); canary weight held at 0 (wants "
        f"{spec.weight}); renew the lease or remove spec.lease to resume"
    )
    held = Condition(
        "TrafficShifted", "False", DRIVER_LOST, f"canary weight held at 0 (wants {spec.weight})"
    )
    conditions = [held if c.type == "TrafficShifted" else c for c in serving.conditions]
    conditions.append(Condition("Paused", "True", DRIVER_LOST, message))
    return Status(
        phase="Paused",
        conditions=tuple(conditions),
        weights=serving.weights,
        canary_ready=serving.canary_ready,
        canary_replicas=serving.canary_replicas,
        message=message,
    )


def _aborted(spec: CanarySpec, serving: Status) -> Status:
    """``serving`` (computed for a 0% split) turned into the hold of ``spec.aborted``."""
    message = (
        f"aborted: all traffic goes to {spec.parent}, canary weight held at 0 (wants "
        f"{spec.weight}); resume (`canarylab resume`, or spec.aborted: false) or delete it"
    )
    held = Condition(
        "TrafficShifted", "False", ABORTED, f"canary weight held at 0 (wants {spec.weight})"
    )
    kept = [held if c.type == "TrafficShifted" else c for c in serving.conditions]
    return Status(
        phase=ABORTED,
        conditions=(
            *(c for c in kept if c.type != "Replaced"),
            Condition(ABORTED, "True", ABORTED, message),
        ),
        weights=serving.weights,
        canary_ready=serving.canary_ready,
        canary_replicas=serving.canary_replicas,
        message=message,
    )


def _not_paused(spec: CanarySpec, lease: LeaseSpec, lapsed: bool) -> Condition:
    if not lapsed:
        return Condition(
            "Paused",
            "False",
            "LeaseHeld",
            f"driver {lease.holder} holds a {lease.duration_s}s lease",
        )
    why = "a replace is under way" if spec.replace else "the canary gets no traffic"
    return Condition(
        "Paused",
        "False",
        "LeaseLapsed",
        f"driver {lease.holder}'s lease lapsed at {format_time(lease.expires)}; not paused: {why}",
    )


def _replacing(status: Status, reason: str, message: str) -> Status:
    return _with(
        status, Condition("Replaced", "False", reason, message), phase="Replacing", message=message
    )


def _replaced(spec: CanarySpec, obs: Observed) -> Status:
    message = f"the canary's template now runs in {spec.parent}; canary objects removed"
    return Status(
        phase="Replaced",
        conditions=(
            Condition("Ready", "False", "Replaced", "the canary was promoted and removed"),
            Condition(
                "TrafficShifted", "True", "AllToParent", "100% of traffic goes to the parent"
            ),
            Condition("Replaced", "True", "Replaced", message),
            Condition("Degraded", "False", "AsExpected", ""),
        ),
        weights=TrafficSplit(100, 0),
        canary_ready=0,
        canary_replicas=0,
        message=message,
    )


def _serving(spec: CanarySpec, obs: Observed, split: TrafficSplit) -> Status:
    ready = obs.canary.ready_replicas if obs.canary else 0
    if spec.replicas > 0 and ready >= spec.replicas:
        ready_c = Condition("Ready", "True", "CanaryReady", f"{ready}/{spec.replicas} ready")
    elif spec.replicas == 0:
        ready_c = Condition("Ready", "False", "NoReplicas", "spec.replicas is 0")
    else:
        ready_c = Condition(
            "Ready", "False", "CanaryNotReady", f"{ready}/{spec.replicas} canary replicas ready"
        )
    if split.canary == spec.weight or spec.replace:
        shifted = Condition(
            "TrafficShifted",
            "True",
            "WeightApplied",
            f"parent {split.parent}%, canary {split.canary}%",
        )
        message = shifted.message
    else:
        shifted = Condition(
            "TrafficShifted",
            "False",
            "WaitingForReadyPods",
            f"canary weight held at 0 (want {spec.weight}) until the canary has ready pods",
        )
        message = shifted.message
    phase = "Serving" if ready > 0 or spec.replicas == 0 else "Progressing"
    conditions = [ready_c, shifted]
    if spec.replace:
        conditions.append(Condition("Replaced", "False", "Pending", "replace requested"))
    conditions.append(Condition("Degraded", "False", "AsExpected", ""))
    return Status(
        phase=phase,
        conditions=tuple(conditions),
        weights=split,
        canary_ready=ready,
        canary_replicas=obs.canary.replicas if obs.canary else 0,
        message=message,
    )
