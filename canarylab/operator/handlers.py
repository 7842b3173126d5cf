"""The kopf handlers: watch events that wake canaries, and the controller's lifecycle.

kopf only watches here. A CanaryDeployment event hands its body to the controller's
``Fleet``; Deployment and route events look their canaries up in a kopf index (by
parent, by the canary label, by route) and poke them. The ``Fleet``'s workers run the
reconcile passes, hold the finalizer and restore the route on deletion. No handler
here writes to the cluster, so kopf stores nothing on the objects (no progress or
diff-base annotations, no finalizer of its own). This module must never make
decisions; those live in ``canarylab.model``, and it keeps no state of its own:
everything a running controller remembers is in the ``Fleet`` that kopf hands every
handler as ``memo.fleet``, so two controllers in one process (or a test) never share it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf

from canarylab.model.spec import GROUP, PLURAL, VERSION
from canarylab.model.workload import CANARY_LABEL
from canarylab.operator import crds
from canarylab.operator.cluster import Cluster
from canarylab.operator.fleet import FINALIZER, MANAGED_ROUTES, RESYNC, WORKERS, Fleet

__all__ = ["FINALIZER", "RESYNC", "WORKERS", "Fleet", "memo_for"]

log = logging.getLogger("canarylab.controller")
MANAGED_ROUTES_INDEXES = tuple(index for _, index in MANAGED_ROUTES.values())


def memo_for(
    cluster: Cluster,
    workers: int = WORKERS,
    insights: Any = None,
    selector: Mapping[str, str] | None = None,
) -> kopf.Memo:
    """The ``memo`` to start kopf with: a fresh ``Fleet`` over ``cluster``.

    ``insights``: the kopf Insights the operator was started with; with them, kinds
    whose CRD is installed later are served without a restart (``crds``).
    ``selector``: serve only the CanaryDeployments with these labels (a shard).
    """
    fleet = Fleet(cluster, workers=workers, selector=dict(selector or {}))
    return kopf.Memo(fleet=fleet, insights=insights, rechecks=[])


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


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: kopf would deep-copy every watched object on every event to find
    changes for change-detecting handlers (on.create/update/delete), and this controller
    has none, so the essence is left empty and nothing is stored on the objects."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def _settings(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    fleet = _fleet(kwargs)
    # passes wait on the API server, not the CPU: one thread per worker
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=fleet.workers + 2, thread_name_prefix="canarylab-pass")
    )
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.posting.enabled = False  # our own Events say what happened, kopf's logs stay logs
    settings.scanning.disabled = True  # no cluster-wide CRD/namespace watch: least privilege
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.background.cancellation_polling = 0.5
    # an object's events are handled after this quiet time; the default 0.1 s delays
    # every poke and buys nothing here (handlers only poke, which coalesces anyway)
    settings.batching.batch_window = 0.01
    fleet.start()
    memo = kwargs["memo"]
    if getattr(memo, "insights", None) is not None:
        task = asyncio.get_running_loop().create_task(
            crds.serve_later_crds(memo.insights, settings), name="canarylab-crd-recheck"
        )
        memo.rechecks.append(task)


@kopf.on.cleanup()
async def _stop(**kwargs: Any) -> None:
    for task in getattr(kwargs.get("memo"), "rechecks", ()):
        task.cancel()
    await _fleet(kwargs).stop()


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


@kopf.index("apisix.apache.org", "v2", "apisixroutes", labels={CANARY_LABEL: kopf.PRESENT})
async def apisix_managed_routes(**kwargs: Any) -> dict[Any, Any]:
    """The match routes canaries manage (labelled), by (namespace, name): a canary's first
    pass need not DELETE one that does not exist (``Fleet``, ``MANAGED_ROUTES``)."""
    return {(kwargs["namespace"], kwargs["name"]): True}


@kopf.index("gateway.networking.k8s.io", "v1", "httproutes", labels={CANARY_LABEL: kopf.PRESENT})
async def http_managed_routes(**kwargs: Any) -> dict[Any, Any]:
    """As ``apisix_managed_routes``, for HTTPRoutes."""
    return {(kwargs["namespace"], kwargs["name"]): True}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def _canary_changed(**kwargs: Any) -> None:
    fleet = _fleet(kwargs)
    if (kwargs.get("event") or {}).get("type") == "DELETED":
        fleet.gone(kwargs["namespace"], kwargs["name"])
        return
    names = ("canaries", "deployments", "services", *MANAGED_ROUTES_INDEXES)
    indexes = {k: kwargs[k] for k in names if k in kwargs}
    fleet.seen(kwargs["body"], indexes)


@kopf.on.event("apps", "v1", "deployments")
async def _deployment_changed(**kwargs: Any) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    fleet = _fleet(kwargs)
    for _created, cd in kwargs["canaries"].get(("parent", namespace, name), ()):
        fleet.poke_soon(namespace, cd)
    owner = kwargs["labels"].get(CANARY_LABEL)
    if owner:
        fleet.poke_soon(namespace, owner)


def _route_changed(kind: str, kwargs: Mapping[str, Any]) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    fleet = _fleet(kwargs)
    version = kwargs["meta"].get("resourceVersion")
    for cd in kwargs["canaries"].get(("route", namespace, kind, name), ()):
        fleet.route_changed(namespace, cd, kind, name, version)


@kopf.on.event("apisix.apache.org", "v2", "apisixroutes")
async def _apisix_route_changed(**kwargs: Any) -> None:
    _route_changed("apisix", kwargs)


@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes")
async def _http_route_changed(**kwargs: Any) -> None:
    _route_changed("gatewayAPI", kwargs)
