"""decide(): the pure rollout decision, without a cluster."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from canarylab.model.decide import (
    Cleanup,
    CopyTemplateToParent,
    EnsureCanary,
    Observed,
    SetMatch,
    SetWeights,
    decide,
)
from canarylab.model.spec import CanarySpec, Match, TrafficSplit, ValueMatch, parse_spec
from canarylab.model.workload import DeploymentState

TEMPLATE: dict[str, Any] = {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}


def spec(**overrides: Any) -> CanarySpec:
    raw: dict[str, Any] = {
        "parentDeployment": "web",
        "version": "v2",
        "weight": 30,
        "template": TEMPLATE,
        "trafficRouter": {"apisix": {"route": "web"}},
    }
    raw.update(overrides)
    return parse_spec(raw)


def deploy(
    ready: int = 1, replicas: int = 1, template_hash: str = "", **kw: Any
) -> DeploymentState:
    fields: dict[str, Any] = {
        "name": "d",
        "generation": 1,
        "observed_generation": 1,
        "spec_replicas": replicas,
        "replicas": replicas,
        "updated_replicas": replicas,
        "available_replicas": ready,
        "ready_replicas": ready,
        "template_hash": template_hash,
    }
    fields.update(kw)
    return DeploymentState(**fields)


def observed(s: CanarySpec, canary_ready: int = 1, **kw: Any) -> Observed:
    fields: dict[str, Any] = {
        "parent": deploy(),
        "canary": deploy(ready=canary_ready, template_hash=s.template_hash),
        "route_found": True,
        "route_split": TrafficSplit(100, 0),
    }
    fields.update(kw)
    return Observed(**fields)


def reason(status: Any, kind: str = "Degraded") -> str:
    return str(status.condition(kind).reason)


def test_serving_applies_the_desired_weight() -> None:
    s = spec()
    d = decide(s, observed(s))
    assert d.actions == (EnsureCanary(), SetWeights(TrafficSplit(70, 30)), SetMatch(Match()))
    assert d.status.phase == "Serving"
    assert d.status.weights == TrafficSplit(70, 30)
    assert reason(d.status, "TrafficShifted") == "WeightApplied"


def test_no_weight_without_ready_canary_pods() -> None:
    s = spec(match={"headers": [{"name": "X", "value": "1"}]})
    d = decide(s, observed(s, canary_ready=0))
    assert SetWeights(TrafficSplit(100, 0)) in d.actions
    assert SetMatch(Match()) in d.actions  # no match route to a canary without pods
    assert d.status.phase == "Progressing"
    shifted = d.status.condition("TrafficShifted")
    assert shifted is not None
    assert (shifted.status, shifted.reason) == ("False", "WaitingForReadyPods")


def test_match_route_once_ready() -> None:
    s = spec(match={"headers": [{"name": "X", "value": "1", "type": "RegularExpression"}]})
    d = decide(s, observed(s))
    assert SetMatch(Match(headers=(ValueMatch("X", "1", "RegularExpression"),))) in d.actions


@pytest.mark.parametrize(
    ("obs", "phase", "why"),
    [
        ({"parent": None}, "Pending", "ParentNotFound"),
        ({"route_found": False}, "Pending", "RouteNotFound"),
        (
            {"route_problem": ("RuleWithoutParentBackend", "no")},
            "Failed",
            "RuleWithoutParentBackend",
        ),
        ({"conflict": "first"}, "Failed", "Conflict"),
    ],
)
def test_problems_act_on_nothing(obs: dict[str, Any], phase: str, why: str) -> None:
    s = spec()
    d = decide(s, observed(s, **obs))
    assert d.actions == ()
    assert d.status.phase == phase
    assert reason(d.status) == why
    degraded = d.status.condition("Degraded")
    assert degraded is not None
    assert degraded.status == "True"
    assert degraded.message


def test_replace_waits_for_a_complete_canary() -> None:
    s = spec(replace=True, replicas=2)
    d = decide(s, observed(s, canary=deploy(ready=1, replicas=2, template_hash=s.template_hash)))
    assert CopyTemplateToParent() not in d.actions
    assert reason(d.status, "Replaced") == "WaitingForCanary"
    assert "1 of 2 canary replicas ready" in d.status.message


def test_replace_step_by_step() -> None:
    s = spec(replace=True)
    # 1. canary complete: copy the template into the parent
    d = decide(s, observed(s))
    assert d.actions[-1] == CopyTemplateToParent()
    assert d.status.phase == "Replacing"
    # 2. parent carries the template but is still rolling out: wait, keep the split
    rolling = deploy(template_hash=s.template_hash, generation=2, observed_generation=1)
    d = decide(s, observed(s, parent=rolling))
    assert CopyTemplateToParent() not in d.actions
    assert reason(d.status, "Replaced") == "ParentRollingOut"
    assert SetWeights(TrafficSplit(70, 30)) in d.actions
    # 3. parent rolled out: all traffic to the parent, match route gone
    done = deploy(template_hash=s.template_hash)
    d = decide(s, observed(s, parent=done, route_split=TrafficSplit(70, 30)))
    assert d.actions == (SetWeights(TrafficSplit(100, 0)), SetMatch(Match()))
    assert d.again
    # 4. route at 100/0: clean up, Replaced
    d = decide(s, observed(s, parent=done, route_split=TrafficSplit(100, 0)))
    assert d.actions == (Cleanup(),)
    assert d.status.phase == "Replaced"
    # 5. after a crash mid-cleanup (canary already gone): never recreate it
    d = decide(s, observed(s, parent=done, canary=None, route_split=TrafficSplit(100, 0)))
    assert d.actions == (Cleanup(),)


def test_replaced_is_final() -> None:
    s = spec(weight=50)
    d = decide(s, observed(s, phase="Replaced"))
    assert d.actions == (Cleanup(),)
    assert d.status.phase == "Replaced"


def test_zero_replicas_serves_nothing() -> None:
    s = spec(replicas=0)
    d = decide(s, observed(s, canary=deploy(ready=0, replicas=0, template_hash=s.template_hash)))
    assert SetWeights(TrafficSplit(100, 0)) in d.actions
    assert reason(d.status, "Ready") == "NoReplicas"


def test_same_inputs_same_answer() -> None:
    s = spec()
    o = observed(s)
    assert decide(s, o) == decide(s, replace(o))
