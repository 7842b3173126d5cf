"""The typed snapshot of a CanaryDeployment that ``Rollout.status()`` returns.

Pure parsing of the resource as a camelCase dict; never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUP = "canarylab.io"
VERSION = "v1alpha1"
PLURAL = "canarydeployments"
KIND = "CanaryDeployment"

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
    """``Pending``, ``Progressing``, ``Serving``, ``Replacing``, ``Replaced``, ``Failed``,
    ``Terminating``; empty when the resource does not exist or has no status yet."""
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
    generation: int = 0
    observed_generation: int = 0
    deleting: bool = False
    conditions: tuple[Condition, ...] = ()

    @property
    def observed(self) -> bool:
        """The controller has seen the current spec."""
        return self.exists and self.observed_generation >= self.generation

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
        """The message of a ``Degraded`` condition, or of the ``Failed`` phase, else ``""``."""
        degraded = self.condition("Degraded")
        if degraded is not None and degraded.true:
            return f"{degraded.reason}: {degraded.message}"
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
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        deleting=bool(meta.get("deletionTimestamp")),
        conditions=conditions,
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
