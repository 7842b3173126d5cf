"""A controller SIGKILLed during create, replace and delete converges after a restart.

Convergence means: the spec's state is reached, with exactly one canary Deployment,
one canary Service, at most one managed route, and a route that still restores to its
exact pre-canary shape.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.controller_kit import Kit, canary

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(controller: Any, api_client: Any, namespace: str) -> Kit:
    return Kit(api_client, namespace)


def _owned_counts(kit: Kit) -> tuple[int, int]:
    selector = "canarylab.io/canary=web"
    deploys = kit.apps.list_namespaced_deployment(kit.ns, label_selector=selector).items
    services = kit.core.list_namespaced_service(kit.ns, label_selector=selector).items
    return len(deploys), len(services)


@pytest.mark.parametrize("router", ["apisix", "gatewayAPI"])
def test_killed_during_create(kit: Kit, controller: Any, router: str) -> None:
    kit.parent("web")
    kit.route(router)
    before = kit.route_shape(router)
    match = {"headers": [{"name": "X-Canary", "value": "on"}]}
    with controller.restarted():
        kit.create(canary("web", "web", router, "web", weight=30, match=match))
        wait_for(lambda: "web-canary" in kit.deployments(), 20, interval=0.01, what="canary")
        controller.kill()
    kit.wait_phase("Serving")
    kit.wait_weights(router, {"web": 70, "web-canary": 30})
    wait_for(lambda: kit.managed_routes(router) == ["web-match"], 10, what="one match route")
    assert _owned_counts(kit) == (1, 1)
    kit.delete()
    kit.wait_gone()
    assert kit.route_shape(router) == before
    assert kit.managed_routes(router) == []


def test_killed_during_replace(kit: Kit, controller: Any) -> None:
    kit.parent("web", replicas=2, minReadySeconds=3)
    kit.route("apisix")
    before = kit.route_shape("apisix")
    kit.create(canary("web", "web", "apisix", "web", weight=40))
    kit.wait_weights("apisix", {"web": 60, "web-canary": 40})
    with controller.restarted():
        kit.patch("web", {"replace": True})
        kit.wait_phase("Replacing")
        controller.kill()
        time.sleep(1)
    status = kit.wait_phase("Replaced", timeout=60)
    assert status["weights"] == {"parent": 100, "canary": 0}
    wait_for(lambda: _owned_counts(kit) == (0, 0), 20, what="canary objects removed")
    assert kit.route_shape("apisix") == before
    parent = kit.apps.read_namespaced_deployment("web", kit.ns)
    assert parent.spec.template.spec.containers[0].image == "registry.example/app:v2"


@pytest.mark.parametrize("router", ["apisix", "gatewayAPI"])
def test_killed_during_delete(kit: Kit, controller: Any, router: str) -> None:
    kit.parent("web")
    kit.route(router)
    before = kit.route_shape(router)
    match = {"headers": [{"name": "X-Canary", "value": "on"}]}
    kit.create(canary("web", "web", router, "web", weight=60, match=match))
    kit.wait_weights(router, {"web": 40, "web-canary": 60})
    wait_for(lambda: kit.managed_routes(router) == ["web-match"], 10, what="match route")
    with controller.restarted():
        kit.delete()
        time.sleep(0.05)  # the finalizer is under way
        controller.kill()
    kit.wait_gone()
    assert kit.route_shape(router) == before
    assert kit.managed_routes(router) == []
    wait_for(lambda: _owned_counts(kit) == (0, 0), 20, what="canary objects removed")
