"""APISIX subset mode: backends by subset, the ApisixUpstream's subsets, exact restores."""

from __future__ import annotations

import copy
from typing import Any

from canarylab.model.spec import Match, TrafficSplit, ValueMatch, parse_spec
from canarylab.model.workload import (
    DeploymentState,
    PodSubsets,
    canary_pod_labels,
    pod_subsets,
    subset_mode,
)
from canarylab.routers import apisix
from canarylab.routers.apisix import APISIX_SUBSET_BACKENDS as SUBSET
from canarylab.routers.base import Owner

OWNER = Owner("web", "uid-1", "ns")
PARENTS = frozenset({"web"})
PODS = PodSubsets(
    {"app": "web", "canarylab.io/version": "v1"},
    {"canarylab.io/canary": "web", "canarylab.io/version": "v2"},
)


def ar() -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "annotations": {"keep": "me"}},
        "spec": {
            "http": [
                {
                    "name": "main",
                    "match": {"paths": ["/*"]},
                    "backends": [{"serviceName": "web", "servicePort": 80}],
                }
            ]
        },
    }


def spec(**extra: Any) -> Any:
    raw = {
        "parentDeployment": "web",
        "version": "v2",
        "template": {"metadata": {"labels": {"app": "other", "tier": "x"}}},
        "trafficRouter": {"apisix": {"route": "web", "mode": "subset"}},
        **extra,
    }
    return parse_spec(raw)


def test_backends_point_at_subsets_and_restore_exactly() -> None:
    original = ar()
    shifted = apisix.with_split(original, OWNER, {}, PARENTS, TrafficSplit(75, 25), SUBSET)
    assert shifted["spec"]["http"][0]["backends"] == [
        {"serviceName": "web", "servicePort": 80, "weight": 75, "subset": "original"},
        {"serviceName": "web", "servicePort": 80, "subset": "canary", "weight": 25},
    ]
    targets = apisix.find_targets(shifted, {}, PARENTS, SUBSET)
    assert apisix.current_split(targets, SUBSET) == TrafficSplit(75, 25)
    again = apisix.with_split(shifted, OWNER, {}, PARENTS, TrafficSplit(50, 50), SUBSET)
    assert [b["weight"] for b in again["spec"]["http"][0]["backends"]] == [50, 50]
    assert apisix.restored(again, OWNER) == original


def test_match_route_sends_to_the_canary_subset() -> None:
    route = ar()
    targets = apisix.find_targets(route, {}, PARENTS, SUBSET)
    match = Match(headers=(ValueMatch("x-canary", "1"),), remote_addrs=("127.0.0.9/32",))
    managed = apisix.match_route(route, OWNER, targets, match, SUBSET)
    (rule,) = managed["spec"]["http"]
    assert rule["backends"] == [
        {"serviceName": "web", "servicePort": 80, "subset": "canary", "weight": 100}
    ]
    assert rule["match"]["remoteAddrs"] == ["127.0.0.9/32"]


def test_a_new_upstream_is_created_and_recorded_as_created() -> None:
    up = apisix.with_subsets(None, OWNER, "web", PODS)
    assert up["metadata"]["name"] == "web"
    assert up["spec"]["subsets"] == [
        {"name": "original", "labels": dict(PODS.original)},
        {"name": "canary", "labels": dict(PODS.canary)},
    ]
    assert apisix.upstream_restored(up, OWNER) is None  # None here means: delete it


def test_an_existing_upstream_keeps_its_fields_and_subsets() -> None:
    existing = {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixUpstream",
        "metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {
            "loadbalancer": {"type": "ewma"},
            "subsets": [{"name": "blue", "labels": {"colour": "blue"}}],
        },
    }
    up = apisix.with_subsets(copy.deepcopy(existing), OWNER, "web", PODS)
    assert up["spec"]["loadbalancer"] == {"type": "ewma"}
    assert [s["name"] for s in up["spec"]["subsets"]] == ["blue", "original", "canary"]
    wider = apisix.with_subsets(up, OWNER, "web", PodSubsets({"app": "web"}, PODS.canary))
    assert wider["spec"]["subsets"][1]["labels"] == {"app": "web"}
    assert apisix.upstream_restored(wider, OWNER) == existing
    bare = {"metadata": {"name": "web"}, "spec": {"retries": 2}}
    up = apisix.with_subsets(copy.deepcopy(bare), OWNER, "web", PODS)
    assert apisix.upstream_restored(up, OWNER) == bare


def test_canary_pods_keep_the_parent_selector_in_subset_mode() -> None:
    s = spec()
    assert subset_mode(s)
    labels = canary_pod_labels("web", s, {"app": "web"})
    assert labels == {
        "app": "web",
        "tier": "x",
        "canarylab.io/canary": "web",
        "canarylab.io/version": "v2",
    }
    service_mode = parse_spec(
        {
            "parentDeployment": "web",
            "version": "v2",
            "template": s.template,
            "trafficRouter": {"apisix": {"route": "web"}},
        }
    )
    assert not subset_mode(service_mode)
    assert "app" not in canary_pod_labels("web", service_mode, {"app": "web"})


def parent(labels: dict[str, str]) -> DeploymentState:
    return DeploymentState("web", selector={"app": "web"}, pod_labels=labels)


def test_pod_subsets_need_a_distinct_parent_version() -> None:
    ok = pod_subsets("web", spec(), parent({"app": "web", "canarylab.io/version": "v1"}))
    assert ok == PODS
    missing = pod_subsets("web", spec(), parent({"app": "web"}))
    assert "add canarylab.io/version" in missing.problem
    clash = pod_subsets("web", spec(), parent({"app": "web", "canarylab.io/version": "v2"}))
    assert "overlap" in clash.problem
    # a replace widens original to the whole parent selector: never empty mid-rollout
    replacing = pod_subsets("web", spec(replace=True), parent({"app": "web"}))
    assert replacing == PodSubsets({"app": "web"}, PODS.canary)
