"""The sandbox's APISIX stand-in honours ApisixUpstream subsets (pure half)."""

from __future__ import annotations

from canarylab.dataplane.routes import apisix_rules, subset_service_name, subset_services

SERVICES = [{"metadata": {"namespace": "ns", "name": "web"}, "spec": {"selector": {"app": "web"}}}]


def upstream(subsets: list[dict[str, object]]) -> dict[str, object]:
    return {"metadata": {"namespace": "ns", "name": "web"}, "spec": {"subsets": subsets}}


def test_a_subset_selects_what_service_and_labels_both_select() -> None:
    subsets = [
        {"name": "original", "labels": {"canarylab.io/version": "v1"}},
        {"name": "canary", "labels": {"canarylab.io/canary": "web"}},
        {"name": "never", "labels": {"app": "other"}},  # contradicts the selector: empty
    ]
    found = subset_services(SERVICES, [upstream(subsets)])
    assert [(s["metadata"]["name"], s["spec"]["selector"]) for s in found] == [
        ("web:original", {"app": "web", "canarylab.io/version": "v1"}),
        ("web:canary", {"app": "web", "canarylab.io/canary": "web"}),
    ]
    assert subset_services([], [upstream(subsets)]) == []  # no Service, no endpoints


def test_backends_with_a_subset_name_their_subset() -> None:
    route = {
        "metadata": {"namespace": "ns", "name": "web"},
        "spec": {
            "http": [
                {
                    "name": "main",
                    "backends": [
                        {
                            "serviceName": "web",
                            "servicePort": 80,
                            "subset": "original",
                            "weight": 95,
                        },
                        {"serviceName": "web", "servicePort": 80, "subset": "canary", "weight": 5},
                        {"serviceName": "plain", "servicePort": 80},
                    ],
                }
            ]
        },
    }
    (rule,), problems = apisix_rules(route)
    assert not problems
    assert [(s.name, s.weight) for s in rule.services] == [
        ("web:original", 95),
        ("web:canary", 5),
        ("plain", 100),
    ]
    assert subset_service_name("web", "") == "web"
