"""Bad input: rejected by the API server, or a clear condition that recovers by itself."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.helpers import wait_for
from tests.integration.controller_kit import Kit, canary

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(controller: Any, api_client: Any, namespace: str) -> Kit:
    return Kit(api_client, namespace)


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (-1, "should be greater than or equal to 0"),
        (101, "should be less than or equal to 100"),
        ("ten", "spec.weight in body must be of type integer"),
    ],
)
def test_bad_weight_is_rejected(kit: Kit, weight: Any, message: str) -> None:
    with pytest.raises(ApiException) as caught:
        kit.create(canary("web", "web", "apisix", "web", weight=weight))
    assert caught.value.status == 422
    said = json.loads(caught.value.body)["message"]
    assert "spec.weight" in said
    assert message in said
    assert kit.get() is None


def test_router_must_be_exactly_one(kit: Kit) -> None:
    body = canary("web", "web", "apisix", "web")
    body["spec"]["trafficRouter"]["gatewayAPI"] = {"httpRoute": "web"}
    with pytest.raises(ApiException) as caught:
        kit.create(body)
    assert "set exactly one of trafficRouter.apisix" in caught.value.body
    body["spec"]["trafficRouter"] = {}
    with pytest.raises(ApiException):
        kit.create(body)


def test_missing_parent_then_recovers(kit: Kit) -> None:
    kit.route("apisix")
    kit.create(canary("web", "web", "apisix", "web", weight=10))
    degraded = kit.wait_reason("ParentNotFound")
    assert "Deployment web does not exist" in degraded["message"]
    assert kit.status()["phase"] == "Pending"
    kit.parent("web")
    kit.wait_phase("Serving")
    kit.wait_weights("apisix", {"web": 90, "web-canary": 10})
    assert kit.condition("web", "Degraded")["status"] == "False"


def test_missing_route_then_recovers(kit: Kit) -> None:
    kit.parent("web")
    kit.create(canary("web", "web", "gatewayAPI", "web", weight=10))
    degraded = kit.wait_reason("RouteNotFound")
    assert "'web' does not exist" in degraded["message"]
    kit.route("gatewayAPI")
    kit.wait_phase("Serving", timeout=15)
    kit.wait_weights("gatewayAPI", {"web": 90, "web-canary": 10})


def test_rule_without_the_parent_backend(kit: Kit) -> None:
    kit.parent("web")
    kit.route("apisix")
    before = kit.route_shape("apisix")
    body = canary("web", "web", "apisix", "web", weight=10)
    body["spec"]["trafficRouter"]["apisix"]["rules"] = ["static"]
    kit.create(body)
    degraded = kit.wait_reason("RuleWithoutParentBackend")
    assert "rule 'static'" in degraded["message"]
    assert kit.status()["phase"] == "Failed"
    assert kit.route_shape("apisix") == before


def test_second_canary_on_the_same_parent_is_refused(kit: Kit) -> None:
    kit.parent("web")
    kit.route("apisix")
    kit.create(canary("first", "web", "apisix", "web", weight=20))
    kit.wait_phase("Serving", name="first")
    kit.wait_weights("apisix", {"web": 80, "web-canary": 20})
    first_canary = kit.deployments()["web-canary"]

    kit.create(canary("second", "web", "apisix", "web", weight=70))
    degraded = kit.wait_reason("Conflict", name="second")
    assert "CanaryDeployment first already manages Deployment web" in degraded["message"]
    assert kit.status("second")["phase"] == "Failed"
    assert kit.status("first")["phase"] == "Serving"
    assert kit.weights("apisix") == {"web": 80, "web-canary": 20}
    again = kit.deployments()["web-canary"]
    assert again.metadata.uid == first_canary.metadata.uid
    assert again.metadata.owner_references[0].name == "first"
    kit.delete("second")
    kit.wait_gone("second")
    assert kit.weights("apisix") == {"web": 80, "web-canary": 20}
    assert "web-canary" in kit.deployments()


def test_replace_before_the_canary_is_ready_waits(kit: Kit) -> None:
    kit.parent("web")
    kit.route("apisix")
    body = canary("web", "web", "apisix", "web", weight=10, replace=True)
    body["spec"]["template"]["spec"]["nodeSelector"] = {"no-such-node": "true"}
    kit.create(body)
    waiting = wait_for(
        lambda: (c := kit.condition("web", "Replaced")).get("reason") == "WaitingForCanary" and c,
        20,
        what="Replaced=False WaitingForCanary",
    )
    assert "0 of 1 canary replicas ready" in waiting["message"]
    parent = kit.apps.read_namespaced_deployment("web", kit.ns)
    assert parent.spec.template.spec.containers[0].image == "registry.example/app:v1"
    kit.patch("web", {"template": {"spec": {"nodeSelector": None}}})
    kit.wait_phase("Replaced", timeout=40)
    parent = kit.apps.read_namespaced_deployment("web", kit.ns)
    assert parent.spec.template.spec.containers[0].image == "registry.example/app:v2"


def test_delete_during_replace_leaves_a_consistent_route(kit: Kit) -> None:
    kit.parent("web", replicas=2, minReadySeconds=30)  # the parent's rollout takes ≥ 30 s
    kit.route("gatewayAPI")
    before = kit.route_shape("gatewayAPI")
    kit.create(canary("web", "web", "gatewayAPI", "web", weight=50))
    kit.wait_weights("gatewayAPI", {"web": 50, "web-canary": 50}, timeout=40)
    kit.patch("web", {"replace": True})
    wait_for(
        lambda: kit.condition("web", "Replaced").get("reason") == "ParentRollingOut",
        20,
        what="replace waiting for the parent's rollout",
    )
    kit.delete()
    kit.wait_gone()
    assert kit.route_shape("gatewayAPI") == before
    assert kit.managed_routes("gatewayAPI") == []
    wait_for(lambda: "web-canary" not in kit.deployments(), 20, what="canary Deployment deleted")
    wait_for(lambda: "web-canary" not in kit.services(), 20, what="canary Service deleted")


def test_rejected_template_is_surfaced_then_fixed(kit: Kit) -> None:
    kit.parent("web")
    kit.route("apisix")
    body = canary("web", "web", "apisix", "web", weight=10)
    body["spec"]["template"]["spec"]["containers"][0]["name"] = "Not_A_DNS_Label"
    kit.create(body)
    degraded = kit.wait_reason("TemplateRejected")
    assert "the API server rejected the canary Deployment" in degraded["message"]
    assert "Not_A_DNS_Label" in degraded["message"]
    assert kit.status()["phase"] == "Failed"
    assert kit.weights("apisix") == {"web": None}
    fixed = [{"name": "app", "image": "registry.example/app:v2"}]
    kit.patch("web", {"template": {"spec": {"containers": fixed}}})
    kit.wait_phase("Serving")
    kit.wait_weights("apisix", {"web": 90, "web-canary": 10})
