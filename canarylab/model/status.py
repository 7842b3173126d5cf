"""The CanaryDeployment ``status`` as the API stores it, and what changed between two.

Turns a decided ``Status`` into the camelCase dict written to the status subresource,
keeping each condition's ``lastTransitionTime`` while its status stays the same, and
lists the transitions worth a Kubernetes Event. The clock is passed in; this module
must never read it, nor do any other I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canarylab.model.decide import Status


@dataclass(frozen=True)
class Transition:
    """Something an Event should announce."""

    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    message: str


def status_body(
    status: Status, generation: int, previous: Mapping[str, Any], now: str
) -> dict[str, Any]:
    """The status subresource body for ``status`` (``now`` is an RFC 3339 timestamp)."""
    before = {c.get("type"): c for c in previous.get("conditions") or () if isinstance(c, dict)}
    conditions = []
    for c in status.conditions:
        old = before.get(c.type) or {}
        since = old.get("lastTransitionTime") if old.get("status") == c.status else None
        conditions.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    body: dict[str, Any] = {
        "phase": status.phase,
        "observedGeneration": generation,
        "canary": {"readyReplicas": status.canary_ready, "replicas": status.canary_replicas},
        "conditions": conditions,
        "message": status.message,
    }
    if status.weights is not None:
        body["weights"] = {"parent": status.weights.parent, "canary": status.weights.canary}
    elif previous.get("weights"):
        body["weights"] = previous["weights"]
    return body


def same_status(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal apart from condition transition times (which only move on a change anyway)."""
    keys = ("phase", "observedGeneration", "canary", "weights", "message", "conditions")
    return all(a.get(k) == b.get(k) for k in keys)


def transitions(previous: Mapping[str, Any], new: Mapping[str, Any]) -> list[Transition]:
    """Phase changes, weight changes and conditions turning on, as Events."""
    out: list[Transition] = []
    if previous.get("phase") != new.get("phase"):
        warn = new.get("phase") == "Failed"
        out.append(
            Transition(
                "Warning" if warn else "Normal",
                str(new.get("phase")),
                f"phase {previous.get('phase') or '-'} → {new.get('phase')}: {new.get('message', '')}",
            )
        )
    old_w, new_w = previous.get("weights"), new.get("weights")
    if new_w and old_w != new_w:
        out.append(
            Transition(
                "Normal",
                "WeightsApplied",
                f"route weights: parent {new_w['parent']}%, canary {new_w['canary']}%",
            )
        )
    before = {c.get("type"): c for c in previous.get("conditions") or ()}
    for c in new.get("conditions") or ():
        old = before.get(c["type"]) or {}
        if c["type"] == "Degraded" and c["status"] == "True" and old.get("reason") != c["reason"]:
            out.append(Transition("Warning", c["reason"], c["message"]))
    return out
