"""The CanaryDeployment ``status`` as the API stores it, and what changed between two.

Turns a decided ``Status`` into the camelCase dict written to the status subresource,
keeping each condition's ``lastTransitionTime`` while its status stays the same, and
lists the transitions worth a Kubernetes Event. ``same_status`` ignores generations:
a lease renewal bumps ``metadata.generation`` but not the spec digest
(``observedSpecHash``), and must cost no status write. The clock is passed in; this module
must never read it, nor do any other I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canarylab.model.decide import ABORTED, DRIVER_LOST, Status

_HELD = ("Degraded", ABORTED, "Paused")
"""Conditions that, while true, are the reason of the phase (in this order)."""
_PROGRESS = ("Replaced", "TrafficShifted", "Ready")
"""Otherwise the first of these present is."""


@dataclass(frozen=True)
class Transition:
    """Something an Event should announce."""

    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    message: str


def reason_of(status: Status) -> str:
    """One CamelCase word for why the canary is in its phase: ``status.reason``.

    The reason of a true ``Degraded``, ``Aborted`` or ``Paused`` condition, else of the
    first of ``Replaced``, ``TrafficShifted``, ``Ready`` present (``kubectl get cdep -o
    wide`` shows it in column Reason, next to ``status.message``).
    """
    for kind in _HELD:
        c = status.condition(kind)
        if c is not None and c.status == "True":
            return c.reason
    for kind in _PROGRESS:
        c = status.condition(kind)
        if c is not None:
            return c.reason
    return ""


def status_body(
    status: Status,
    generation: int,
    previous: Mapping[str, Any],
    now: str,
    spec_hash: str = "",
) -> dict[str, Any]:
    """The status subresource body for ``status`` (``now`` is an RFC 3339 timestamp).

    ``spec_hash`` is ``canarylab.model.lease.spec_digest`` of the spec decided on.
    """
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
        "observedSpecHash": spec_hash,
        "canary": {"readyReplicas": status.canary_ready, "replicas": status.canary_replicas},
        "conditions": conditions,
        "reason": reason_of(status),
        "message": status.message,
    }
    if status.weights is not None:
        body["weights"] = {"parent": status.weights.parent, "canary": status.weights.canary}
    elif previous.get("weights"):
        body["weights"] = previous["weights"]
    return body


def _conditions(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    skip = ("lastTransitionTime", "observedGeneration")
    return [
        {k: v for k, v in c.items() if k not in skip}
        for c in body.get("conditions") or ()
        if isinstance(c, Mapping)
    ]


def same_status(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal apart from generations and transition times.

    Any spec change but the lease changes ``observedSpecHash``, so it is written (with
    the new ``observedGeneration``); a pure lease renewal is not.
    """
    keys = ("phase", "observedSpecHash", "canary", "weights", "reason", "message")
    return all(a.get(k) == b.get(k) for k in keys) and _conditions(a) == _conditions(b)


def transitions(
    previous: Mapping[str, Any],
    new: Mapping[str, Any],
    since_renewal_s: float | None = None,
) -> list[Transition]:
    """Phase changes, weight changes and conditions turning on, as Events.

    ``since_renewal_s`` (seconds since the lease's last renewal, at this pass) goes into
    the ``DriverLost`` Event, so it says how long the driver has been silent.
    """
    out: list[Transition] = []
    if previous.get("phase") != new.get("phase"):
        warn = new.get("phase") in ("Failed", ABORTED)
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
        turned_on = c["status"] == "True" and (
            old.get("status") != "True" or old.get("reason") != c["reason"]
        )
        if c["type"] == "Degraded" and c["status"] == "True" and old.get("reason") != c["reason"]:
            out.append(Transition("Warning", c["reason"], c["message"]))
        elif c["type"] == "Paused" and turned_on:
            message = c["message"]
            if c["reason"] == DRIVER_LOST and since_renewal_s is not None:
                message = f"{message} (last renewal {since_renewal_s:.0f}s ago)"
            out.append(Transition("Warning", c["reason"], message))
    return out
