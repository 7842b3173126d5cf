"""Shared pieces of the rollout and runbook integration tests: the sample app, route checks."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from canarylab.rollout import sample_app
from canarylab.rollout.status import GROUP, PLURAL, VERSION

PARENT = "hello"


def deploy_parent(api: Any, namespace: str, replicas: int = 2) -> None:
    sample_app.deploy(api, namespace, name=PARENT, version="v1", replicas=replicas)
    sample_app.wait_parent_ready(api, namespace, PARENT)


def route_backends(api: Any, namespace: str) -> dict[str, int]:
    """serviceName → weight (APISIX's default 100 when unset) of the route's rule."""
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "apisix.apache.org", "v2", namespace, "apisixroutes", PARENT
    )
    (rule,) = route["spec"]["http"]
    return {b["serviceName"]: int(b.get("weight", 100)) for b in rule["backends"]}


def route_is_all_parent(api: Any, namespace: str) -> bool:
    backends = route_backends(api, namespace)
    return backends.get(PARENT, 0) > 0 and all(
        w == 0 for name, w in backends.items() if name != PARENT
    )


def canary_objects(api: Any, namespace: str) -> list[str]:
    """Every canary object left: CanaryDeployments, and Deployments/Services other than the parent."""
    left = [
        f"CanaryDeployment/{o['metadata']['name']}"
        for o in client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )["items"]
    ]
    left += [
        f"Deployment/{d.metadata.name}"
        for d in client.AppsV1Api(api).list_namespaced_deployment(namespace).items
        if d.metadata.name != PARENT
    ]
    left += [
        f"Service/{s.metadata.name}"
        for s in client.CoreV1Api(api).list_namespaced_service(namespace).items
        if s.metadata.name != PARENT
    ]
    return left


def parent_image(api: Any, namespace: str) -> str:
    dep = client.AppsV1Api(api).read_namespaced_deployment(PARENT, namespace)
    return str(dep.spec.template.spec.containers[0].image)


def exists(api: Any, namespace: str, name: str = PARENT) -> bool:
    try:
        client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True
