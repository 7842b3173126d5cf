"""The fault-injection suite's judges, on plain data: they must catch what they claim."""

from __future__ import annotations

from typing import Any

from tests.chaos import invariants
from tests.chaos.invariants import Window


def route(*backends: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web"}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"http": [{"name": "main", "backends": list(backends)}]}}


BACKENDS = {"web": "web", "web-canary": "web-canary"}


def test_weight_on_a_backend_without_ready_pods_is_caught() -> None:
    r = route({"serviceName": "web", "weight": 50}, {"serviceName": "web-canary", "weight": 50})
    assert invariants.weight_on_unready(r, {"web": 1, "web-canary": 1}, BACKENDS) == []
    found = invariants.weight_on_unready(r, {"web": 1, "web-canary": 0}, BACKENDS)
    assert len(found) == 1
    assert "web-canary" in found[0]
    # A missing Deployment counts as 0 ready; weight 0 is always fine.
    assert invariants.weight_on_unready(r, {"web": 1}, BACKENDS)
    idle = route({"serviceName": "web", "weight": 100}, {"serviceName": "web-canary", "weight": 0})
    assert invariants.weight_on_unready(idle, {"web": 1}, BACKENDS) == []


def test_apisix_default_weight_counts_as_traffic() -> None:
    r = route({"serviceName": "web"})
    assert invariants.rule_weights(r) == {"main": {"web": 100}}
    assert invariants.weight_on_unready(r, {"web": 0}, BACKENDS)


def test_split_problems() -> None:
    good = route({"serviceName": "web", "weight": 75}, {"serviceName": "web-canary", "weight": 25})
    assert invariants.split_problems(good, "main", "web", "web-canary", 25) == []
    assert invariants.split_problems(good, "main", "web", "web-canary", 50)
    bad = route({"serviceName": "web", "weight": 75}, {"serviceName": "web-canary", "weight": 20})
    assert any(
        "100" in p for p in invariants.split_problems(bad, "main", "web", "web-canary", None)
    )
    plain = route({"serviceName": "web"})
    assert invariants.split_problems(plain, "main", "web", "web-canary", 0) == []
    assert invariants.split_problems(plain, "other", "web", "web-canary", 0)


def test_status_must_say_what_the_route_carries() -> None:
    r = route({"serviceName": "web", "weight": 40}, {"serviceName": "web-canary", "weight": 60})
    assert (
        invariants.status_matches_route({"weights": {"parent": 40, "canary": 60}}, r, "main") == []
    )
    assert invariants.status_matches_route({"weights": {"parent": 90, "canary": 10}}, r, "main")


def test_leftovers_finds_orphans_labels_and_records() -> None:
    keep = {"Deployment": {"web"}, "Service": {"web"}, "Route": {"web"}}
    web = {"metadata": {"name": "web"}}
    assert invariants.leftovers([web], [web], [route()], keep) == []
    orphan = {"metadata": {"name": "web-canary"}}
    labelled = {"metadata": {"name": "web", "labels": {invariants.CANARY_LABEL: "web"}}}
    recorded = route(annotations={"original.canarylab.io/web": "{}"})
    found = invariants.leftovers([web, orphan], [labelled], [recorded], keep)
    assert len(found) == 3


def test_failures_are_counted_only_inside_the_asked_stages() -> None:
    windows = [Window("shift", 0, 10), Window("replace", 10, 20), Window("delete", 30, 40)]
    times = [5, 15, 25, 35, 36]
    errors = ["conn_error", "http_error", "timeout", None, float("nan")]
    assert invariants.failures_in(times, errors, windows, {"replace", "delete"}) == 1
    assert invariants.failures_in(times, errors, windows, {"shift"}) == 1
