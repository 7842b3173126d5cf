"""The full life cycle over both routers: create, shift, match, replace, delete.

Given a parent Deployment, its Service and a route with fields the controller must
not touch, a CanaryDeployment goes 0 → 5 → 50 → 100 → 0, serves a header match, is
replaced into the parent, and is deleted; the route is checked at every step.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.controller_kit import Kit, canary

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(controller: Any, api_client: Any, namespace: str) -> Kit:
    return Kit(api_client, namespace)


def _unmanaged(router: str, route: dict[str, Any]) -> dict[str, Any]:
    """The route minus what the controller may change (weights, the canary backend, its record)."""
    route = copy.deepcopy(route)
    if router == "apisix":
        rule = route["spec"]["http"][0]
        rule["backends"] = [
            {k: v for k, v in b.items() if k != "weight"}
            for b in rule["backends"]
            if not b["serviceName"].endswith("-canary")
        ]
    else:
        rule = route["spec"]["rules"][0]
        rule["backendRefs"] = [
            {k: v for k, v in b.items() if k != "weight"}
            for b in rule["backendRefs"]
            if not b["name"].endswith("-canary")
        ]
    annotations = {
        k: v
        for k, v in (route.get("annotations") or {}).items()
        if not k.startswith("original.canarylab.io/")
    }
    route["annotations"] = annotations or None
    return route


@pytest.mark.parametrize("router", ["apisix", "gatewayAPI"])
def test_full_life_cycle(kit: Kit, router: str) -> None:
    kit.parent("web")
    kit.route(router)
    before = kit.route_shape(router)

    kit.create(canary("web", "web", router, "web", weight=0))
    status = kit.wait_phase("Serving")
    assert status["weights"] == {"parent": 100, "canary": 0}
    assert status["canary"]["readyReplicas"] == 1
    kit.wait_weights(router, {"web": 100, "web-canary": 0})

    # the canary objects: named, labelled, owned, not overlapping the parent
    cd = kit.get()
    assert cd is not None
    deploys, services = kit.deployments(), kit.services()
    canary_deploy = deploys["web-canary"]
    assert canary_deploy.spec.selector.match_labels == {"canarylab.io/canary": "web"}
    assert canary_deploy.spec.template.metadata.labels["canarylab.io/version"] == "v2"
    assert "app" not in canary_deploy.spec.template.metadata.labels  # parent's selector key
    assert canary_deploy.spec.template.spec.containers[0].image == "registry.example/app:v2"
    owner = canary_deploy.metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == (
        "CanaryDeployment",
        cd["metadata"]["uid"],
        True,
    )
    canary_svc = services["web-canary"]
    assert [(p.name, p.port, p.target_port) for p in canary_svc.spec.ports] == [
        ("http", 80, 8080),
        ("admin", 9000, 9000),
    ]
    assert canary_svc.spec.selector == {"canarylab.io/canary": "web"}
    assert canary_svc.metadata.owner_references[0].uid == cd["metadata"]["uid"]
    parent_ref = cd["metadata"]["ownerReferences"][0]
    assert (parent_ref["kind"], parent_ref["name"], parent_ref["controller"]) == (
        "Deployment",
        "web",
        False,
    )

    for weight in (5, 50, 100, 0):
        kit.patch("web", {"weight": weight})
        kit.wait_weights(router, {"web": 100 - weight, "web-canary": weight})
        after = kit.route_shape(router)
        assert _unmanaged(router, after) == _unmanaged(router, before), "unmanaged fields changed"
        assert kit.weights(router, rule=1) == {"static": 3}, "another rule changed"
        wait_for(
            lambda w=weight: kit.status().get("weights") == {"parent": 100 - w, "canary": w},
            10,
            what=f"status weights at {weight}",
        )

    # a header match: a managed route sends matching requests to the canary
    kit.patch("web", {"weight": 10, "match": {"headers": [{"name": "X-Canary", "value": "yes"}]}})
    wait_for(lambda: kit.managed_routes(router) == ["web-match"], 10, what="managed match route")
    managed = kit.get_route(router, "web-match")
    assert managed is not None
    if router == "apisix":
        rule = managed["spec"]["http"][0]
        assert rule["priority"] == 6
        assert rule["match"]["exprs"] == [
            {"subject": {"scope": "Header", "name": "X-Canary"}, "op": "Equal", "value": "yes"}
        ]
        assert rule["match"]["hosts"] == ["web.test"]
        assert rule["backends"] == [{"serviceName": "web-canary", "servicePort": 80, "weight": 100}]
    else:
        rule = managed["spec"]["rules"][0]
        assert managed["spec"]["parentRefs"] == before["spec"]["parentRefs"]
        assert rule["matches"][0]["headers"] == [
            {"type": "Exact", "name": "X-Canary", "value": "yes"}
        ]
        assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
            ("web-canary", 80, 1)
        ]
    kit.patch("web", {"match": None})
    wait_for(lambda: kit.managed_routes(router) == [], 10, what="match route removed")

    # replace: the template goes into the parent, then all traffic, then cleanup
    kit.patch("web", {"replace": True})
    status = kit.wait_phase("Replaced")
    assert status["weights"] == {"parent": 100, "canary": 0}
    parent = kit.apps.read_namespaced_deployment("web", kit.ns)
    assert parent.spec.template.spec.containers[0].image == "registry.example/app:v2"
    assert parent.status.updated_replicas == parent.spec.replicas
    wait_for(lambda: "web-canary" not in kit.deployments(), 10, what="canary Deployment deleted")
    wait_for(lambda: "web-canary" not in kit.services(), 10, what="canary Service deleted")
    assert kit.route_shape(router) == before, "route is not back to its pre-canary shape"
    assert kit.managed_routes(router) == []
    reasons = {e.reason for e in kit.events()}
    assert {"Serving", "Replacing", "Replaced", "WeightsApplied"} <= reasons

    kit.delete()
    kit.wait_gone()
    assert kit.route_shape(router) == before


@pytest.mark.parametrize("router", ["apisix", "gatewayAPI"])
def test_delete_restores_the_route_exactly(kit: Kit, router: str) -> None:
    kit.parent("web")
    kit.route(router)
    before = kit.route_shape(router)
    kit.create(
        canary(
            "web",
            "web",
            router,
            "web",
            weight=30,
            match={"headers": [{"name": "X-Canary", "value": "1"}]},
        )
    )
    kit.wait_weights(router, {"web": 70, "web-canary": 30})
    wait_for(lambda: kit.managed_routes(router) == ["web-match"], 10, what="match route")
    kit.delete()
    kit.wait_gone()
    assert kit.route_shape(router) == before
    assert kit.managed_routes(router) == []
    wait_for(lambda: "web-canary" not in kit.deployments(), 10, what="canary Deployment deleted")
    wait_for(lambda: "web-canary" not in kit.services(), 10, what="canary Service deleted")


def test_deleting_the_parent_collects_everything(kit: Kit) -> None:
    kit.parent("web")
    kit.route("apisix")
    kit.create(canary("web", "web", "apisix", "web", weight=20))
    kit.wait_phase("Serving")
    kit.apps.delete_namespaced_deployment("web", kit.ns, propagation_policy="Background")
    kit.wait_gone(timeout=60)
    wait_for(lambda: "web-canary" not in kit.deployments(), 60, what="canary Deployment collected")
    wait_for(lambda: "web-canary" not in kit.services(), 60, what="canary Service collected")


def test_weight_waits_for_ready_pods(kit: Kit) -> None:
    """No weight on a canary without ready pods; the status says why."""
    kit.parent("web")
    kit.route("apisix")
    body = canary("web", "web", "apisix", "web", weight=40)
    body["spec"]["template"]["spec"]["nodeSelector"] = {"no-such-node": "true"}
    kit.create(body)
    shifted = wait_for(
        lambda: (
            kit.condition("web", "TrafficShifted").get("reason") == "WaitingForReadyPods"
            and kit.condition("web", "TrafficShifted")
        ),
        20,
        what="TrafficShifted=False WaitingForReadyPods",
    )
    assert "until the canary has ready pods" in shifted["message"]
    assert kit.status()["phase"] == "Progressing"
    assert kit.weights("apisix") == {"web": 100, "web-canary": 0}
    kit.patch("web", {"template": {"spec": {"nodeSelector": None}}})  # merge patch: remove it
    kit.wait_weights("apisix", {"web": 60, "web-canary": 40})


def test_metrics_and_events(kit: Kit, controller: Any) -> None:
    kit.parent("web")
    kit.route("gatewayAPI")
    kit.create(canary("web", "web", "gatewayAPI", "web", weight=25))
    kit.wait_phase("Serving")
    kit.wait_weights("gatewayAPI", {"web": 75, "web-canary": 25})

    def exported() -> bool:
        text = controller.metrics()
        return (
            f'canarylab_canary_weight_desired{{name="web",namespace="{kit.ns}"}} 25.0' in text
            and f'canarylab_canary_weight_applied{{name="web",namespace="{kit.ns}"}} 25.0' in text
        )

    wait_for(exported, 10, what="weights in /metrics")
    text = controller.metrics()
    assert 'canarylab_reconcile_total{result="ok"}' in text
    assert "canarylab_reconcile_duration_seconds_count" in text
    assert "canarylab_errors_total" in text or "canarylab_errors" in text
    events = kit.events()
    assert any(e.reason == "Serving" and e.type == "Normal" for e in events)
    assert all(e.source.component == "canarylab-controller" for e in events)
