"""The typed snapshot of a CanaryDeployment that ``Rollout.status()`` returns.

Pure parsing of the resource as a camelCase dict; never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canarylab.model.lease import FIELD as LEASE_FIELD
from canarylab.model.lease import spec_digest
from canarylab.model.spec import GROUP, KIND, PLURAL, VERSION

__all__ = ["GROUP", "KIND", "PLURAL", "TERMINAL_PHASES", "VERSION", "Condition", "RolloutStatus"]

TERMINAL_PHASES = frozenset({"Replaced", "Failed"})


@dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition from ``status.conditions``."""

    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""

    @property
    def true(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True)
class RolloutStatus:
    """What the CanaryDeployment says about itself, at one moment."""

    name: str
    exists: bool
    phase: str = ""
    """``Pending``, ``Progressing``, ``Serving``, ``Paused`` (its driver's lease lapsed;
    weight 0), ``Aborted`` (``spec.aborted``; weight 0), ``Replacing``, ``Replaced``, ``Failed``, ``Terminating``; empty when the
    resource does not exist or has no status yet."""
    version: str = ""
    desired_weight: int = 0
    """``spec.weight``."""
    applied_weight: int | None = None
    """``status.weights.canary``: what the route really carries (None before the first)."""
    parent_weight: int | None = None
    replicas: int = 0
    """``spec.replicas``."""
    ready_replicas: int = 0
    """``status.canary.readyReplicas``."""
    replace: bool = False
    aborted: bool = False
    """``spec.aborted``: asked to hold at weight 0 (phase ``Aborted`` once observed)."""
    reason: str = ""
    """``status.reason``: one word for why the canary is in its phase."""
    message: str = ""
    """``status.message``."""
    generation: int = 0
    observed_generation: int = 0
    deleting: bool = False
    conditions: tuple[Condition, ...] = ()
    spec_hash: str = ""
    """Digest of the spec without ``spec.lease`` (``canarylab.model.lease.spec_digest``)."""
    observed_spec_hash: str = ""
    """``status.observedSpecHash``: the digest of the spec the status describes."""
    lease_holder: str = ""
    """``spec.lease.holder``; empty when no driver holds a lease."""
    lease_renew_time: str = ""
    """``spec.lease.renewTime`` as stored (RFC 3339)."""

    @property
    def observed(self) -> bool:
        """The controller has seen the current spec.

        Lease renewals bump ``metadata.generation`` without a status write, so a spec
        whose digest the status names counts as seen too.
        """
        return self.exists and (
            self.observed_generation >= self.generation
            or (bool(self.observed_spec_hash) and self.observed_spec_hash == self.spec_hash)
        )

    @property
    def paused(self) -> bool:
        """The controller holds the canary at weight 0 (condition ``Paused``, e.g. ``DriverLost``)."""
        c = self.condition("Paused")
        return c is not None and c.true

    @property
    def ready(self) -> bool:
        return self.exists and self.ready_replicas >= self.replicas

    @property
    def weight_applied(self) -> bool:
        return self.observed and self.applied_weight == self.desired_weight

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def problem(self) -> str:
        """The message of a true ``Degraded``, ``Aborted`` or ``Paused`` condition, else ``""``."""
        for kind in ("Degraded", "Aborted", "Paused"):
            c = self.condition(kind)
            if c is not None and c.true:
                return c.message if c.message.startswith(c.reason) else f"{c.reason}: {c.message}"
        return ""

    def brief(self) -> str:
        """One line for logs and progress bars."""
        if not self.exists:
            return f"{self.name}: absent"
        applied = "-" if self.applied_weight is None else str(self.applied_weight)
        return (
            f"{self.name}: {self.phase or 'no status'}, weight {self.desired_weight} "
            f"(applied {applied}), ready {self.ready_replicas}/{self.replicas}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "exists": self.exists,
            "phase": self.phase,
            "version": self.version,
            "desired_weight": self.desired_weight,
            "applied_weight": self.applied_weight,
            "parent_weight": self.parent_weight,
            "replicas": self.replicas,
            "ready_replicas": self.ready_replicas,
            "replace": self.replace,
            "aborted": self.aborted,
            "reason": self.reason,
            "message": self.message,
            "lease_holder": self.lease_holder,
            "conditions": [c.__dict__ for c in self.conditions],
        }


def absent(name: str) -> RolloutStatus:
    return RolloutStatus(name=name, exists=False)


def parse(obj: Mapping[str, Any]) -> RolloutStatus:
    """A :class:`RolloutStatus` from the resource as a camelCase dict."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    weights = status.get("weights") or {}
    canary = status.get("canary") or {}
    conditions = tuple(
        Condition(
            type=str(c.get("type", "")),
            status=str(c.get("status", "")),
            reason=str(c.get("reason") or ""),
            message=str(c.get("message") or ""),
            last_transition_time=str(c.get("lastTransitionTime") or ""),
        )
        for c in status.get("conditions") or ()
    )
    replicas = spec.get("replicas")
    lease = spec.get(LEASE_FIELD) or {}
    return RolloutStatus(
        name=str(meta.get("name", "")),
        exists=True,
        phase=str(status.get("phase") or ""),
        version=str(spec.get("version") or ""),
        desired_weight=int(spec.get("weight") or 0),
        applied_weight=_int_or_none(weights.get("canary")),
        parent_weight=_int_or_none(weights.get("parent")),
        replicas=1 if replicas is None else int(replicas),
        ready_replicas=int(canary.get("readyReplicas") or 0),
        replace=bool(spec.get("replace")),
        aborted=bool(spec.get("aborted")),
        reason=str(status.get("reason") or ""),
        message=str(status.get("message") or ""),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        deleting=bool(meta.get("deletionTimestamp")),
        conditions=conditions,
        spec_hash=spec_digest(spec),
        observed_spec_hash=str(status.get("observedSpecHash") or ""),
        lease_holder=str(lease.get("holder") or ""),
        lease_renew_time=str(lease.get("renewTime") or ""),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
