"""One reconcile pass for one CanaryDeployment: read, decide, act, report.

A pass reads everything fresh, asks ``canarylab.model.decide`` what to do, does it,
and writes the status (only when it changed) and an Event per transition. It runs in
a worker thread (the Kubernetes client is synchronous). Any step may be interrupted;
the next pass starts over from what the cluster says. It must never hold state
between passes other than what is stored in the cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canarylab.model.decide import (
    Cleanup,
    CopyTemplateToParent,
    Decision,
    EnsureCanary,
    Observed,
    SetMatch,
    SetWeights,
    Status,
    decide,
    failed,
)
from canarylab.model.lease import spec_digest
from canarylab.model.spec import CanarySpec, SpecError, parse_spec
from canarylab.model.status import same_status, status_body, transitions
from canarylab.model.workload import (
    DeploymentState,
    canary_deployment,
    canary_deployment_name,
    canary_service,
    canary_service_name,
    pod_subsets,
    selects,
    subset_mode,
)
from canarylab.operator import metrics
from canarylab.operator.cluster import Cluster, Rejected, now
from canarylab.routers.base import Owner, RouteProblem, TrafficRouter
from canarylab.routers.managed import RouteRouter
from canarylab.routers.registry import UnknownRouter, load

log = logging.getLogger("canarylab.controller")


@dataclass(frozen=True)
class Outcome:
    """What a pass did: ``again`` asks for another pass right away."""

    again: bool = False
    gone: bool = False
    phase: str = ""
    generation: int = 0
    recheck_in: float | None = None
    """Seconds until the decision may change by the clock alone (a lease runs out)."""
    written: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None
    """``(replaced, new)`` when this pass wrote the status: until the watch delivers
    ``new``, a body still showing ``replaced`` is stale (see ``handlers._run``)."""
    route: tuple[str, str, str] | None = None
    """``(router kind, route name, resourceVersion)`` of the route as this pass last read
    or wrote it: its own write's watch event then needs no new pass."""


def _router(
    cluster: Cluster,
    spec: CanarySpec,
    owner: Owner,
    services: frozenset[str],
    parent: DeploymentState | None = None,
) -> TrafficRouter:
    factory = load(spec.router.kind)
    managed = factory if isinstance(factory, type) and issubclass(factory, RouteRouter) else None
    if managed is not None:
        # the built-in routers share this controller's cache of routes known to be gone
        pods = pod_subsets(owner.name, spec, parent) if parent else None
        return managed(
            cluster.api_client,
            owner,
            spec.router.config,
            services,
            absent=cluster.absent_routes,
            pods=pods,
        )
    return factory(cluster.api_client, owner, spec.router.config, services)


def _parent_services(
    services: list[dict[str, Any]], parent: DeploymentState | None
) -> frozenset[str]:
    """Services whose selector picks the parent's pods: candidates for the parent backend."""
    if parent is None:
        return frozenset()
    labels = parent.pod_labels or {}
    return frozenset(
        s["metadata"]["name"]
        for s in services
        if selects((s.get("spec") or {}).get("selector") or {}, labels)
    )


@dataclass(frozen=True)
class Snapshot:
    """What a pass starts from: the canary and the objects around it, from watch caches.

    Reads come from kopf's indexes (kept current by watches), so a pass costs only the
    route read and the writes; every write is guarded (resourceVersion, create-409), so
    a stale cache costs a retry, never a wrong result.
    """

    cd: Mapping[str, Any]
    parent: Mapping[str, Any] | None
    canary: Mapping[str, Any] | None
    services: list[dict[str, Any]]
    conflict: str = ""


def reconcile(cluster: Cluster, snap: Snapshot) -> Outcome:
    """Run one pass over ``snap``."""
    started = time.perf_counter()
    try:
        outcome = _reconcile(cluster, snap)
    except Exception as err:
        metrics.RECONCILES.labels("error").inc()
        metrics.ERRORS.labels(type(err).__name__).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    metrics.RECONCILES.labels("ok").inc()
    return outcome


def _reconcile(cluster: Cluster, snap: Snapshot) -> Outcome:
    cd = snap.cd
    if cd["metadata"].get("deletionTimestamp"):
        return Outcome(gone=True)
    meta = cd["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    previous: Mapping[str, Any] = cd.get("status") or {}
    moment = dt.datetime.now(dt.UTC)  # one clock reading per pass: decisions and status agree
    try:
        spec = parse_spec(cd.get("spec") or {})
    except SpecError as err:
        status = Status("Failed", ())
        wrote = _report(cluster, cd, failed(status, "InvalidSpec", str(err)), previous, moment)
        return Outcome(phase="Failed", written=wrote)
    owner = Owner(name, meta["uid"], namespace)

    parent_obj = snap.parent
    parent = DeploymentState.from_dict(parent_obj) if parent_obj else None
    if parent_obj is not None:
        cluster.adopt_by_parent(cd, parent_obj)
    conflict = snap.conflict
    canary_obj = snap.canary
    if (
        canary_obj is not None
        and meta["uid"] not in DeploymentState.from_dict(canary_obj).owner_uids
    ):
        conflict = conflict or f"(Deployment {canary_deployment_name(spec)} is not ours)"
        canary_obj = None
    canary = DeploymentState.from_dict(canary_obj) if canary_obj else None

    services = snap.services if parent else []
    try:
        router = _router(cluster, spec, owner, _parent_services(services, parent), parent)
    except UnknownRouter as err:
        failure = failed(Status("Failed", ()), "UnknownRouter", str(err))
        wrote = _report(cluster, cd, failure, previous, moment)
        return Outcome(phase="Failed", written=wrote)
    view = router.observe() if parent and not conflict else None
    observed = Observed(
        parent=parent,
        canary=canary,
        route_found=bool(view and view.found),
        route_problem=(view.problem.reason, str(view.problem)) if view and view.problem else None,
        route_split=view.split if view else None,
        conflict=conflict,
        phase=str(previous.get("phase") or ""),
        now=moment,
    )
    decision = decide(spec, observed)
    status = decision.status
    try:
        _act(
            cluster,
            cd,
            spec,
            decision,
            router,
            services,
            view.parent_service if view else "",
            canary_obj,
            dict(parent.selector or {}) if parent else {},
        )
    except Rejected as err:
        status = failed(status, "TemplateRejected", str(err))
    except RouteProblem as err:
        status = failed(status, err.reason, str(err))
    since = (moment - spec.lease.renew_time).total_seconds() if spec.lease else None
    wrote = _report(cluster, cd, status, previous, moment, since)
    metrics.observe_canary(
        namespace,
        name,
        spec.weight,
        status.weights.canary if status.weights else None,
        status.canary_ready,
        paused=status.phase == "Paused",
        phase=status.phase,
        previous_phase=previous.get("phase"),
        created=meta.get("creationTimestamp"),
        moment=moment,
    )
    recheck = decision.recheck_at
    version = getattr(router, "route_version", None)  # routers that report it
    return Outcome(
        again=decision.again,
        phase=status.phase,
        generation=int(meta.get("generation") or 0),
        recheck_in=None if recheck is None else (recheck - moment).total_seconds(),
        written=wrote,
        route=(spec.router.kind, spec.router.route, version) if version else None,
    )


def _act(
    cluster: Cluster,
    cd: Mapping[str, Any],
    spec: CanarySpec,
    decision: Decision,
    router: TrafficRouter,
    services: list[dict[str, Any]],
    parent_service: str,
    canary_obj: Mapping[str, Any] | None,
    parent_selector: dict[str, str],
) -> None:
    meta = cd["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    for action in decision.actions:
        if isinstance(action, EnsureCanary):
            manifest = canary_deployment(name, uid, spec, parent_selector)
            cluster.ensure_deployment(namespace, manifest, canary_obj)
            by_name = {s["metadata"]["name"]: s for s in services}
            if parent_service in by_name and not subset_mode(spec):  # subset: no canary Service
                svc = canary_service(name, uid, by_name[parent_service])
                cluster.ensure_service(
                    namespace, svc, by_name.get(canary_service_name(parent_service))
                )
        elif isinstance(action, SetWeights):
            router.set_weight(action.split)
        elif isinstance(action, SetMatch):
            router.set_match_route(action.match)
        elif isinstance(action, CopyTemplateToParent):
            cluster.copy_template_to_parent(
                namespace, spec.parent, spec.template, spec.template_hash
            )
        elif isinstance(action, Cleanup):
            router.remove_managed_routes()
            cluster.delete_owned(namespace, name, uid)


def _report(
    cluster: Cluster,
    cd: Mapping[str, Any],
    status: Status,
    previous: Mapping[str, Any],
    moment: dt.datetime,
    since_renewal_s: float | None = None,
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """Write the status and post its transitions as Events; ``(previous, new)`` if written."""
    meta = cd["metadata"]
    body = status_body(
        status,
        int(meta.get("generation") or 0),
        previous,
        now(moment),
        spec_digest(cd.get("spec") or {}),
    )
    if same_status(previous, body):
        return None
    cluster.write_status(meta["namespace"], meta["name"], body)
    for t in transitions(previous, body, since_renewal_s):
        cluster.event(cd, t.type, t.reason, t.message)
    return previous, body


def finalize(cluster: Cluster, namespace: str, name: str, body: Mapping[str, Any]) -> None:
    """Before the finalizer goes: restore the route, delete managed routes and canary objects."""
    meta = body["metadata"]
    previous = body.get("status") or {}
    if previous.get("phase") != "Terminating":
        terminating = dict(previous, phase="Terminating", message="restoring the route")
        cluster.write_status(namespace, name, terminating)
    owner = Owner(name, meta["uid"], namespace)
    try:
        spec = parse_spec(body.get("spec") or {})
        router = _router(cluster, spec, owner, frozenset())
        router.remove_managed_routes()
    except (SpecError, UnknownRouter) as err:
        log.warning("canary %s/%s: cannot restore its route: %s", namespace, name, err)
    cluster.delete_owned(namespace, name, meta["uid"])
    metrics.forget_canary(namespace, name)
