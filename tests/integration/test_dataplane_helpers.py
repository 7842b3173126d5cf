"""Helpers (no tests) for the data-plane and probe integration tests: demo-app
Deployments, Services, routes, and waits on the gateway's status file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.helpers import deployment, wait_for

APISIX = ("apisix.apache.org", "v2", "apisixroutes")
HTTPROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")


def demo_deployment(
    name: str,
    tag: str,
    replicas: int = 1,
    track: str = "stable",
    app: str = "web",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    return deployment(
        name,
        replicas,
        image=f"canarylab/demo:{tag}",
        labels={"app": app, "track": track},
        env=env,
    )


def service(name: str, track: str, app: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app, "track": track}, "ports": [{"port": 80}]},
    }


def create_app(
    api: client.ApiClient,
    namespace: str,
    stable_replicas: int = 2,
    canary_replicas: int = 1,
) -> None:
    """``web`` (v1, "hello world") and ``web-canary`` (v2, "hello Hongbo"), each with a
    Service of the same name."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        namespace,
        demo_deployment("web", "v1", stable_replicas, env={"DEMO_MESSAGE": "hello world"}),
    )
    apps.create_namespaced_deployment(
        namespace,
        demo_deployment(
            "web-canary", "v2", canary_replicas, "canary", env={"DEMO_MESSAGE": "hello Hongbo"}
        ),
    )
    core.create_namespaced_service(namespace, service("web", "stable"))
    core.create_namespaced_service(namespace, service("web-canary", "canary"))


def apisix_route(
    name: str, canary_weight: int, extra_rules: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": name},
        "spec": {
            "http": [
                *(extra_rules or []),
                {
                    "name": "main",
                    "match": {"paths": ["/*"]},
                    "backends": [
                        {"serviceName": "web", "servicePort": 80, "weight": 100 - canary_weight},
                        {"serviceName": "web-canary", "servicePort": 80, "weight": canary_weight},
                    ],
                },
            ]
        },
    }


def gateway_status(sandbox: Any) -> dict[str, Any]:
    path = Path(sandbox.state_dir) / "dataplane" / "status.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {"backends": [], "reloads": 0}


def backend(sandbox: Any, rule: str) -> dict[str, Any] | None:
    for item in gateway_status(sandbox)["backends"]:
        if item["rule"] == rule:
            return dict(item)
    return None


def wait_backend(
    sandbox: Any,
    rule: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 90,
) -> dict[str, Any]:
    """Wait until the gateway's backend for ``rule`` (e.g. ``ApisixRoute/ns/web/main``)
    satisfies ``check``."""

    def ready() -> dict[str, Any] | None:
        found = backend(sandbox, rule)
        return found if found is not None and check(found) else None

    return wait_for(ready, timeout, what=f"gateway backend {rule}")


def servers_with(count: int, weighted: int | None = None) -> Callable[[dict[str, Any]], bool]:
    """A check: the backend has ``count`` servers (``weighted`` of them with weight > 0)."""

    def check(item: dict[str, Any]) -> bool:
        servers = item["servers"]
        live = sum(1 for s in servers if s["weight"] > 0)
        return len(servers) == count and (weighted is None or live == weighted)

    return check


def assert_served_load(result: Any, rate: int = 500) -> None:
    """The gateway really took ``rate`` requests a second (median over the run's whole
    seconds): the zero-failure checks above happened under that load."""
    per_second = result.completed_per_second()
    assert per_second.median() >= rate, per_second.tolist()
