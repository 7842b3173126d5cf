"""The kopf handlers: who wakes which canary, and the finalizer.

Each CanaryDeployment gets a daemon that runs reconcile passes in a worker thread
whenever it is poked, and every ``RESYNC`` seconds regardless, or sooner when the
pass says the clock alone will change the decision (a driver's lease runs out: the
daemon wakes just after the deadline, so a lapse is acted on within about a
second). Pokes come from watch
events: the CanaryDeployment itself, any Deployment (looked up in a kopf index of
canaries by parent, so a parent's rollout progress re-triggers its canary at once;
canary Deployments by their label) and the routes (by a second index key). The
delete handler restores the route before kopf removes the finalizer. This module
must never make decisions; those live in ``canarylab.model``, and it keeps no state of
its own: everything a running controller remembers is in the ``Fleet`` that kopf hands
every handler as ``memo.fleet``, so two controllers in one process (or a test) never
share it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import random
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf

from canarylab.model.spec import GROUP, PLURAL, VERSION
from canarylab.model.workload import CANARY_LABEL, canary_deployment_name_for
from canarylab.operator.cluster import Cluster
from canarylab.operator.reconcile import Snapshot, finalize, reconcile

RESYNC = 30.0
"""Seconds between passes when nothing is poked (drift repair, e.g. a hand-edited route)."""
FINALIZER = "canarylab.io/finalizer"
LAPSE_SLACK = 0.2
"""Seconds to wake after a lease's deadline (the lapse test is strict: past the deadline)."""
WORKERS = 24
"""Reconcile passes that may run at once (each in a thread; the client is synchronous)."""

Key = tuple[str, str]
log = logging.getLogger("canarylab.controller")


@dataclass
class Fleet:
    """What one running controller remembers about the canaries it serves.

    Created by ``canarylab.operator.run`` with the cluster client and handed to kopf as
    ``memo.fleet``; nothing here outlives the controller, and the cluster stays the
    record (a restart starts from it).
    """

    cluster: Cluster
    pokes: dict[Key, asyncio.Event] = field(default_factory=dict)
    """Each canary's wake-up, set by watch events."""
    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    """One pass or finalizer at a time per canary."""
    handled: dict[Key, int] = field(default_factory=dict)
    """The generation each canary's last pass saw: status-only events need no new pass."""

    def poke(self, namespace: str, name: str) -> None:
        """Wake a canary's daemon for a pass now."""
        event = self.pokes.get((namespace, name))
        if event is not None:
            event.set()


def memo_for(cluster: Cluster) -> kopf.Memo:
    """The ``memo`` to start kopf with: a fresh ``Fleet`` over ``cluster``."""
    return kopf.Memo(fleet=Fleet(cluster))


def _fleet(kwargs: Mapping[str, Any]) -> Fleet:
    fleet = getattr(kwargs.get("memo"), "fleet", None)
    if not isinstance(fleet, Fleet):
        raise kopf.PermanentError(
            "the controller was started without a cluster client (memo.fleet); "
            "start it with canarylab.operator.run"
        )
    return fleet


@kopf.on.login()
async def _login(**kwargs: Any) -> kopf.ConnectionInfo:
    """Log kopf in exactly as our own client is (kubeconfig resolved by canarylab.kube)."""
    conf = _fleet(kwargs).cluster.api_client.configuration
    token = (conf.api_key or {}).get("authorization") or (conf.api_key or {}).get("BearerToken")
    if token and token.lower().startswith("bearer "):
        token = token[7:]
    return kopf.ConnectionInfo(
        server=conf.host,
        ca_path=conf.ssl_ca_cert,
        insecure=not conf.verify_ssl,
        token=token or None,
        certificate_path=conf.cert_file,
        private_key_path=conf.key_file,
        default_namespace="default",
    )


@kopf.on.startup()
async def _settings(settings: kopf.OperatorSettings, **_: Any) -> None:
    # passes wait on the API server, not the CPU: enough threads that a burst of
    # canaries does not queue behind a handful of slow requests
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="canarylab-pass")
    )
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="canarylab.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="canarylab.io", key="last-handled-configuration"
    )
    settings.posting.enabled = False  # our own Events say what happened, kopf's logs stay logs
    settings.scanning.disabled = True  # no cluster-wide CRD/namespace watch: least privilege
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.background.cancellation_polling = 0.5


@kopf.index(GROUP, VERSION, PLURAL)
async def canaries(**kwargs: Any) -> dict[Any, Any]:
    """Canaries by parent Deployment and by route, for pokes and the one-per-parent rule."""
    namespace, name = kwargs["namespace"], kwargs["name"]
    spec: Mapping[str, Any] = kwargs["spec"]
    keys: dict[Any, Any] = {}
    parent = spec.get("parentDeployment")
    if parent:
        created = str(kwargs["meta"].get("creationTimestamp", ""))
        keys[("parent", namespace, parent)] = (created, name)
    for kind, config in (spec.get("trafficRouter") or {}).items():
        route = (config or {}).get("route") or (config or {}).get("httpRoute")
        if route:
            keys[("route", namespace, kind, route)] = name
    return keys


def _trim_deployment(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Deployment that passes read (kept small: every Deployment is cached)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    return {
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "generation", "annotations", "ownerReferences")
            if k in meta
        },
        "spec": {
            "replicas": spec.get("replicas"),
            "selector": spec.get("selector"),
            "template": {"metadata": {"labels": dict(template_meta.get("labels") or {})}},
        },
        "status": dict(body.get("status") or {}),
    }


@kopf.index("apps", "v1", "deployments")
async def deployments(**kwargs: Any) -> dict[Any, Any]:
    """Every Deployment by (namespace, name): parents and canaries, read without a GET."""
    body = kwargs["body"]
    return {(kwargs["namespace"], kwargs["name"]): _trim_deployment(body)}


@kopf.index("", "v1", "services")
async def services(**kwargs: Any) -> dict[Any, Any]:
    """Every Service's name, selector and ports, by namespace."""
    spec = kwargs["spec"]
    return {
        kwargs["namespace"]: {
            "metadata": {"name": kwargs["name"]},
            "spec": {
                "selector": dict(spec.get("selector") or {}),
                "ports": [dict(p) for p in spec.get("ports") or ()],
            },
        }
    }


def _one(index: kopf.Index[Any, Any], key: Any) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store else None


def _conflict(index: kopf.Index[Any, Any], namespace: str, name: str, parent: str) -> str:
    """The name of an older canary on the same parent (the later one is refused)."""
    entries = sorted(index.get(("parent", namespace, parent), ()))
    if entries and entries[0][1] != name:
        return str(entries[0][1])
    return ""


@kopf.on.event(GROUP, VERSION, PLURAL)
async def _canary_changed(**kwargs: Any) -> None:
    key = (kwargs["namespace"], kwargs["name"])
    meta = kwargs["meta"]
    fleet = _fleet(kwargs)
    if meta.get("deletionTimestamp") or fleet.handled.get(key) != meta.get("generation"):
        fleet.poke(*key)


@kopf.on.event("apps", "v1", "deployments")
async def _deployment_changed(**kwargs: Any) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    fleet = _fleet(kwargs)
    for _created, cd in kwargs["canaries"].get(("parent", namespace, name), ()):
        fleet.poke(namespace, cd)
    owner = kwargs["labels"].get(CANARY_LABEL)
    if owner:
        fleet.poke(namespace, owner)


@kopf.on.event("apisix.apache.org", "v2", "apisixroutes")
async def _apisix_route_changed(**kwargs: Any) -> None:
    namespace = kwargs["namespace"]
    fleet = _fleet(kwargs)
    for cd in kwargs["canaries"].get(("route", namespace, "apisix", kwargs["name"]), ()):
        fleet.poke(namespace, cd)


@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes")
async def _http_route_changed(**kwargs: Any) -> None:
    namespace = kwargs["namespace"]
    fleet = _fleet(kwargs)
    for cd in kwargs["canaries"].get(("route", namespace, "gatewayAPI", kwargs["name"]), ()):
        fleet.poke(namespace, cd)


# Explicit ids: kopf names its progress annotations after handlers, and an annotation
# name may not start with "_" (the API server answers 422).
@kopf.daemon(GROUP, VERSION, PLURAL, id="reconcile", cancellation_timeout=10.0)
async def _run(**kwargs: Any) -> None:
    namespace: str = kwargs["namespace"]
    name: str = kwargs["name"]
    stopped: kopf.DaemonStopped = kwargs["stopped"]
    body: kopf.Body = kwargs["body"]  # kept current by kopf from the watch
    key = (namespace, name)
    fleet = _fleet(kwargs)
    event = fleet.pokes.setdefault(key, asyncio.Event())
    lock = fleet.locks.setdefault(key, asyncio.Lock())
    failures = 0
    # The status this daemon last wrote and the one it replaced: a pass can start before
    # the watch delivers our own write, and judging that stale body again would write
    # the same status and post its Events (DriverLost, phase changes) twice.
    written: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None
    try:
        while not stopped:
            event.clear()
            snap = _snapshot(body, kwargs)
            if written is not None:
                if (snap.cd.get("status") or {}) == written[0]:
                    fresh = {**snap.cd, "status": copy.deepcopy(dict(written[1]))}
                    snap = dataclasses.replace(snap, cd=fresh)
                else:
                    written = None
            try:
                # set before the pass: events for this generation arriving meanwhile
                # (status, kopf's own annotations) need no second pass
                fleet.handled[key] = int(snap.cd["metadata"].get("generation") or 0)
                async with lock:
                    outcome = await asyncio.to_thread(reconcile, fleet.cluster, snap)
                failures = 0
                if outcome.written is not None:
                    written = outcome.written
            except Exception as err:
                fleet.handled.pop(key, None)
                failures += 1
                delay = min(30.0, 0.5 * 2**failures)
                log.warning(
                    "canary %s/%s: pass failed (%s); retrying in %.1fs", namespace, name, err, delay
                )
                await _wait(event, stopped, delay)
                continue
            if outcome.gone:
                break
            if outcome.again:
                continue
            delay = RESYNC * random.uniform(0.8, 1.2)
            if outcome.recheck_in is not None:
                delay = min(delay, max(0.0, outcome.recheck_in) + LAPSE_SLACK)
            await _wait(event, stopped, delay)
    finally:
        fleet.pokes.pop(key, None)
        fleet.handled.pop(key, None)


def _snapshot(body: kopf.Body, kwargs: Mapping[str, Any]) -> Snapshot:
    """A consistent-enough copy of what one pass reads, from the body and the indexes."""
    cd = copy.deepcopy(dict(body))
    namespace, name = cd["metadata"]["namespace"], cd["metadata"]["name"]
    parent = str((cd.get("spec") or {}).get("parentDeployment", ""))
    index = kwargs["deployments"]
    return Snapshot(
        cd=cd,
        parent=copy.deepcopy(_one(index, (namespace, parent))),
        canary=copy.deepcopy(_one(index, (namespace, canary_deployment_name_for(parent)))),
        services=[copy.deepcopy(s) for s in kwargs["services"].get(namespace, ())],
        conflict=_conflict(kwargs["canaries"], namespace, name, parent),
    )


async def _wait(event: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Until poked, stopped or ``seconds`` passed."""
    poked = asyncio.ensure_future(event.wait())
    ended = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({poked, ended}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        poked.cancel()
        ended.cancel()


@kopf.on.delete(GROUP, VERSION, PLURAL, id="finalize")
async def _finalize(**kwargs: Any) -> None:
    namespace: str = kwargs["namespace"]
    name: str = kwargs["name"]
    body = kwargs["body"]
    plain = {
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }
    fleet = _fleet(kwargs)
    lock = fleet.locks.setdefault((namespace, name), asyncio.Lock())
    try:
        async with lock:
            await asyncio.to_thread(finalize, fleet.cluster, namespace, name, plain)
    except Exception as err:
        raise kopf.TemporaryError(f"restoring the route failed: {err}; retrying", delay=1) from err
    finally:
        fleet.locks.pop((namespace, name), None)
