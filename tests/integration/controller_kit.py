"""Objects and waits for the controller's integration tests (parents, routes, canaries)."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.helpers import deployment, wait_for

GROUP, VERSION, PLURAL = "canarylab.io", "v1alpha1", "canarydeployments"
APISIX = ("apisix.apache.org", "v2", "apisixroutes")
GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")


def apisix_route(name: str, service: str) -> dict[str, Any]:
    """An ApisixRoute with fields the controller must leave alone: plugins, a second rule."""
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": name, "labels": {"team": "web"}},
        "spec": {
            "ingressClassName": "apisix",
            "http": [
                {
                    "name": "main",
                    "priority": 5,
                    "match": {"paths": ["/*"], "methods": ["GET", "POST"], "hosts": ["web.test"]},
                    "plugins": [{"name": "proxy-rewrite", "enable": True, "config": {"uri": "/"}}],
                    "timeout": {"read": "15s"},
                    "backends": [{"serviceName": service, "servicePort": 80}],
                },
                {
                    "name": "static",
                    "match": {"paths": ["/static/*"]},
                    "backends": [{"serviceName": "static", "servicePort": 8080, "weight": 3}],
                },
            ],
        },
    }


def http_route(name: str, service: str) -> dict[str, Any]:
    """An HTTPRoute with fields the controller must leave alone: filters, hostnames, a rule."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "labels": {"team": "web"}},
        "spec": {
            "parentRefs": [{"name": "gateway", "namespace": "infra"}],
            "hostnames": ["web.test"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "X-Via", "value": "gw"}]},
                        }
                    ],
                    "backendRefs": [{"name": service, "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                    "backendRefs": [{"name": "static", "port": 8080, "weight": 3}],
                },
            ],
        },
    }


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "admin", "port": 9000, "targetPort": 9000},
            ],
        },
    }


def canary(
    name: str, parent: str, router: str, route: str, weight: int = 0, **spec: Any
) -> dict[str, Any]:
    config = (
        {"apisix": {"route": route}} if router == "apisix" else {"gatewayAPI": {"httpRoute": route}}
    )
    body: dict[str, Any] = {
        "parentDeployment": parent,
        "version": "v2",
        "weight": weight,
        "template": {
            "metadata": {"labels": {"app": parent}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:v2"}]},
        },
        "trafficRouter": config,
    }
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryDeployment",
        "metadata": {"name": name},
        "spec": body,
    }


class Kit:
    """One namespace's worth of objects, as the admin."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.ns = namespace
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    # parents and routes

    def parent(self, name: str = "web", replicas: int = 1, **spec: Any) -> dict[str, Any]:
        d = deployment(name, replicas=replicas)
        d["spec"].update(spec)
        self.apps.create_namespaced_deployment(self.ns, d)
        self.core.create_namespaced_service(self.ns, service(name, {"app": name}))
        return d

    def route(self, router: str, name: str = "web", svc: str = "web") -> dict[str, Any]:
        if router == "apisix":
            group, version, plural = APISIX
            body = apisix_route(name, svc)
        else:
            group, version, plural = GATEWAY
            body = http_route(name, svc)
        return dict(
            self.custom.create_namespaced_custom_object(group, version, self.ns, plural, body)
        )

    def get_route(self, router: str, name: str = "web") -> dict[str, Any] | None:
        group, version, plural = APISIX if router == "apisix" else GATEWAY
        try:
            return dict(
                self.custom.get_namespaced_custom_object(group, version, self.ns, plural, name)
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def route_shape(self, router: str, name: str = "web") -> dict[str, Any]:
        """What a user wrote: spec, labels and annotations."""
        route = self.get_route(router, name)
        assert route is not None
        meta = route["metadata"]
        return {
            "spec": route["spec"],
            "labels": meta.get("labels"),
            "annotations": meta.get("annotations"),
        }

    def weights(self, router: str, rule: int = 0, name: str = "web") -> dict[str, Any]:
        """``{service: weight}`` of one rule of the route."""
        route = self.get_route(router, name)
        assert route is not None
        if router == "apisix":
            return {
                b["serviceName"]: b.get("weight") for b in route["spec"]["http"][rule]["backends"]
            }
        return {b["name"]: b.get("weight") for b in route["spec"]["rules"][rule]["backendRefs"]}

    # canaries

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)
        )

    def get(self, name: str = "web") -> dict[str, Any] | None:
        try:
            return dict(
                self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str = "web") -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def status(self, name: str = "web") -> dict[str, Any]:
        cd = self.get(name)
        return dict((cd or {}).get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        for c in self.status(name).get("conditions") or ():
            if c["type"] == kind:
                return dict(c)
        return {}

    def wait_phase(self, phase: str, name: str = "web", timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.status(name)).get("phase") == phase and s,
            timeout,
            what=f"canary {self.ns}/{name} phase {phase} (now {self.status(name).get('phase')})",
        )

    def wait_reason(self, reason: str, name: str = "web", timeout: float = 30) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            degraded = self.condition(name, "Degraded")
            return degraded if degraded.get("reason") == reason else None

        return wait_for(
            found,
            timeout,
            what=f"Degraded reason {reason} on {self.ns}/{name}: {self.status(name)}",
        )

    def wait_weights(self, router: str, expected: dict[str, int], timeout: float = 20) -> None:
        wait_for(
            lambda: {k: v for k, v in self.weights(router).items() if k in expected} == expected,
            timeout,
            what=f"route weights {expected} (now {self.weights(router)})",
        )

    def wait_gone(self, name: str = "web", timeout: float = 30) -> None:
        wait_for(lambda: self.get(name) is None, timeout, what=f"canary {name} deleted")

    # what the controller made

    def deployments(self) -> dict[str, Any]:
        return {d.metadata.name: d for d in self.apps.list_namespaced_deployment(self.ns).items}

    def services(self) -> dict[str, Any]:
        return {s.metadata.name: s for s in self.core.list_namespaced_service(self.ns).items}

    def managed_routes(self, router: str) -> list[str]:
        group, version, plural = APISIX if router == "apisix" else GATEWAY
        items = self.custom.list_namespaced_custom_object(
            group, version, self.ns, plural, label_selector="canarylab.io/canary"
        )["items"]
        return [i["metadata"]["name"] for i in items]

    def events(self, name: str = "web") -> list[Any]:
        return list(
            self.core.list_namespaced_event(
                self.ns,
                field_selector=f"involvedObject.name={name},involvedObject.kind=CanaryDeployment",
            ).items
        )
