"""Prometheus metrics of the controller, on their own registry and HTTP port.

Desired and applied weight per canary, whether it is paused (its driver's lease
lapsed), its phase as Flagger users know it (0 progressing, 1 succeeded, 2 failed or
rolled back), how long finished rollouts took, reconcile count and duration by result,
errors by reason, and ``canarylab_info{version}``. docs/reference.md lists every series
with example alert rules. The registry is private so importing canarylab in a notebook
never exports controller metrics, and this module must never decide anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from canarylab import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

SUCCEEDED_PHASES = frozenset({"Replaced"})
"""Phases that end a rollout with the canary promoted."""
FAILED_PHASES = frozenset({"Failed", "Aborted"})
"""Phases that end a rollout without promotion (failed, or rolled back and held)."""

INFO = Gauge(
    "canarylab_info",
    "Always 1; the controller's canarylab version is the label",
    ["version"],
    registry=REGISTRY,
)
INFO.labels(__version__).set(1)
PHASE = Gauge(
    "canarylab_canary_status",
    "Phase of a CanaryDeployment: 0 progressing, 1 succeeded (Replaced), "
    "2 failed or rolled back (Failed, Aborted)",
    ["namespace", "name"],
    registry=REGISTRY,
)
ROLLOUT_SECONDS = Histogram(
    "canarylab_rollout_duration_seconds",
    "From a CanaryDeployment's creation to the pass that saw it finish, by outcome",
    ["outcome"],
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400),
    registry=REGISTRY,
)

DESIRED_WEIGHT = Gauge(
    "canarylab_canary_weight_desired",
    "spec.weight of a CanaryDeployment (percent of traffic for the canary)",
    ["namespace", "name"],
    registry=REGISTRY,
)
APPLIED_WEIGHT = Gauge(
    "canarylab_canary_weight_applied",
    "Canary weight actually applied to the route (percent)",
    ["namespace", "name"],
    registry=REGISTRY,
)
READY_REPLICAS = Gauge(
    "canarylab_canary_ready_replicas",
    "Ready replicas of the canary Deployment",
    ["namespace", "name"],
    registry=REGISTRY,
)
PAUSED = Gauge(
    "canarylab_canary_paused",
    "1 while a canary is paused at weight 0 because its driver's lease lapsed (DriverLost)",
    ["namespace", "name"],
    registry=REGISTRY,
)
RECONCILES = Counter(
    "canarylab_reconcile",
    "Reconcile passes, by result (ok, error)",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "canarylab_reconcile_duration_seconds",
    "Time spent in one reconcile pass",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ERRORS = Counter(
    "canarylab_errors",
    "Errors met while reconciling, by reason (Kubernetes API errors, refused input, ...)",
    ["reason"],
    registry=REGISTRY,
)


def observe_canary(
    namespace: str,
    name: str,
    desired: int,
    applied: int | None,
    ready: int,
    paused: bool = False,
    phase: str | None = None,
    previous_phase: str | None = None,
    created: str | None = None,
    moment: dt.datetime | None = None,
) -> None:
    """Record a canary's weights, readiness, pause and phase after a pass.

    The pass whose ``phase`` first finishes the rollout (from a ``previous_phase`` that
    had not) also observes its duration since ``created`` (``metadata.creationTimestamp``).
    """
    if phase is not None:
        PHASE.labels(namespace, name).set(phase_value(phase))
        ended = phase_value(phase) and previous_phase is not None
        if ended and not phase_value(previous_phase or "") and created and moment:
            outcome = "succeeded" if phase in SUCCEEDED_PHASES else "failed"
            began = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
            ROLLOUT_SECONDS.labels(outcome).observe((moment - began).total_seconds())
    DESIRED_WEIGHT.labels(namespace, name).set(desired)
    if applied is not None:
        APPLIED_WEIGHT.labels(namespace, name).set(applied)
    READY_REPLICAS.labels(namespace, name).set(ready)
    PAUSED.labels(namespace, name).set(1 if paused else 0)


def forget_canary(namespace: str, name: str) -> None:
    """Drop a deleted canary's series."""
    for gauge in (DESIRED_WEIGHT, APPLIED_WEIGHT, READY_REPLICAS, PAUSED, PHASE):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


def phase_value(phase: str) -> int:
    """``canarylab_canary_status``'s value for a phase: 0 progressing, 1 succeeded, 2 failed."""
    if phase in SUCCEEDED_PHASES:
        return 1
    return 2 if phase in FAILED_PHASES else 0


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Expose ``/metrics`` on ``port`` (in a background thread)."""
    start_http_server(port, addr=address, registry=REGISTRY)
