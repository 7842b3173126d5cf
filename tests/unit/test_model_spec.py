"""Spec parsing, rollout-finished rule, canary manifests and status bodies."""

from __future__ import annotations

from typing import Any

import pytest

from canarylab.model.decide import Condition, Status
from canarylab.model.spec import SpecError, TrafficSplit, parse_spec
from canarylab.model.status import status_body, transitions
from canarylab.model.workload import (
    DeploymentState,
    canary_deployment,
    canary_service,
    rollout_finished,
    rollout_progress,
)

RAW: dict[str, Any] = {
    "parentDeployment": "web",
    "version": "v2",
    "template": {
        "metadata": {"labels": {"app": "web", "tier": "front"}},
        "spec": {"containers": [{"name": "app", "image": "app:v2"}]},
    },
    "trafficRouter": {"gatewayAPI": {"httpRoute": "web", "rules": [0]}},
}


def test_defaults() -> None:
    s = parse_spec(RAW)
    assert (s.replicas, s.weight, s.replace, bool(s.match)) == (1, 0, False, False)
    assert s.router.kind == "gatewayAPI"
    assert s.router.route == "web"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weight": 101}, "spec.weight must be an integer from 0 to 100"),
        ({"weight": "ten"}, "spec.weight must be an integer"),
        ({"replicas": -1}, "spec.replicas"),
        ({"parentDeployment": ""}, "spec.parentDeployment is required"),
        (
            {"trafficRouter": {"apisix": {"route": "a"}, "gatewayAPI": {"httpRoute": "b"}}},
            "exactly one",
        ),
        ({"match": {"headers": [{"value": "x"}]}}, "spec.match.headers[0] needs a name"),
    ],
)
def test_bad_specs_say_which_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[")):
        parse_spec({**RAW, **change})


def test_plugin_router() -> None:
    s = parse_spec({**RAW, "trafficRouter": {"plugin": {"name": "nginx", "config": {"x": 1}}}})
    assert (s.router.kind, dict(s.router.config)) == ("nginx", {"x": 1})


def d(**kw: Any) -> DeploymentState:
    base: dict[str, Any] = {
        "name": "web",
        "generation": 2,
        "observed_generation": 2,
        "spec_replicas": 3,
        "replicas": 3,
        "updated_replicas": 3,
        "available_replicas": 3,
    }
    return DeploymentState(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "finished", "words"),
    [
        ({}, True, "successfully rolled out"),
        ({"observed_generation": 1}, False, "spec update to be observed"),
        ({"updated_replicas": 2}, False, "2 of 3 updated replicas"),
        ({"replicas": 4}, False, "1 old replicas are pending termination"),
        ({"available_replicas": 2}, False, "2 of 3 updated replicas are available"),
    ],
)
def test_rollout_finished_like_kubectl(kw: dict[str, Any], finished: bool, words: str) -> None:
    assert rollout_finished(d(**kw)) is finished
    assert words in rollout_progress(d(**kw))


def test_canary_pods_never_match_the_parent_selector() -> None:
    s = parse_spec(RAW)
    m = canary_deployment("web", "uid-1", s, {"app": "web"})
    labels = m["spec"]["template"]["metadata"]["labels"]
    assert labels == {"tier": "front", "canarylab.io/canary": "web", "canarylab.io/version": "v2"}
    assert m["spec"]["selector"]["matchLabels"] == {"canarylab.io/canary": "web"}
    assert m["metadata"]["name"] == "web-canary"
    assert m["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert m["metadata"]["ownerReferences"][0]["controller"] is True


def test_canary_service_copies_ports() -> None:
    parent = {
        "metadata": {"name": "web"},
        "spec": {
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30001}],
            "selector": {"app": "web"},
            "clusterIP": "10.0.0.1",
        },
    }
    svc = canary_service("web", "uid-1", parent)
    assert svc["metadata"]["name"] == "web-canary"
    assert svc["spec"] == {
        "type": "ClusterIP",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        "selector": {"canarylab.io/canary": "web"},
    }


def test_status_keeps_transition_times_and_announces_changes() -> None:
    ready = Condition("Ready", "True", "CanaryReady", "1/1")
    first = status_body(Status("Serving", (ready,), TrafficSplit(90, 10), 1, 1, "m"), 3, {}, "T1")
    assert first["conditions"][0]["lastTransitionTime"] == "T1"
    assert first["weights"] == {"parent": 90, "canary": 10}
    second = status_body(
        Status("Serving", (ready,), TrafficSplit(50, 50), 1, 1, "m"), 4, first, "T2"
    )
    assert second["conditions"][0]["lastTransitionTime"] == "T1"
    found = transitions(first, second)
    assert [t.reason for t in found] == ["WeightsApplied"]
    bad = Condition("Degraded", "True", "RouteNotFound", "no route")
    third = status_body(Status("Pending", (bad,)), 4, second, "T3")
    assert {(t.type, t.reason) for t in transitions(second, third)} == {
        ("Normal", "Pending"),
        ("Warning", "RouteNotFound"),
    }
    assert third["weights"] == second["weights"]  # last applied weights stay on record
