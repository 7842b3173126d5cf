"""The sample application ``make demo`` and the runbook tests roll out.

A parent Deployment of the demo app (``canarylab/demo:<version>``, body "hello world"),
its Service and an ``ApisixRoute`` sending all traffic to it: the starting point of a
canary rollout. Creating it is idempotent. When the ApisixRoute CRD is missing, the
real CRDs are installed from ``$CANARYLAB_SHARED_CRDS`` (or ``../shared/crds``) when
present, else a minimal stand-in CRD that only names the kind (no schema), so the
demo works on a fresh machine; the sandbox gateway reads either.

This module writes only the objects named here; it must never touch a CanaryDeployment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

IMAGE = "canarylab/demo"
APISIX_CRD = "apisixroutes.apisix.apache.org"


def parent_objects(
    name: str = "hello",
    version: str = "v1",
    replicas: int = 3,
    message: str = "hello world",
    port: int = 80,
) -> list[dict[str, Any]]:
    """Deployment, Service and ApisixRoute of the sample app."""
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": f"{IMAGE}:{version}",
                                "env": [{"name": "DEMO_MESSAGE", "value": message}],
                                "ports": [{"containerPort": 8080}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": port, "targetPort": 8080}],
            },
        },
        {
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "metadata": {"name": name},
            "spec": {
                "http": [
                    {
                        "name": "main",
                        "match": {"paths": ["/*"]},
                        "backends": [{"serviceName": name, "servicePort": port}],
                    }
                ]
            },
        },
    ]


def deploy(api: Any, namespace: str, **kwargs: Any) -> None:
    """Create the sample app in ``namespace`` (objects that exist are left alone)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ensure_apisix_crd(api)
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    try:
        core.create_namespace({"metadata": {"name": namespace}})
    except ApiException as err:
        if err.status not in (403, 409):
            raise
    for obj in parent_objects(**kwargs):
        try:
            if obj["kind"] == "Deployment":
                apps.create_namespaced_deployment(namespace, obj)
            elif obj["kind"] == "Service":
                core.create_namespaced_service(namespace, obj)
            else:
                custom.create_namespaced_custom_object(
                    "apisix.apache.org", "v2", namespace, "apisixroutes", obj
                )
        except ApiException as err:
            if err.status != 409:
                raise


def wait_parent_ready(api: Any, namespace: str, name: str = "hello", timeout: float = 60) -> None:
    from kubernetes import client

    from canarylab.rollout.manifest import RolloutError

    apps = client.AppsV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        dep = apps.read_namespaced_deployment_status(name, namespace)
        want = dep.spec.replicas or 0
        if (dep.status.available_replicas or 0) >= want and (
            dep.status.updated_replicas or 0
        ) >= want:
            return
        if time.monotonic() > deadline:
            raise RolloutError(
                f"Deployment {namespace}/{name} not ready after {timeout:.0f}s "
                f"({dep.status.available_replicas or 0}/{want} available)"
            )
        time.sleep(0.2)


def shared_crds() -> Path | None:
    """The directory of real APISIX/Gateway API CRDs, when this checkout has one."""
    env = os.environ.get("CANARYLAB_SHARED_CRDS")
    # An explicit directory wins, even a missing one (that is how to ask for the stand-in).
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[3] / "shared" / "crds"]
    return next((p for p in candidates if (p / "apisix").is_dir()), None)


def ensure_apisix_crd(api: Any, timeout: float = 30) -> str:
    """Make sure ApisixRoute exists as a kind; returns ``present``, ``real`` or ``stand-in``."""
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(api)
    try:
        ext.read_custom_resource_definition(APISIX_CRD)
        return "present"
    except ApiException as err:
        if err.status != 404:
            raise
    shared = shared_crds()
    docs: list[dict[str, Any]] = []
    if shared is not None:
        for file in sorted((shared / "apisix").glob("*.yaml")):
            docs += [d for d in yaml.safe_load_all(file.read_text()) if d]
        kind = "real"
    else:
        docs = [_stand_in_crd()]
        kind = "stand-in"
    for doc in docs:
        try:
            ext.create_custom_resource_definition(doc)
        except ApiException as err:
            if err.status != 409:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(APISIX_CRD)
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return kind
        time.sleep(0.1)
    return kind


def _stand_in_crd() -> dict[str, Any]:
    """An ApisixRoute kind without a schema: enough for the sandbox, not a real APISIX."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": APISIX_CRD, "annotations": {"canarylab.io/stand-in": "true"}},
        "spec": {
            "group": "apisix.apache.org",
            "scope": "Namespaced",
            "names": {
                "plural": "apisixroutes",
                "singular": "apisixroute",
                "kind": "ApisixRoute",
                "shortNames": ["ar"],
            },
            "versions": [
                {
                    "name": "v2",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }
