"""Prometheus metrics of the controller, on their own registry and HTTP port.

Desired and applied weight per canary, whether it is paused (its driver's lease
lapsed), reconcile count and duration by result, and
errors by reason. The registry is private so importing canarylab in a notebook never
exports controller metrics, and this module must never decide anything.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

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
) -> None:
    """Record a canary's weights, readiness and pause after a pass."""
    DESIRED_WEIGHT.labels(namespace, name).set(desired)
    if applied is not None:
        APPLIED_WEIGHT.labels(namespace, name).set(applied)
    READY_REPLICAS.labels(namespace, name).set(ready)
    PAUSED.labels(namespace, name).set(1 if paused else 0)


def forget_canary(namespace: str, name: str) -> None:
    """Drop a deleted canary's series."""
    for gauge in (DESIRED_WEIGHT, APPLIED_WEIGHT, READY_REPLICAS, PAUSED):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Expose ``/metrics`` on ``port`` (in a background thread)."""
    start_http_server(port, addr=address, registry=REGISTRY)
