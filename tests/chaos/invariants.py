"""The rules a rollout must keep under faults, as pure checks over plain API dicts.

Each check returns a list of violations (human-readable sentences, empty when the
rule holds), so the fault-injection suite can run all 30 rollouts, count what went
wrong and print it, instead of stopping at the first failed assert. Nothing here
does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

APISIX_DEFAULT_WEIGHT = 100
"""APISIX's weight for a backend that names none."""
CANARY_LABEL = "canarylab.io/canary"
ORIGINAL_PREFIX = "original.canarylab.io/"


def rule_weights(route: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """``{rule name: {service: weight}}`` of an ApisixRoute (APISIX's default weight filled in)."""
    out: dict[str, dict[str, int]] = {}
    for rule in (route.get("spec") or {}).get("http") or ():
        backends = {}
        for b in rule.get("backends") or ():
            weight = b.get("weight")
            backends[str(b.get("serviceName"))] = (
                APISIX_DEFAULT_WEIGHT if weight is None else int(weight)
            )
        out[str(rule.get("name"))] = backends
    return out


def weight_on_unready(
    route: Mapping[str, Any],
    ready: Mapping[str, int],
    backends: Mapping[str, str],
) -> list[str]:
    """Backends with weight > 0 whose Deployment has 0 ready pods (or does not exist).

    ``ready`` maps Deployment name to readyReplicas; ``backends`` maps each Service a
    route may name to the Deployment behind it.
    """
    found = []
    for rule, weights in rule_weights(route).items():
        for svc, weight in weights.items():
            if weight <= 0:
                continue
            deployment = backends.get(svc)
            if deployment is None:
                found.append(f"rule {rule}: weight {weight} on unknown Service {svc}")
            elif ready.get(deployment, 0) <= 0:
                found.append(
                    f"rule {rule}: weight {weight} on {svc} while Deployment {deployment} "
                    "has 0 ready pods"
                )
    return found


def split_problems(
    route: Mapping[str, Any], rule: str, parent: str, canary: str, want: int | None
) -> list[str]:
    """The managed rule carries parent + canary = 100 (canary ``want`` when given).

    A rule without a canary backend counts as 100/0, as the controller reads it.
    """
    weights = rule_weights(route).get(rule)
    if weights is None:
        return [f"route has no rule {rule}"]
    extra = sorted(set(weights) - {parent, canary})
    problems = [f"rule {rule} has unexpected backends {extra}"] if extra else []
    if canary not in weights:
        split = (weights.get(parent, 0), 0)
    else:
        split = (weights.get(parent, 0), weights[canary])
        if sum(split) != 100:
            problems.append(f"rule {rule}: weights {split} do not add up to 100")
    if want is not None and split[1] != want:
        problems.append(f"rule {rule}: canary weight {split[1]}, want {want}")
    return problems


def status_matches_route(
    status: Mapping[str, Any], route: Mapping[str, Any], rule: str
) -> list[str]:
    """``status.weights`` (what the controller says it applied) equals the route."""
    weights = status.get("weights") or {}
    route_w = rule_weights(route).get(rule) or {}
    canary_w = sum(w for s, w in route_w.items() if s.endswith("-canary"))
    parent_w = sum(w for s, w in route_w.items() if not s.endswith("-canary"))
    if not any(s.endswith("-canary") for s in route_w):
        parent_w = 100
    if (weights.get("parent"), weights.get("canary")) != (parent_w, canary_w):
        return [f"status.weights {weights} but the route carries {parent_w}/{canary_w}"]
    return []


def route_shape(route: Mapping[str, Any]) -> dict[str, Any]:
    """What a user wrote on a route: spec, labels, annotations."""
    meta = route.get("metadata") or {}
    return {
        "spec": route.get("spec"),
        "labels": meta.get("labels") or None,
        "annotations": meta.get("annotations") or None,
    }


def leftovers(
    deployments: Sequence[Mapping[str, Any]],
    services: Sequence[Mapping[str, Any]],
    routes: Sequence[Mapping[str, Any]],
    keep: Mapping[str, set[str]],
) -> list[str]:
    """Objects the canary left behind: anything not in ``keep`` (by kind), anything
    still labelled as a canary's, and any ``original.canarylab.io/`` record."""
    found = []
    for kind, items in (("Deployment", deployments), ("Service", services), ("Route", routes)):
        for obj in items:
            meta = obj.get("metadata") or {}
            name = str(meta.get("name"))
            if name not in keep.get(kind, set()):
                found.append(f"orphaned {kind} {name}")
            elif CANARY_LABEL in (meta.get("labels") or {}):
                found.append(f"{kind} {name} still carries label {CANARY_LABEL}")
            records = [a for a in meta.get("annotations") or {} if a.startswith(ORIGINAL_PREFIX)]
            if records:
                found.append(f"{kind} {name} still carries {records}")
    return found


@dataclass(frozen=True)
class Window:
    """A stretch of a rollout, in Unix seconds."""

    stage: str
    start: float
    end: float


def failures_in(
    times: Sequence[float], errors: Sequence[Any], windows: Sequence[Window], stages: set[str]
) -> int:
    """How many failed requests (non-null ``errors``) completed inside windows of ``stages``."""
    spans = [(w.start, w.end) for w in windows if w.stage in stages]
    count = 0
    for t, error in zip(times, errors, strict=True):
        if error is None or error != error:  # None or NaN: a success
            continue
        if any(start <= t <= end for start, end in spans):
            count += 1
    return count
